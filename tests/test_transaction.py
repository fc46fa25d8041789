"""apply / rollback as transactions: all or nothing, nothing of the user's lost."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from lighttts_a10 import transaction
from lighttts_a10.checkout import OURS, PRISTINE
from lighttts_a10.errors import BusyError, ConflictError, VerificationError
from lighttts_a10.selection import select

from conftest import REPO_ROOT, git, snapshot


def states(root):
    return {s.target.path: s.state for s in select(root).statuses}


def test_apply_then_rollback_round_trip(checkout):
    before = snapshot(checkout)
    outcome = transaction.apply(select(checkout))
    assert len(outcome.written) == 3
    assert set(states(checkout).values()) == {OURS}
    assert "n_timesteps=self.flow_steps" in (checkout / "cosyvoice/cosyvoice/flow/flow.py").read_text()
    assert transaction.apply(select(checkout)).written == []  # idempotent
    assert len(transaction.rollback(select(checkout)).written) == 3
    assert snapshot(checkout) == before  # byte for byte, modes included
    assert git(checkout, "status", "--porcelain") == ""
    assert git(checkout / "cosyvoice", "status", "--porcelain") == ""
    assert transaction.rollback(select(checkout)).written == []  # idempotent


def test_only_the_hunk_for_the_right_class_is_applied(checkout):
    transaction.apply(select(checkout))
    flow = (checkout / "cosyvoice/cosyvoice/flow/flow.py").read_text()
    cv2, cv3 = flow.split("class CosyVoice3Flow")
    assert "self.flow_steps" in cv2 and "n_timesteps=10" in cv3


def test_check_writes_nothing(checkout):
    before = snapshot(checkout)
    outcome = transaction.apply(select(checkout), check_only=True)
    assert "would write" in outcome.notes[0]
    assert snapshot(checkout) == before


def test_local_edit_is_refused_and_nothing_changes(checkout):
    cli = checkout / "light_tts/server/api_cli.py"
    cli.write_text(cli.read_text().replace("default=True", "default=False"))
    before = snapshot(checkout)
    with pytest.raises(ConflictError) as caught:
        transaction.apply(select(checkout))
    assert snapshot(checkout) == before
    kinds = {(p.kind, p.path) for p in caught.value.problems}
    assert ("local-edit", "light_tts/server/api_cli.py") in kinds
    mismatch = next(p for p in caught.value.problems if p.kind == "hunk-mismatch")
    assert mismatch.patch == "0002-cli.patch" and mismatch.line == 5
    assert "default=True" in mismatch.expected and "default=False" in mismatch.found
    assert "it has local edits" in caught.value.problems[0].message
    assert "stash them" in caught.value.hint


def test_upstream_drift_names_the_commits(checkout):
    flow = checkout / "cosyvoice/cosyvoice/flow/flow.py"
    flow.write_text("# a new first line\n" + flow.read_text())
    git(checkout / "cosyvoice", "commit", "-qam", "Add a header line")
    with pytest.raises(ConflictError) as caught:
        transaction.apply(select(checkout))
    foreign = next(p for p in caught.value.problems if p.kind == "upstream-drift")
    assert "not the pin" in foreign.message and "changed this file in between" in foreign.message
    assert "this checkout is not at the pin" in caught.value.hint
    assert foreign.commits and foreign.commits[0].endswith("Add a header line")
    assert any(p.kind == "hunk-mismatch" and p.line == 21 for p in caught.value.problems)


def test_off_pin_superproject_with_pristine_files_is_a_warning(checkout):
    (checkout / "NEWS").write_text("unrelated upstream change\n")
    git(checkout, "add", "NEWS")
    git(checkout, "commit", "-qm", "news")
    outcome = transaction.apply(select(checkout))
    assert outcome.written and any("not the pin" in w for w in outcome.warnings)


def test_write_failing_halfway_leaves_nothing_half_applied(checkout, monkeypatch):
    before = snapshot(checkout)
    real = transaction.write_atomic
    calls = []

    def failing(path, data, mode):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(path))
        real(path, data, mode)

    monkeypatch.setattr(transaction, "write_atomic", failing)
    with pytest.raises(VerificationError, match="No space left on device") as caught:
        transaction.apply(select(checkout))
    assert "nothing was changed" in caught.value.hint
    assert snapshot(checkout) == before
    assert transaction.interrupted_run(select(checkout).checkout) is None


KILLER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    from lighttts_a10 import transaction
    from lighttts_a10.selection import select
    real = os.replace
    count = [0]
    def replace(src, dst):
        real(src, dst)
        count[0] += 1
        if count[0] == 2:  # killed between two file writes
            os.kill(os.getpid(), signal.SIGKILL)
    transaction.os.replace = replace
    transaction.{operation}(select(__import__('pathlib').Path({root!r})))
""")


