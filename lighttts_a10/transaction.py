"""Apply, verify and roll back the series as one transaction over the whole checkout.

This module decides what to write; journal.py writes it (all or nothing, kill-safe) and undoes an
interrupted run first. An exclusive lock on the checkout keeps two runs from interleaving.
"""

from __future__ import annotations

import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import journal
from .checkout import FOREIGN, MISSING, OURS, PRISTINE, UNSAFE, Checkout, FileStatus, blob_id
from .errors import ConflictError, Problem, VerificationError
from .hunks import apply_exact, mismatches
from .journal import Change
from .selection import Selected
from .series import TargetFile


@dataclass
class Outcome:
    """What a command did, for the CLI to print (text or JSON)."""

    written: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    shown_modified: bool = False  # rollback: HEAD has another version committed, so git shows the restore


# -- describing what is in the way ------------------------------------------------------------------
def conflict_problems(selected: Selected, status: FileStatus) -> list[Problem]:
    """Name why a file can't be touched: local edit or upstream drift, the patch, each hunk, the line
    expected and the line found, and the upstream commits that changed the file."""
    target, checkout, series = status.target, selected.checkout, selected.series
    if status.state in (UNSAFE, MISSING):
        return [Problem("unsafe-path" if status.state == UNSAFE else "missing-file",
                        f"{target.path}: {status.reason}", path=target.path, patch=target.patch)]
    commits: list[str] = []
    head_blob = checkout.head_blob(target)
    if head_blob == target.post:
        kind = "local-edit"
        origin = (f"{target.repo if target.repo != '.' else 'LightTTS'}'s HEAD has the patched file committed, "
                  "and it has local edits since")
    elif head_blob != target.pre:
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
    """Warn about off-pin repositories, and undo an interrupted run first (--check: say what that undo
    would do, refuse where the run would refuse, and check against the files as the undo leaves them)."""
    outcome = Outcome()
    checkout = selected.checkout
    checkout.assumed = {}
    warn_if_off_pin(selected, outcome)
    if check_only:
        preview = journal.preview(checkout)
        if preview is not None:
            planned, checkout.assumed = preview
            if planned.kept:
                raise journal.kept_files_error(planned, done=False)
            outcome.notes.append(planned.summary(done=False))
    else:
        recovery = journal.recover(checkout)
        if recovery is not None:
            if recovery.kept:
                raise journal.kept_files_error(recovery)
            outcome.notes.append(recovery.summary())
    selected.statuses = [checkout.status(status.target) for status in selected.statuses]
    return outcome


# -- apply ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Write:
    target: TargetFile
    data: bytes
    mode: str


def changes(writes: list[Write]) -> list[Change]:
    return [Change(write.target.path, write.data, write.mode) for write in writes]


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
        # Pristine means git would commit exactly the pinned blob (line-ending conversion aside): patch that.
        text = selected.checkout.pinned_bytes(target).decode("utf-8", "surrogateescape")
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

    journal.execute(checkout, "apply", changes(writes), verify)
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
        writes.append(Write(target, selected.checkout.checkout_bytes(target), target.mode))
    return writes, problems, to_save


def committed_other_notes(selected: Selected, verb: str) -> list[str]:
    """Rollback restores the pinned bytes even where HEAD has another version committed (the user ran
    `git commit -a` on the patched files): git then shows them modified, and that change is the rollback."""
    checkout = selected.checkout
    by_repo: dict[str, list[TargetFile]] = {}
    for target in selected.series.files:
        if checkout.head_blob(target) != target.pre:
            by_repo.setdefault(target.repo, []).append(target)
    notes = []
    for repo, targets in by_repo.items():
        name = "LightTTS" if repo == "." else repo
        what = ("the patched version" if all(checkout.head_blob(t) == t.post for t in targets)
                else "a version other than the pin's")
        folder = checkout.root if repo == "." else checkout.root / repo
        record = shlex.join(["git", "-C", str(folder), "commit", "-m", "Roll back lighttts-a10", "--",
                             *(t.path_in_repo for t in targets)])
        notes.append(f"{name}'s HEAD ({checkout.head(repo)[:7]}) has {what} of {', '.join(t.path for t in targets)} "
                     f"committed, so git {verb} {'it' if len(targets) == 1 else 'them'} as modified after the "
                     f"rollback: that change is the rollback. Record it with: {record}")
    return notes


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
        outcome.notes.extend(committed_other_notes(selected, "will show"))
        return outcome
    if to_save:
        folder = save_aside(checkout, to_save)
        outcome.notes.append(f"saved your versions of {len(to_save)} file(s) under {folder} before restoring them")

    def verify() -> None:
        bad = []
        for write in writes:
            target = write.target
            status = checkout.status(target)
            unmodified = checkout.head_blob(target) != target.pre or checkout.is_clean(target)
            if status.state != PRISTINE or status.mode != target.mode or not unmodified:
                bad.append(target.path)
        if bad:
            raise VerificationError("after restoring, these files are not the pinned upstream files (or git does "
                                    "not show them unmodified): " + ", ".join(bad))

    journal.execute(checkout, "rollback", changes(writes), verify)
    outcome.written = [write.target.path for write in writes]
    if not writes:
        outcome.notes.append("every touched file is already the pinned upstream file; nothing to do")
    committed = committed_other_notes(selected, "shows")
    outcome.shown_modified = bool(committed)
    outcome.notes.extend(committed)
    return outcome


def warn_if_off_pin(selected: Selected, outcome: Outcome) -> None:
    for path, pin in selected.series.repos.items():
        head = selected.checkout.head(path)
        if head != pin.commit:
            outcome.warnings.append(f"{pin.name} at {path} is at {head[:12]}, not the pin {pin.commit[:12]}; "
                                    "its target files are what decides, and they are checked one by one")

