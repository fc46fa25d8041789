"""One exception type per kind of refusal, each mapped to the exit code the CLI returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Problem:
    """One thing wrong with the checkout or the series, named precisely enough to act on."""

    kind: str  # "local-edit", "upstream-drift", "hunk-mismatch", "checksum", "unsafe-path", "missing-file", ...
    message: str
    path: str | None = None
    patch: str | None = None
    hunk: int | None = None
    line: int | None = None
    expected: str | None = None
    found: str | None = None
    commits: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, [])}


class OverlayError(Exception):
    """A refusal. Whatever raised it wrote nothing (or restored what it wrote)."""

    exit_code = 1

    def __init__(self, message: str, problems: list[Problem] | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []
        self.hint = hint


class UsageError(OverlayError):
    """Bad command line: exit 2, like argparse."""

    exit_code = 2


class CheckoutError(OverlayError):
    """PATH is not a usable LightTTS checkout (not a directory, not git, submodule missing...)."""


class SeriesError(OverlayError):
    """The patch series itself is broken: corrupt or tampered patch, bad series or lock file."""


class ConflictError(OverlayError):
    """Target files are not in a state the series knows (local edits, upstream drift, unsafe paths)."""


class BusyError(OverlayError):
    """Another apply or rollback holds the checkout's lock."""


class VerificationError(OverlayError):
    """After writing, the files are not what the lock says they must be. Nothing is left half-done."""


class WriteError(OverlayError):
    """Writing a target file (or the journal) failed: disk full, permissions. What was written is undone."""


class AccessError(OverlayError):
    """Git or the file system will not let us work here: a checkout owned by another user (git's
    "dubious ownership"), or a git directory we cannot write the lock and journal into."""


class InterruptedRunError(OverlayError):
    """An interrupted run's journal names files that changed since: they are the user's, kept as they are."""


class UnexpectedError(OverlayError):
    """An error none of the checks foresaw (git or the OS failing in a new way), reported instead of a traceback."""


class Interrupted(OverlayError):
    """Ctrl-C. Files already written were put back first."""

    exit_code = 130


def as_refusal(failure: BaseException, hint_interrupted: str | None, hint_unexpected: str | None) -> OverlayError:
    """Any failure as an OverlayError (one already is returned as it is): Ctrl-C, or what no check foresaw."""
    if isinstance(failure, OverlayError):
        return failure
    if isinstance(failure, KeyboardInterrupt):
        return Interrupted("interrupted (Ctrl-C)", hint=hint_interrupted)
    return UnexpectedError(f"unexpected {type(failure).__name__}: {failure}", hint=hint_unexpected)