@pytest.mark.parametrize("operation", ["apply", "rollback"])
def test_killed_run_is_undone_by_the_next_run(checkout, operation):
    if operation == "rollback":
        transaction.apply(select(checkout))
    before = snapshot(checkout)
    script = KILLER.format(repo=str(REPO_ROOT), root=str(checkout), operation=operation)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert snapshot(checkout) != before  # it really stopped halfway
    with pytest.raises(ConflictError, match="interrupted"):
        transaction.apply(select(checkout), check_only=True)
    outcome = getattr(transaction, operation)(select(checkout))
    assert any("was interrupted; undid it" in note for note in outcome.notes)
    expected = OURS if operation == "apply" else PRISTINE
    assert set(states(checkout).values()) == {expected}
    assert transaction.interrupted_run(select(checkout).checkout) is None


def test_two_runs_cannot_interleave(checkout):
    selected = select(checkout)
    with transaction.exclusive(selected.checkout):
        with pytest.raises(BusyError, match=f"pid {os.getpid()}"):
            with transaction.exclusive(select(checkout).checkout):
                pass
    with transaction.exclusive(selected.checkout):  # released afterwards
        pass


def test_rollback_refuses_local_edits_unless_forced(checkout):
    transaction.apply(select(checkout))
    manager = checkout / "light_tts/server/manager.py"
    manager.write_text(manager.read_text() + "# my tuning\n")
    before = snapshot(checkout)
    with pytest.raises(ConflictError) as caught:
        transaction.rollback(select(checkout))
    assert snapshot(checkout) == before
    assert [p.path for p in caught.value.problems if p.kind == "local-edit"] == ["light_tts/server/manager.py"]

    outcome = transaction.rollback(select(checkout), force=True)
    saved_note = next(note for note in outcome.notes if "saved your versions" in note)
    folder = saved_note.split(" under ")[1].split(" before")[0]
    assert os.path.isfile(os.path.join(folder, "light_tts/server/manager.py"))
    with open(os.path.join(folder, "light_tts/server/manager.py")) as stream:
        assert stream.read().endswith("# my tuning\n")
    assert set(states(checkout).values()) == {PRISTINE}
    assert git(checkout, "status", "--porcelain") == ""


def test_rollback_restores_deleted_files_and_modes(checkout):
    transaction.apply(select(checkout))
    (checkout / "light_tts/server/manager.py").unlink()
    cli = checkout / "light_tts/server/api_cli.py"
    transaction.rollback(select(checkout))
    assert os.access(cli, os.X_OK)  # 100755 at the pin
    assert git(checkout, "status", "--porcelain") == ""


def test_rollback_needs_no_state_record(checkout):
    transaction.apply(select(checkout))
    import shutil
    shutil.rmtree(select(checkout).checkout.state_dir)
    transaction.rollback(select(checkout))
    assert set(states(checkout).values()) == {PRISTINE}


def test_symlink_target_is_refused_and_outside_untouched(checkout, tmp_path):
    outside = tmp_path / "outside.py"
    outside.write_text("precious\n")
    manager = checkout / "light_tts/server/manager.py"
    manager.unlink()
    os.symlink(outside, manager)
    with pytest.raises(ConflictError) as caught:
        transaction.apply(select(checkout))
    assert any(p.kind == "unsafe-path" for p in caught.value.problems)
    with pytest.raises(ConflictError):
        transaction.rollback(select(checkout), force=True)
    assert outside.read_text() == "precious\n" and os.path.islink(manager)


def test_failed_rollback_removes_a_file_it_had_recreated(checkout, monkeypatch):
    transaction.apply(select(checkout))
    manager = checkout / "light_tts/server/manager.py"
    manager.unlink()  # the user deleted it; rollback restores it first (files are written in path order)
    real = transaction.write_atomic
    calls = []

    def failing(path, data, mode):
        calls.append(path)
        if path.name == "manager.py":
            real(path, data, mode)
            raise OSError(5, "Input/output error", str(path))
        real(path, data, mode)

    monkeypatch.setattr(transaction, "write_atomic", failing)
    with pytest.raises(VerificationError):
        transaction.rollback(select(checkout))
    assert not manager.exists()  # back to how the user left it
    assert states(checkout)["light_tts/server/api_cli.py"] == OURS
