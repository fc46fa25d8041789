"""Apply, verify and roll back the series as one transaction over the whole checkout.

Every write goes through one journal: before the first file changes, the journal records each file
to be written with a copy of its current bytes. A run that fails halfway restores those copies; a
run that is killed leaves the journal behind, and the next run restores them before anything else.
An exclusive lock on the checkout keeps two runs from interleaving.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .checkout import FOREIGN, MISSING, OURS, PRISTINE, UNSAFE, Checkout, FileStatus, blob_id
from .errors import BusyError, ConflictError, OverlayError, Problem, VerificationError
from .hunks import apply_exact, mismatches
from .selection import Selected
from .series import TargetFile

JOURNAL = "journal.json"
BACKUPS = "journal-backups"


@dataclass(frozen=True)
class Write:
    target: TargetFile
    data: bytes
    mode: str


@dataclass
class Outcome:
    """What a command did, for the CLI to print (text or JSON)."""

    written: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# -- files ---------------------------------------------------------------------------------------
def write_atomic(path: Path, data: bytes, mode: str) -> None:
    """Replace `path` with `data` in one rename, so a kill leaves the old or the new file, never half."""
    if os.path.lexists(path) and not os.path.islink(path):
        permissions = stat.S_IMODE(os.stat(path).st_mode)
    else:
        umask = os.umask(0)
        os.umask(umask)
        permissions = 0o666 & ~umask
    if mode == "100755":
        permissions |= (permissions & 0o444) >> 2  # execute wherever read is allowed, as git does
    else:
        permissions &= ~0o111
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".lighttts-a10")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, permissions)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _sync_write_json(path: Path, payload: dict) -> None:
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", encoding="utf-8") as stream:
        json.dump(payload, stream, indent=1)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)


# -- lock ----------------------------------------------------------------------------------------
@contextmanager
def exclusive(checkout: Checkout) -> Iterator[None]:
    """Hold the checkout's lock; a second run fails at once instead of interleaving writes."""
    checkout.state_dir.mkdir(parents=True, exist_ok=True)
    lock_path = checkout.state_dir / "lock"
    with open(lock_path, "a+", encoding="utf-8") as stream:
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            stream.seek(0)
            holder = stream.read().strip() or "unknown"
            raise BusyError(f"another apply_patches.py or rollback.py is working on {checkout.root} ({holder})",
                            hint="wait for it to finish, then run this again") from error
        stream.seek(0)
        stream.truncate()
        stream.write(f"pid {os.getpid()}")
        stream.flush()
        try:
            yield
        finally:
            stream.seek(0)
            stream.truncate()


# -- journal -------------------------------------------------------------------------------------
def _journal_path(checkout: Checkout) -> Path:
    return checkout.state_dir / JOURNAL


def interrupted_run(checkout: Checkout) -> dict | None:
    path = _journal_path(checkout)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {"operation": "unknown", "files": []}  # killed while writing the journal: no file was touched yet


def undo_from_journal(checkout: Checkout) -> list[str]:
    """Put back every file the journal names to the bytes it had before that run; drop the journal."""
    journal = interrupted_run(checkout)
    restored: list[str] = []
    if journal is None:
        return restored
    backups = checkout.state_dir / BACKUPS
    for entry in journal["files"]:
        path = checkout.root / entry["path"]
        current = blob_id(path.read_bytes()) if path.is_file() and not path.is_symlink() else None
        if current == entry["blob"]:
            continue
        if entry["blob"] is None:  # the run created this file (rollback restoring a deleted one)
            path.unlink()
        else:
            write_atomic(path, (backups / entry["backup"]).read_bytes(), entry["mode"])
        restored.append(entry["path"])
    _journal_path(checkout).unlink()
    shutil.rmtree(backups, ignore_errors=True)
    return restored


def recover(checkout: Checkout, outcome: Outcome) -> None:
    """Undo a run that was killed between writes (its journal is still there)."""
    journal = interrupted_run(checkout)
    if journal is None:
        return
    restored = undo_from_journal(checkout)
    outcome.notes.append(
        f"an earlier {journal.get('operation', 'unknown')} run (pid {journal.get('pid', '?')}) was interrupted; "
        f"undid it: restored {len(restored)} file(s) to their state before that run"
        + (f" ({', '.join(restored)})" if restored else ""))


