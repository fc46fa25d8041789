"""journal.py: a run killed at any write, or failing, loses nothing of the user's and leaves nothing behind.

The deterministic tests stop a run at its Nth change on disk by raising `Killed` from
journal.fault_point: a BaseException, which the run's own handlers (written for Exception) never
see, so nothing is cleaned up, as with SIGKILL. The random test kills real processes with SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from lighttts_a10 import journal, transaction
from lighttts_a10.errors import ConflictError, InterruptedRunError, OverlayError
from lighttts_a10.selection import Selected, select

from conftest import snapshot

OPERATIONS = {"apply": transaction.apply, "rollback": transaction.rollback}
REVERSE = {"apply": "rollback", "rollback": "apply"}
TARGETS = ["light_tts/server/api_cli.py", "light_tts/server/manager.py", "cosyvoice/cosyvoice/flow/flow.py"]


class Killed(BaseException):
    """Stands for SIGKILL: no except clause of the run catches it, so nothing is cleaned up."""


def no_faults(step: str) -> None:
    pass


def steps_of(run, monkeypatch) -> list[str]:
    """Every change on disk a run makes, in order."""
    steps: list[str] = []
    monkeypatch.setattr(journal, "fault_point", steps.append)
    run()
    monkeypatch.setattr(journal, "fault_point", no_faults)
    return steps


def kill_at(monkeypatch, number: int) -> None:
    """The next run dies just before its `number`th change on disk (1-based)."""
    seen: list[str] = []

    def point(step: str) -> None:
        seen.append(step)
        if len(seen) == number:
            raise Killed(step)

    monkeypatch.setattr(journal, "fault_point", point)


def killed(run, monkeypatch, number: int) -> None:
    kill_at(monkeypatch, number)
    with pytest.raises(Killed):
        run()
    monkeypatch.setattr(journal, "fault_point", no_faults)


def leftovers(root: Path) -> list[str]:
    """Temporary files anywhere in the tree, and the journal or its temporary file."""
    found = [str(p.relative_to(root)) for p in root.rglob("*" + journal.TEMP_SUFFIX)]
    state = root / ".git" / "lighttts-a10"
    return found + [name for name in (journal.JOURNAL, journal.JOURNAL_TEMP) if (state / name).exists()]


class Trees:
    """The checkout, opened once, and the two trees every run must end in."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.selected: Selected = select(root)
        self.ends = {"rollback": snapshot(root)}  # the pinned tree
        transaction.apply(self.selected)
        self.ends["apply"] = snapshot(root)  # the patched tree
        transaction.rollback(self.selected)
        assert snapshot(root) == self.ends["rollback"]

    def run(self, operation: str) -> None:
        OPERATIONS[operation](self.selected)

    def steps(self, monkeypatch) -> dict[str, list[str]]:
        """The changes on disk of an apply and of a rollback (the tree ends where it started)."""
        return {operation: steps_of(lambda: self.run(operation), monkeypatch) for operation in ("apply", "rollback")}


@pytest.fixture
def trees(checkout) -> Trees:
    return Trees(checkout)


def test_kill_at_every_write_then_the_next_run_finishes(trees, monkeypatch):
    """Apply killed before its Nth change, apply again: the patched tree; the same for rollback."""
    steps = trees.steps(monkeypatch)
    for operation in ("apply", "rollback"):
        assert steps[operation][:2] == ["write the journal", "rename the journal into place"]
        assert steps[operation][-1] == "remove the journal"
        assert [step.split()[0] for step in steps[operation][2:-1]] == ["create", "rename"] * 3
    for number in range(1, len(steps["apply"]) + 1):
        for operation in ("apply", "rollback"):
            step = f"{operation} killed before: {steps[operation][number - 1]}"
            start, end = trees.ends[REVERSE[operation]], trees.ends[operation]
            killed(lambda: trees.run(operation), monkeypatch, number)
            # before the first rename and at the journal's removal the tree is at one end; else in between
            assert (snapshot(trees.root) not in (start, end)) == (4 <= number <= 8), step
            assert (journal.read(trees.selected.checkout) is not None) == (number > 2), step  # renamed into place
            trees.run(operation)
            assert snapshot(trees.root) == end, step
            assert leftovers(trees.root) == [], step


def test_an_edit_made_after_a_kill_survives(trees, monkeypatch):
    """After each kill the user edits a target file (one written already, or one not reached yet): the
    next run keeps the edit and refuses, naming the file; once the user settles it, the run finishes."""
    steps = trees.steps(monkeypatch)
    for number in range(1, len(steps["apply"]) + 1):
        for operation in ("apply", "rollback"):
            step = f"{operation} killed before: {steps[operation][number - 1]}"
            end = trees.ends[operation]
            killed(lambda: trees.run(operation), monkeypatch, number)
            relative = TARGETS[number % len(TARGETS)]
            edited = trees.root / relative
            mine = edited.read_bytes() + b"# my edit, made after the kill\n"
            edited.write_bytes(mine)
            with pytest.raises(OverlayError) as caught:
                trees.run(operation)
            # with the journal in place recovery keeps the file and refuses; before, the plan refuses a local edit
            assert isinstance(caught.value, InterruptedRunError if number > 2 else ConflictError), step
            assert relative in caught.value.message + " ".join(str(p.path) for p in caught.value.problems), step
            assert edited.read_bytes() == mine, step
            assert leftovers(trees.root) == [], step
            edited.write_bytes(end[relative][0])  # the user settles it; then the run finishes
            trees.run(operation)
            assert snapshot(trees.root) == end, step


