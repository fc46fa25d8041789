"""The one way the overlay changes files: a journal first, then atomic writes; and one recovery path.

Before the first file changes, the journal (`.git/lighttts-a10/journal.json`: written to a temporary
file, fsynced, renamed into place) records for each file its bytes and mode before the run, the blob
id and mode the run will write, and the name of the temporary file the run will write them to. Each
file is then written to that temporary file, fsynced and renamed over the target; the journal goes last.

Recovery (after a failed write, or by the next run after a kill) looks at each file the journal
names: a file that holds exactly what the run wrote is put back as it was; a file still as it was is
left alone; anything else changed after the run, so it is the user's and is kept untouched (the
caller then refuses and names it). Every temporary file the journal names is removed. Recovery writes
the same way, through the same temporary names, so a kill during recovery is recovered next time.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import posixpath
import secrets
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .checkout import Checkout, blob_id, file_mode
from .errors import (AccessError, BusyError, CheckoutError, InterruptedRunError, OverlayError, WriteError,
                     as_refusal)
from .series import check_relative_path

JOURNAL = "journal.json"
JOURNAL_TEMP = "journal.json.tmp"
FORMAT = 2
TEMP_SUFFIX = ".lighttts-a10"

# Test seam: called with a description just before every change on disk (each temporary file, each
# rename, each removal, each journal write), so tests can stop a run at exactly that point.
fault_point: Callable[[str], None] = lambda step: None

# What recovery finds in one file of an interrupted run.
UNTOUCHED = "untouched"  # as it was before the run: nothing to undo
WRITTEN = "written"  # exactly what the run wrote: put back as it was
CHANGED = "changed"  # anything else: changed after the run, so it is the user's: kept as it is


@dataclass(frozen=True)
class Version:
    """One content of a file: blob id and mode; for the content a run replaces, its bytes too."""

    blob: str
    mode: str
    data: bytes | None = None


@dataclass(frozen=True)
class Change:
    """One file a run writes."""

    path: str  # relative to the LightTTS root
    data: bytes
    mode: str  # "100644" or "100755"


@dataclass(frozen=True)
class Entry:
    path: str
    temp: str  # the run's temporary file, relative to the root, in the same folder as `path`
    before: Version | None  # None: the file did not exist before the run
    after: Version


@dataclass(frozen=True)
class Journal:
    operation: str
    pid: int
    started: float
    entries: list[Entry]

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"{self.operation} run (pid {self.pid}, started {when})"


@dataclass(frozen=True)
class Finding:
    entry: Entry
    state: str  # UNTOUCHED, WRITTEN or CHANGED
    temp_present: bool


@dataclass
class Recovery:
    journal: Journal
    restored: list[str] = field(default_factory=list)  # put back as they were before the run
    kept: list[str] = field(default_factory=list)  # changed after the run: the user's, untouched
    removed: list[str] = field(default_factory=list)  # the run's temporary files

    def summary(self, done: bool = True) -> str:
        """What the undo did (or, for --check, would do)."""
        undo, put, remove = ("undid", "put back", "removed") if done else ("would undo", "would put back", "would remove")
        text = f"{undo} the interrupted {self.journal.describe()}: "
        text += (f"{put} {len(self.restored)} file(s) as they were before it ({', '.join(self.restored)})"
                 if self.restored else "no file held what it wrote")
        if self.removed:
            text += f"; {remove} its temporary file(s) {', '.join(self.removed)}"
        return text


def journal_path(checkout: Checkout) -> Path:
    return checkout.state_dir / JOURNAL


# -- the lock ------------------------------------------------------------------------------------
@contextmanager
def exclusive(checkout: Checkout, required: bool = True) -> Iterator[bool]:
    """Hold the checkout's lock, so a second run fails at once instead of interleaving writes.

    Yields whether the lock is held: a read-only command (required=False) goes on without it where
    the git directory cannot be written; a writing command refuses."""
    stream = None
    try:
        checkout.state_dir.mkdir(parents=True, exist_ok=True)
        stream = open(checkout.state_dir / "lock", "a+", encoding="utf-8")
    except OSError as error:
        if required:
            raise AccessError(f"cannot write the lock in {checkout.state_dir}: {error.strerror or error}",
                              hint="nothing was changed. apply_patches.py and rollback.py keep their lock and "
                                   "journal in LightTTS's git directory: run them as the user who owns the checkout, "
                                   "or make that directory writable (--check and --status work without it)") from error
    if stream is None:
        yield False
        return
    with stream:
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
            yield True
        finally:
            stream.seek(0)
            stream.truncate()


# -- files ---------------------------------------------------------------------------------------
def _sync_folder(folder: Path) -> None:
    """Make a rename or removal in `folder` durable."""
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _permissions(path: Path, mode: str) -> int:
    """The permission bits to write `path` with: its own (or the umask's), executable as `mode` says."""
    if os.path.lexists(path) and not os.path.islink(path):
        permissions = stat.S_IMODE(os.stat(path).st_mode)
    else:
        umask = os.umask(0)
        os.umask(umask)
        permissions = 0o666 & ~umask
    if mode == "100755":
        return permissions | (permissions & 0o444) >> 2  # execute wherever read is allowed, as git does
    return permissions & ~0o111


def _write(checkout: Checkout, relative: str, temp: str, data: bytes, mode: str) -> None:
    """Replace `relative` with `data` through the temporary file `temp`: a kill leaves old or new, never half."""
    path, temporary = checkout.root / relative, checkout.root / temp
    try:
        permissions = _permissions(path, mode)
        fault_point(f"create {temp}")
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fchmod(stream.fileno(), permissions)
            os.fsync(stream.fileno())
        fault_point(f"rename {temp} -> {relative}")
        os.replace(temporary, path)
        _sync_folder(path.parent)
    except OSError as error:  # name the file the user knows, not our temporary file
        raise WriteError(f"cannot write {relative}: {error.strerror or error}") from error


def _remove(checkout: Checkout, relative: str) -> None:
    try:
        fault_point(f"remove {relative}")
        os.unlink(checkout.root / relative)
        _sync_folder((checkout.root / relative).parent)
    except OSError as error:
        raise WriteError(f"cannot remove {relative}: {error.strerror or error}") from error


def _on_disk(path: Path) -> tuple[str, str] | None | bool:
    """(blob, mode) of a regular file, None if absent, False for anything else (symlink, folder...)."""
    if not os.path.lexists(path):
        return None
    if not stat.S_ISREG(os.lstat(path).st_mode):
        return False
    return blob_id(path.read_bytes()), file_mode(path)


# -- the journal itself ------------------------------------------------------------------------------
def _to_json(journal: Journal) -> dict:
    def version(value: Version | None) -> dict | None:
        if value is None:
            return None
        out: dict = {"blob": value.blob, "mode": value.mode}
        if value.data is not None:
            out["bytes"] = base64.b64encode(value.data).decode("ascii")
        return out

    return {"format": FORMAT, "operation": journal.operation, "pid": journal.pid, "started": journal.started,
            "files": [{"path": e.path, "temp": e.temp, "before": version(e.before), "after": version(e.after)}
                      for e in journal.entries]}


def _from_json(payload: dict) -> Journal:
    def version(value: dict | None, with_bytes: bool) -> Version | None:
        if value is None:
            return None
        data = base64.b64decode(value["bytes"], validate=True) if with_bytes else None
        if data is not None and blob_id(data) != value["blob"]:
            raise ValueError(f"the saved bytes are not blob {value['blob']}")
        return Version(str(value["blob"]), str(value["mode"]), data)

    if payload.get("format") != FORMAT:
        raise ValueError(f"journal format {payload.get('format')!r}, this version reads {FORMAT}")
    entries = []
    for item in payload["files"]:
        path, temp = str(item["path"]), str(item["temp"])
        folder, name = posixpath.split(path)
        reason = check_relative_path(path)
        if reason or posixpath.dirname(temp) != folder or not posixpath.basename(temp).startswith(f".{name}.") \
                or not temp.endswith(TEMP_SUFFIX):
            raise ValueError(f"it names {path!r} / {temp!r}, which no run writes")
        after = version(item["after"], False)
        if after is None:
            raise ValueError(f"no 'after' for {path}")
        entries.append(Entry(path, temp, version(item["before"], True), after))
    return Journal(str(payload["operation"]), int(payload["pid"]), float(payload["started"]), entries)


def read(checkout: Checkout) -> Journal | None:
    """The journal of an interrupted run, or None when every run finished."""
    path = journal_path(checkout)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise AccessError(f"cannot read {path}: {error.strerror or error}",
                          hint="run as the user who owns the checkout") from error
    try:
        journal = _from_json(json.loads(raw))
        for entry in journal.entries:
            checkout.resolve(entry.path)
    except (ValueError, KeyError, TypeError, binascii.Error, CheckoutError) as error:
        detail = error.message if isinstance(error, CheckoutError) else str(error)
        raise InterruptedRunError(
            f"{path} is there but is not a journal this version can undo ({detail})",
            hint="it is renamed into place only once complete, so something else wrote it (an older lighttts-a10: "
                 "finish with that version). Check the files with apply_patches.py --status, then move it away") \
            from error
    return journal


def _save(checkout: Checkout, journal: Journal) -> None:
    """Write the journal atomically: to a temporary file, fsync, rename into place."""
    folder = checkout.state_dir
    temporary = folder / JOURNAL_TEMP
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fault_point("write the journal")
        with open(temporary, "wb") as stream:
            stream.write(json.dumps(_to_json(journal), indent=1).encode("utf-8"))
            stream.flush()
            os.fsync(stream.fileno())
        fault_point("rename the journal into place")
        os.replace(temporary, folder / JOURNAL)
        _sync_folder(folder)
    except OSError as error:
        raise WriteError(f"cannot write the journal {folder / JOURNAL}: {error.strerror or error}",
                         hint="nothing was changed") from error


def _drop(checkout: Checkout) -> None:
    try:
        fault_point("remove the journal")
        journal_path(checkout).unlink()
        _sync_folder(checkout.state_dir)
    except OSError as error:
        raise WriteError(f"cannot remove the journal {journal_path(checkout)}: {error.strerror or error}",
                         hint="the files are written; the next run will undo this run first, then do its job") \
            from error


def _drop_unfinished_journal(checkout: Checkout) -> None:
    """A journal.json.tmp without journal.json is a run killed before its first file write: discard it."""
    temporary = checkout.state_dir / JOURNAL_TEMP
    if temporary.exists():
        try:
            temporary.unlink()
        except OSError as error:
            raise WriteError(f"cannot remove {temporary}: {error.strerror or error}") from error


# -- recovery ------------------------------------------------------------------------------------
def inspect(checkout: Checkout, journal: Journal) -> list[Finding]:
    """What each file of an interrupted run holds now. Reads only."""
    findings = []
    for entry in journal.entries:
        found = _on_disk(checkout.root / entry.path)
        before = (entry.before.blob, entry.before.mode) if entry.before else None
        state = UNTOUCHED if found == before else WRITTEN if found == (entry.after.blob, entry.after.mode) else CHANGED
        findings.append(Finding(entry, state, os.path.lexists(checkout.root / entry.temp)))
    return findings


def _plan(journal: Journal, findings: list[Finding]) -> Recovery:
    """What recovering these findings does: put back what the run wrote, keep what changed since, remove temps."""
    return Recovery(journal, restored=[f.entry.path for f in findings if f.state == WRITTEN],
                    kept=[f.entry.path for f in findings if f.state == CHANGED],
                    removed=[f.entry.temp for f in findings if f.temp_present])


def preview(checkout: Checkout) -> tuple[Recovery, dict[str, tuple[bytes, str] | None]] | None:
    """What recover() would do, without doing it (for --check): the plan, and the contents it would
    put back by path ((bytes, mode), or None for 'removed'). None when no run was interrupted."""
    journal = read(checkout)
    if journal is None:
        return None
    findings = inspect(checkout, journal)
    planned = _plan(journal, findings)
    contents: dict[str, tuple[bytes, str] | None] = {}
    for finding in findings:
        if finding.state == WRITTEN:
            before = finding.entry.before
            contents[finding.entry.path] = None if before is None else (before.data or b"", before.mode)
    return planned, contents


def recover(checkout: Checkout) -> Recovery | None:
    """Undo an interrupted run, keeping every file that changed after it; None when there is none."""
    _drop_unfinished_journal(checkout)
    journal = read(checkout)
    if journal is None:
        return None
    findings = inspect(checkout, journal)
    for finding in findings:
        entry = finding.entry
        if finding.temp_present:
            _remove(checkout, entry.temp)
        if finding.state == WRITTEN:
            if entry.before is None:  # the run created it (rollback restoring a deleted file)
                _remove(checkout, entry.path)
            else:
                _write(checkout, entry.path, entry.temp, entry.before.data or b"", entry.before.mode)
    _drop(checkout)
    return _plan(journal, findings)


def kept_files_error(recovery: Recovery, done: bool = True) -> InterruptedRunError:
    """The refusal for files that changed after an interrupted run: they stay as the user left them."""
    return InterruptedRunError(
        f"the interrupted {recovery.journal.describe()} had planned to write {', '.join(recovery.kept)}, and "
        f"{'it has' if len(recovery.kept) == 1 else 'they have'} changed since: neither what that run wrote nor "
        "what was there before. Kept as you left it",
        hint=(recovery.summary(done) + ".\n" if recovery.restored or recovery.removed else "")
        + "your version of those files was not touched. Review it; to go on, stash those edits (git stash, in the "
          "repository that owns the file) and run this again, or run rollback.py --force to save them aside and "
          "restore upstream")


# -- a run -----------------------------------------------------------------------------------------
def execute(checkout: Checkout, operation: str, changes: list[Change], verify: Callable[[], None]) -> None:
    """Write every change or none: journal first, then each file atomically, then `verify()`, then drop
    the journal. On any failure the files already written are put back before the error is raised."""
    if not changes:
        return
    token = secrets.token_hex(4)
    entries = []
    for change in changes:
        path = checkout.root / change.path
        before = None
        if path.is_file():  # plans write only regular files, or paths where there is none
            data = path.read_bytes()
            before = Version(blob_id(data), file_mode(path), data)
        folder, name = posixpath.split(change.path)
        temp = posixpath.join(folder, f".{name}.{token}{TEMP_SUFFIX}")
        entries.append(Entry(change.path, temp, before, Version(blob_id(change.data), change.mode)))
    _save(checkout, Journal(operation, os.getpid(), time.time(), entries))
    try:
        for change, entry in zip(changes, entries):
            _write(checkout, change.path, entry.temp, change.data, change.mode)
        verify()
    except (Exception, KeyboardInterrupt) as error:
        failure = _undone(checkout, error)
        if failure is error:
            raise
        raise failure from error
    _drop(checkout)


def _undone(checkout: Checkout, error: BaseException) -> OverlayError:
    """Undo the run that just failed; the error to report, saying what was put back."""
    try:
        recovery = recover(checkout)
    except (OverlayError, OSError) as second:
        detail = second.message if isinstance(second, OverlayError) else str(second)
        return WriteError(f"{_reason(error)}; putting back the files already written failed too: {detail}",
                          hint=f"the journal {journal_path(checkout)} is kept: fix the cause, then run "
                               "apply_patches.py or rollback.py again: it finishes the undo first")
    done = ("put back the files already written; nothing was changed"
            if recovery is None or not recovery.kept else recovery.summary()
            + f"; kept {', '.join(recovery.kept)}, which changed while this run worked")
    if isinstance(error, OverlayError):
        error.hint = done
    return as_refusal(error, done, done)


def _reason(error: BaseException) -> str:
    return as_refusal(error, None, None).message