def execute(checkout: Checkout, operation: str, writes: list[Write], verify) -> None:
    """Write everything or nothing: journal first, then each file atomically, then `verify()`."""
    if not writes:
        return
    backups = checkout.state_dir / BACKUPS
    shutil.rmtree(backups, ignore_errors=True)
    backups.mkdir(parents=True)
    entries = []
    for index, write in enumerate(writes):
        path = checkout.root / write.target.path
        before = path.read_bytes() if path.is_file() else b""
        (backups / str(index)).write_bytes(before)
        mode = checkout.status(write.target).mode or write.mode
        entries.append({"path": write.target.path, "blob": blob_id(before) if path.is_file() else None,
                        "mode": mode, "backup": str(index)})
    _sync_write_json(_journal_path(checkout),
                     {"operation": operation, "pid": os.getpid(), "started": time.time(), "files": entries})
    try:
        for write in writes:
            write_atomic(checkout.root / write.target.path, write.data, write.mode)
        verify()
    except BaseException as error:
        restored = undo_from_journal(checkout)
        if isinstance(error, OverlayError):
            error.hint = f"restored {len(restored)} file(s) already written; nothing was changed"
            raise
        if isinstance(error, OSError):
            raise VerificationError(f"writing {getattr(error, 'filename', '') or 'a file'} failed: {error.strerror or error}",
                                    hint=f"restored {len(restored)} file(s) already written; nothing was changed") from error
        raise
    _journal_path(checkout).unlink()
    shutil.rmtree(backups, ignore_errors=True)


# -- describing what is in the way ------------------------------------------------------------------
def conflict_problems(selected: Selected, status: FileStatus) -> list[Problem]:
    """Name why a file can't be touched: local edit or upstream drift, the patch, each hunk, the line
    expected and the line found, and the upstream commits that changed the file."""
    target, checkout, series = status.target, selected.checkout, selected.series
    if status.state in (UNSAFE, MISSING):
        return [Problem("unsafe-path" if status.state == UNSAFE else "missing-file",
                        f"{target.path}: {status.reason}", path=target.path, patch=target.patch)]
    commits: list[str] = []
    if checkout.head_blob(target) != target.pre:
        kind = "upstream-drift"
        commits = checkout.commits_between_pin_and_head(target)
        pin = series.repos[target.repo]
        origin = (f"{pin.name} here is at {checkout.head(target.repo)[:7]}, not the pin {pin.commit[:7]}, "
                  f"and upstream changed this file in between")
    else:
        kind = "local-edit"
        origin = "it has local edits"
    bad_hunks = mismatches(checkout.read_text(target), series.hunks(target))
    where = "" if bad_hunks else " (every hunk still matches: the difference is elsewhere in the file)"
    problems = [Problem(kind, f"{target.path}: neither the pinned upstream file nor the patched one; {origin}{where}",
                        path=target.path, patch=target.patch, commits=commits)]
    for bad in bad_hunks:
        problems.append(Problem("hunk-mismatch", f"error: patch failed: {target.path}:{bad.line}",
                                path=target.path, patch=target.patch, hunk=bad.hunk, line=bad.line,
                                expected=bad.expected, found=bad.found))
    return problems


def refusal_hint(selected: Selected, problems: list[Problem], local_edit_advice: str) -> str:
    """What to do about the problems found, most specific first."""
    kinds = {problem.kind for problem in problems}
    lines = ["nothing was changed."]
    if "local-edit" in kinds:
        lines.append(local_edit_advice)
    if "upstream-drift" in kinds:
        pins = ", ".join(f"{pin.name} {pin.commit[:7]}" for pin in selected.series.repos.values())
        lines.append(f"this checkout is not at the pin of patch set {selected.series.name} ({pins}): check that "
                     "out, or use a supported pin")
    if kinds & {"unsafe-path", "missing-file"}:
        lines.append("restore those paths as regular files inside the checkout (e.g. git checkout -- PATH)")
    if selected.others:
        lines.append("other supported pins: " + "; ".join(selected.others))
    return "\n".join(lines)


# -- shared start of apply and rollback ----------------------------------------------------------------
def prepare(selected: Selected, check_only: bool) -> Outcome:
    """Warn about off-pin repositories, and undo an interrupted run (or refuse to check over one)."""
    outcome = Outcome()
    checkout = selected.checkout
    warn_if_off_pin(selected, outcome)
    if check_only:
        if interrupted_run(checkout):
            raise ConflictError("an earlier run was interrupted and may have left files half-written",
                                hint="run apply_patches.py or rollback.py without --check: it undoes that run first")
        return outcome
    recover(checkout, outcome)
    selected.statuses = [checkout.status(status.target) for status in selected.statuses]
    return outcome