def test_a_kill_during_recovery_is_recovered_by_the_next_run(trees, monkeypatch):
    steps = trees.steps(monkeypatch)
    two_written = 8  # killed before the third rename: two files written, the third one's temporary file there
    assert all(steps[operation][two_written - 1].startswith("rename") for operation in steps)
    recovery: dict[str, list[str]] = {}
    for operation in ("apply", "rollback"):
        killed(lambda: trees.run(operation), monkeypatch, two_written)
        next_run = steps_of(lambda: trees.run(operation), monkeypatch)
        recovery[operation] = next_run[:next_run.index("write the journal")]
        # puts back the two written files, removes the third one's temporary file, drops the journal
        assert [step.split()[0] for step in recovery[operation]] == ["create", "rename", "create", "rename",
                                                                     "remove", "remove"]
    for number in range(1, len(recovery["apply"]) + 1):
        for operation in ("apply", "rollback"):
            step = f"{operation}'s recovery killed before: {recovery[operation][number - 1]}"
            killed(lambda: trees.run(operation), monkeypatch, two_written)
            killed(lambda: trees.run(operation), monkeypatch, number)  # the recovery itself dies
            trees.run(operation)
            assert snapshot(trees.root) == trees.ends[operation], step
            assert leftovers(trees.root) == [], step


def test_random_sigkills_of_real_processes(trees, monkeypatch):
    """25 real processes per layout, each killed with SIGKILL at a random moment of its writes; every
    fifth time a target file is edited after the kill. Apply and rollback alternate."""
    rng = random.Random()
    window = None  # how long a run's writes take, measured on the first two runs (not killed; the second is warm)
    operation = "apply"
    outcomes = {"killed": 0, "finished": 0, "journal left": 0}
    for number in range(27):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: open the checkout itself, say when the first write starts, run
            code = 1
            try:
                os.close(read_end)
                journal.fault_point = lambda step: os.write(write_end, b".") if step == "write the journal" else None
                OPERATIONS[operation](select(trees.root))
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        started = os.read(read_end, 1)
        began = time.monotonic()
        if number < 2:
            assert os.waitpid(pid, 0)[1] == 0
            window = time.monotonic() - began
            assert snapshot(trees.root) == trees.ends[operation]
        else:
            assert started == b".", "the child failed before writing"
            time.sleep(rng.uniform(0, window * 1.2))
            os.kill(pid, signal.SIGKILL)
            status = os.waitpid(pid, 0)[1]
            outcomes["killed" if os.WIFSIGNALED(status) else "finished"] += 1
            assert os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 0
            outcomes["journal left"] += journal.read(trees.selected.checkout) is not None
            if number % 5 == 0:
                relative = rng.choice(TARGETS)
                edited = trees.root / relative
                mine = edited.read_bytes() + b"# mine\n"
                edited.write_bytes(mine)
                with pytest.raises(OverlayError) as caught:
                    trees.run(operation)
                assert relative in caught.value.message + " ".join(str(p.path) for p in caught.value.problems)
                assert edited.read_bytes() == mine and leftovers(trees.root) == []
                edited.write_bytes(trees.ends[operation][relative][0])
            trees.run(operation)
            assert snapshot(trees.root) == trees.ends[operation], outcomes
            assert leftovers(trees.root) == []
        os.close(read_end)
        operation = REVERSE[operation]
    print(f"random SIGKILLs: {outcomes}")
    # some kills must have landed between the journal's write and its removal, or nothing was tested
    assert outcomes["journal left"] > 0, outcomes


def test_a_journal_that_cannot_be_read_is_refused_and_nothing_changes(trees):
    state = trees.selected.checkout.state_dir
    state.mkdir(parents=True, exist_ok=True)
    (state / journal.JOURNAL).write_text('{"format": 1, "files": []}')
    before = snapshot(trees.root)
    for operation in OPERATIONS:
        with pytest.raises(InterruptedRunError, match="not a journal this version can undo"):
            trees.run(operation)
    assert snapshot(trees.root) == before and (state / journal.JOURNAL).exists()


def test_a_journal_naming_a_path_outside_the_checkout_is_refused(trees, tmp_path):
    outside = tmp_path / "outside.py"
    outside.write_text("precious\n")
    state = trees.selected.checkout.state_dir
    state.mkdir(parents=True, exist_ok=True)
    (state / journal.JOURNAL).write_text(
        '{"format": 2, "operation": "apply", "pid": 1, "started": 0, "files": [{"path": "../outside.py", '
        '"temp": "../.outside.py.0.lighttts-a10", "before": null, "after": {"blob": "0", "mode": "100644"}}]}')
    with pytest.raises(InterruptedRunError):
        trees.run("apply")
    assert outside.read_text() == "precious\n"