# -- apply ---------------------------------------------------------------------------------------
def plan_apply(selected: Selected) -> tuple[list[Write], list[Problem]]:
    writes: list[Write] = []
    problems: list[Problem] = []
    for status in selected.statuses:
        target = status.target
        if status.state == OURS:
            continue
        if status.state != PRISTINE:
            problems.extend(conflict_problems(selected, status))
            continue
        text = selected.checkout.read_text(target)
        hunks = selected.series.hunks(target)
        bad = mismatches(text, hunks)
        if bad:  # cannot happen with a consistent lock; say so rather than guess
            problems.append(Problem("lock-mismatch", f"{target.path}: pristine file but {len(bad)} hunk(s) of "
                                    f"{target.patch} do not match: the patch set is inconsistent", path=target.path))
            continue
        data = apply_exact(text, hunks).encode("utf-8", "surrogateescape")
        if blob_id(data) != target.post:
            problems.append(Problem("lock-mismatch", f"{target.path}: {target.patch} gives blob {blob_id(data)}, the lock "
                                    f"says {target.post}: the patch set is inconsistent", path=target.path))
            continue
        writes.append(Write(target, data, status.mode or target.mode))
    return writes, problems


def apply(selected: Selected, check_only: bool = False) -> Outcome:
    outcome = prepare(selected, check_only)
    checkout = selected.checkout
    writes, problems = plan_apply(selected)
    if problems:
        raise ConflictError(f"cannot apply {selected.series.summary()} to {checkout.root}", problems,
                            hint=refusal_hint(selected, problems, "local edits are never overwritten: stash them "
                                              "(git stash, in the repository that owns the file) and apply again, or "
                                              "run rollback.py --force to save them aside and restore upstream"))
    if check_only:
        outcome.notes.append("all hunks match exactly; apply would write " + (
            ", ".join(w.target.path for w in writes) if writes else "nothing (already applied)"))
        return outcome
    if not writes:
        outcome.notes.append("the series is already applied; nothing to do")
        return outcome

    def verify() -> None:
        wrong = [s for s in (checkout.status(w.target) for w in writes) if s.state != OURS]
        if wrong:
            raise VerificationError("after writing, these files are not the patched version: "
                                    + ", ".join(s.target.path for s in wrong))

    execute(checkout, "apply", writes, verify)
    outcome.written = [write.target.path for write in writes]
    return outcome


# -- rollback ------------------------------------------------------------------------------------
def plan_rollback(selected: Selected, force: bool) -> tuple[list[Write], list[Problem], list[FileStatus]]:
    writes: list[Write] = []
    problems: list[Problem] = []
    to_save: list[FileStatus] = []
    for status in selected.statuses:
        target = status.target
        if status.state == PRISTINE and status.mode == target.mode:
            continue
        if status.state == UNSAFE or (status.state == FOREIGN and not force):
            problems.extend(conflict_problems(selected, status))
            continue
        if status.state == FOREIGN:
            to_save.append(status)
        writes.append(Write(target, selected.checkout.pinned_bytes(target), target.mode))
    return writes, problems, to_save


def save_aside(checkout: Checkout, statuses: list[FileStatus]) -> Path:
    """Copy local versions somewhere safe (inside the superproject's git dir) before --force replaces them."""
    folder = checkout.state_dir / time.strftime("saved-%Y%m%d-%H%M%S")
    suffix = 1
    while folder.exists():
        folder = folder.with_name(f"{folder.name.split('.')[0]}.{suffix}")
        suffix += 1
    for status in statuses:
        destination = folder / status.target.path
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(checkout.root / status.target.path, destination)
    return folder


def rollback(selected: Selected, check_only: bool = False, force: bool = False) -> Outcome:
    outcome = prepare(selected, check_only)
    checkout = selected.checkout
    writes, problems, to_save = plan_rollback(selected, force)
    if problems:
        raise ConflictError(f"cannot roll back {checkout.root}: files hold changes that are not the overlay's",
                            problems, hint=refusal_hint(selected, problems, "stash those edits (git stash, in the "
                                                        "repository that owns the file), or rerun with --force to "
                                                        "save them aside and restore the upstream files"))
    if check_only:
        outcome.notes.append("rollback would restore " + (", ".join(w.target.path for w in writes) or "nothing"))
        return outcome
    if to_save:
        folder = save_aside(checkout, to_save)
        outcome.notes.append(f"saved your versions of {len(to_save)} file(s) under {folder} before restoring them")

    def verify() -> None:
        bad = []
        for write in writes:
            status = checkout.status(write.target)
            if status.state != PRISTINE or status.mode != write.target.mode or not checkout.is_clean(write.target):
                bad.append(write.target.path)
        if bad:
            raise VerificationError("after restoring, git does not show these files as unmodified: " + ", ".join(bad))

    execute(checkout, "rollback", writes, verify)
    outcome.written = [write.target.path for write in writes]
    if not writes:
        outcome.notes.append("every touched file is already the pinned upstream file; nothing to do")
    return outcome


def warn_if_off_pin(selected: Selected, outcome: Outcome) -> None:
    for path, pin in selected.series.repos.items():
        head = selected.checkout.head(path)
        if head != pin.commit:
            outcome.warnings.append(f"{pin.name} at {path} is at {head[:12]}, not the pin {pin.commit[:12]}; "
                                    "its target files are what decides, and they are checked one by one")

