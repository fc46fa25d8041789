"""The two scripts as users run them: exit codes, messages, --json, --status, --check."""

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lighttts_a10 import cli, journal, transaction
from lighttts_a10.selection import select

from conftest import GIT_ENV, REPO_ROOT, git, run_tool, snapshot


def test_round_trip_through_the_scripts(checkout):
    status = run_tool("apply_patches.py", "--status", str(checkout))
    assert status.returncode == 1 and "not applied" in status.stderr
    applied = run_tool("apply_patches.py", str(checkout))
    assert applied.returncode == 0, applied.stderr
    assert "applied 2 patches: wrote 3 files" in applied.stdout
    status = run_tool("apply_patches.py", "--status", str(checkout))
    assert status.returncode == 0 and "the series is fully applied" in status.stdout
    again = run_tool("apply_patches.py", str(checkout))
    assert again.returncode == 0 and "already applied" in again.stdout
    back = run_tool("rollback.py", str(checkout))
    assert back.returncode == 0 and "git shows them unmodified" in back.stdout
    assert run_tool("rollback.py", str(checkout)).returncode == 0
    assert git(checkout, "status", "--porcelain") == ""


def test_path_defaults_to_lighttts_dir(checkout):
    result = run_tool("apply_patches.py", "--check", env={"LIGHTTTS_DIR": str(checkout)})
    assert result.returncode == 0 and "check passed" in result.stdout


def test_json_status(checkout):
    result = run_tool("apply_patches.py", "--status", "--json", str(checkout))
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["exit_code"] == 1
    assert report["set"] == "fakepin"
    assert {p["name"]: p["state"] for p in report["patches"]} == {"0001-flow.patch": "not applied",
                                                                  "0002-cli.patch": "not applied"}
    assert {f["state"] for f in report["files"]} == {"pristine"}


def test_refusal_names_file_patch_hunk_and_lines(checkout):
    cli = checkout / "light_tts/server/api_cli.py"
    cli.write_text(cli.read_text().replace("type=bool", "type=int"))
    before = snapshot(checkout)
    result = run_tool("apply_patches.py", str(checkout))
    assert result.returncode == 1
    assert "error: patch failed: light_tts/server/api_cli.py:5" in result.stderr
    assert "0002-cli.patch, hunk 1, line 5" in result.stderr
    assert "expected: '    parser.add_argument(\"--load_trt\", type=bool, default=True)'" in result.stderr
    assert "found:    '    parser.add_argument(\"--load_trt\", type=int, default=True)'" in result.stderr
    assert "it has local edits" in result.stderr and "nothing was changed" in result.stderr
    assert snapshot(checkout) == before
    report = json.loads(run_tool("apply_patches.py", "--json", str(checkout)).stdout)
    assert report["result"] == "error"
    assert {(p["kind"], p.get("hunk")) for p in report["problems"]} == {("local-edit", None), ("hunk-mismatch", 1)}


def test_usage_errors_exit_2(checkout):
    assert run_tool("apply_patches.py", env={"LIGHTTTS_DIR": ""}).returncode == 2
    assert run_tool("apply_patches.py", "--check", "--status", str(checkout)).returncode == 2
    unknown = run_tool("apply_patches.py", "--set", "nope", str(checkout))
    assert unknown.returncode == 2 and "unknown patch set 'nope'; available: fakenext, fakepin" in unknown.stderr
    assert run_tool("rollback.py", "--bogus", str(checkout)).returncode == 2


def test_bad_checkouts_exit_1_with_a_reason(tmp_path, patches_env):
    not_git = tmp_path / "plain"
    not_git.mkdir()
    result = run_tool("apply_patches.py", str(not_git))
    assert result.returncode == 1 and "is not a git checkout" in result.stderr and "hint:" in result.stderr
    result = run_tool("rollback.py", str(tmp_path / "missing"))
    assert result.returncode == 1 and "does not exist" in result.stderr


def test_tampered_patch_refused_before_touching_anything(checkout, upstream, tmp_path):
    import shutil
    patches = tmp_path / "patches"
    shutil.copytree(upstream.patches, patches)
    patch = patches / "fakepin" / "0002-cli.patch"
    patch.write_bytes(patch.read_bytes().replace(b"default=5", b"default=50"))
    before = snapshot(checkout)
    result = run_tool("apply_patches.py", str(checkout), env={"LIGHTTTS_A10_PATCHES_DIR": str(patches)})
    assert result.returncode == 1
    assert "0002-cli.patch: sha256" in result.stderr and "does not match the lock" in result.stderr
    assert snapshot(checkout) == before


def test_rollback_check_and_force_messages(checkout):
    assert run_tool("apply_patches.py", str(checkout)).returncode == 0
    (checkout / "light_tts/server/manager.py").write_text("mine\n")
    check = run_tool("rollback.py", "--check", str(checkout))
    assert check.returncode == 1 and "light_tts/server/manager.py" in check.stderr and "--force" in check.stderr
    forced = run_tool("rollback.py", "--force", str(checkout))
    assert forced.returncode == 0 and "saved your versions of 1 file(s) under" in forced.stdout


def test_rollback_check_passes_and_restores_nothing(checkout):
    assert run_tool("apply_patches.py", str(checkout)).returncode == 0
    applied = snapshot(checkout)
    check = run_tool("rollback.py", "--check", str(checkout))
    assert check.returncode == 0 and "check passed" in check.stdout, check.stderr
    assert snapshot(checkout) == applied  # bytes and modes: still the patched tree
    assert run_tool("apply_patches.py", "--status", str(checkout)).returncode == 0


@pytest.mark.parametrize("restore", [["cosyvoice/cosyvoice/flow/flow.py"], ["light_tts/server/manager.py"]],
                         ids=["one patch not applied", "one file of a patch not applied"])
def test_status_exits_1_when_the_series_is_only_partly_applied(checkout, restore):
    assert run_tool("apply_patches.py", str(checkout)).returncode == 0
    for path in restore:  # put the pinned upstream file back, as `git checkout` in its own repository does
        repo = checkout / "cosyvoice" if path.startswith("cosyvoice/") else checkout
        git(repo, "checkout", "--", str((checkout / path).relative_to(repo)))
    status = run_tool("apply_patches.py", "--status", "--json", str(checkout))
    report = json.loads(status.stdout)
    assert status.returncode == 1 and report["exit_code"] == 1
    assert "applied" in {p["state"] for p in report["patches"]}  # the rest is applied: not all, but some
    assert run_tool("apply_patches.py", "--status", str(checkout)).returncode == 1


def test_rollback_restores_a_wrong_file_mode(checkout):
    """Pristine bytes with the wrong mode are not the pinned file: README promises 'mode included'."""
    cli = checkout / "light_tts/server/api_cli.py"  # 100755 at the pin
    cli.chmod(0o644)
    assert git(checkout, "status", "--porcelain") != ""
    back = run_tool("rollback.py", "--json", str(checkout))
    assert back.returncode == 0, back.stdout
    assert json.loads(back.stdout)["written"] == ["light_tts/server/api_cli.py"]
    assert os.stat(cli).st_mode & 0o111 == 0o111
    assert git(checkout, "status", "--porcelain") == ""


def test_two_forced_rollbacks_in_the_same_second_keep_both_saved_copies(checkout, monkeypatch):
    """The clock is frozen so both runs name their folder in the same second; both copies must survive."""

    real_strftime = time.strftime
    frozen = time.localtime()
    monkeypatch.setattr(time, "strftime", lambda fmt, t=None: real_strftime(fmt, frozen))
    manager = checkout / "light_tts/server/manager.py"
    for edit in ("first edit\n", "second edit\n"):
        assert run_tool("apply_patches.py", str(checkout)).returncode == 0
        manager.write_text(edit)
        assert cli.rollback_main(["--force", str(checkout)]) == 0
    state_dir = Path(git(checkout, "rev-parse", "--absolute-git-dir").strip()) / "lighttts-a10"
    saved = sorted(p.read_text() for p in state_dir.glob("saved-*/light_tts/server/manager.py"))
    assert saved == ["first edit\n", "second edit\n"]
    assert git(checkout, "status", "--porcelain") == ""


# -- an interrupted run ------------------------------------------------------------------------------
class Killed(BaseException):
    """Stands for SIGKILL (see test_journal.py)."""


def kill_apply_halfway(checkout, monkeypatch) -> None:
    """An apply that died after writing its first file, with the second one's temporary file written."""
    seen = []

    def point(step):
        seen.append(step)
        if len(seen) == 6:  # journal written and renamed, first file created and renamed, second created
            raise Killed(step)

    monkeypatch.setattr(journal, "fault_point", point)
    with pytest.raises(Killed):
        transaction.apply(select(checkout))
    monkeypatch.setattr(journal, "fault_point", lambda step: None)


def test_status_and_check_report_an_interrupted_run_and_touch_nothing(checkout, monkeypatch):
    kill_apply_halfway(checkout, monkeypatch)
    state = checkout / ".git/lighttts-a10"
    before, journal_bytes = snapshot(checkout), (state / "journal.json").read_bytes()
    temp = next(path for path in before if path.endswith(".lighttts-a10"))

    status = run_tool("apply_patches.py", "--status", str(checkout))
    assert status.returncode == 1
    assert "warning: an interrupted apply run (pid" in status.stderr
    assert "put back  cosyvoice/cosyvoice/flow/flow.py  (holds what that run wrote" in status.stderr
    assert "leave     light_tts/server/api_cli.py  (as it was before that run)" in status.stderr
    assert f"remove    {temp}  (that run's temporary file)" in status.stderr
    assert "the series is NOT settled: an interrupted apply run" in status.stderr

    report = json.loads(run_tool("apply_patches.py", "--status", "--json", str(checkout)).stdout)
    assert report["exit_code"] == 1 and report["interrupted_run"]["operation"] == "apply"
    assert {f["path"]: f["action"] for f in report["interrupted_run"]["files"]} == {
        "cosyvoice/cosyvoice/flow/flow.py": "put back", "light_tts/server/api_cli.py": "leave",
        "light_tts/server/manager.py": "leave"}
    assert report["interrupted_run"]["temporary_files"] == [temp]

    check = run_tool("apply_patches.py", "--check", str(checkout))
    assert check.returncode == 0, check.stderr
    assert "would undo the interrupted apply run" in check.stdout and "would remove its temporary file" in check.stdout
    # checked against the files as the undo leaves them: all three pristine, so all three to write
    assert ("apply would write cosyvoice/cosyvoice/flow/flow.py, light_tts/server/api_cli.py, "
            "light_tts/server/manager.py") in check.stdout
    back = run_tool("rollback.py", "--check", "--json", str(checkout))
    assert back.returncode == 0 and "rollback would restore nothing" in json.loads(back.stdout)["notes"]

    assert snapshot(checkout) == before and (state / "journal.json").read_bytes() == journal_bytes

    applied = run_tool("apply_patches.py", str(checkout))
    assert applied.returncode == 0, applied.stderr
    assert "note: undid the interrupted apply run" in applied.stdout and "wrote 3 files" in applied.stdout
    assert run_tool("apply_patches.py", "--status", str(checkout)).returncode == 0


def test_check_and_run_agree_on_an_edit_made_after_a_kill(checkout, monkeypatch):
    kill_apply_halfway(checkout, monkeypatch)
    flow = checkout / "cosyvoice/cosyvoice/flow/flow.py"  # written by the killed run, then edited
    flow.write_bytes(flow.read_bytes() + b"# mine\n")
    mine = snapshot(checkout)["cosyvoice/cosyvoice/flow/flow.py"]
    for command in (["apply_patches.py", "--check"], ["rollback.py", "--check"], ["apply_patches.py"]):
        result = run_tool(*command, str(checkout))
        assert result.returncode == 1, command
        assert "had planned to write cosyvoice/cosyvoice/flow/flow.py" in result.stderr
        assert "Kept as you left it" in result.stderr and "git stash" in result.stderr
        assert snapshot(checkout)["cosyvoice/cosyvoice/flow/flow.py"] == mine
    # the run put back the file it could tell was its own, dropped its temporary file and its journal;
    # from now on the edit is a plain local edit, refused by --check and by the run alike
    assert not [path for path in snapshot(checkout) if path.endswith(".lighttts-a10")]
    for command in (["apply_patches.py", "--check"], ["apply_patches.py"]):
        result = run_tool(*command, str(checkout))
        assert result.returncode == 1 and "cosyvoice/cosyvoice/flow/flow.py: neither the pinned" in result.stderr
    assert snapshot(checkout)["cosyvoice/cosyvoice/flow/flow.py"] == mine


# -- python -m ------------------------------------------------------------------------------------------
def python_m(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd or REPO_ROOT)


def test_python_dash_m_runs_each_command(checkout):
    assert python_m("lighttts_a10", "apply", "--check", str(checkout)).returncode == 0
    applied = python_m("lighttts_a10", "apply", str(checkout))
    assert applied.returncode == 0 and "wrote 3 files" in applied.stdout
    assert python_m("lighttts_a10", "rollback", str(checkout)).returncode == 0
    assert "usage: python -m lighttts_a10 rollback" in python_m("lighttts_a10", "rollback", "--help").stdout
    assert python_m("lighttts_a10", "refresh", "--help").returncode == 0
    for module in ("lighttts_a10", "lighttts_a10.cli"):  # no command: usage, exit 2, never a silent 0
        bare = python_m(module)
        assert bare.returncode == 2 and "usage: python -m lighttts_a10 {apply,rollback,refresh}" in bare.stderr
    assert python_m("lighttts_a10", "bogus").returncode == 2


# -- rollback after a commit ----------------------------------------------------------------------------
def test_rollback_after_a_commit_of_the_patched_files(checkout):
    assert run_tool("apply_patches.py", str(checkout)).returncode == 0
    git(checkout, "commit", "-qam", "patched")  # LightTTS's two files; cosyvoice's stays uncommitted there
    check = run_tool("rollback.py", "--check", str(checkout))
    assert check.returncode == 0, check.stderr
    assert "rollback would restore cosyvoice/cosyvoice/flow/flow.py, light_tts/server/api_cli.py" in check.stdout
    assert "HEAD" in check.stdout and "has the patched version of light_tts/server/api_cli.py" in check.stdout
    back = run_tool("rollback.py", str(checkout))
    assert back.returncode == 0, back.stderr  # --check and the run agree
    assert "restored 3 files to the pinned upstream" in back.stdout and "unmodified" not in back.stdout
    report = json.loads(run_tool("apply_patches.py", "--status", "--json", str(checkout)).stdout)
    assert {f["state"] for f in report["files"]} == {"pristine"}
    # the pinned bytes, as an uncommitted change that is the rollback
    assert git(checkout, "status", "--porcelain", "--", "light_tts").splitlines() == [
        " M light_tts/server/api_cli.py", " M light_tts/server/manager.py"]
    assert git(checkout / "cosyvoice", "status", "--porcelain") == ""
    again = run_tool("rollback.py", "--check", str(checkout)), run_tool("rollback.py", str(checkout))
    assert [result.returncode for result in again] == [0, 0]
    # the command the note gives records the rollback: the checkout is clean and unpatched
    record = back.stdout.split("Record it with: ")[1].splitlines()[0]
    subprocess.run(shlex.split(record), check=True, capture_output=True, env={**os.environ, **GIT_ENV})
    assert git(checkout, "status", "--porcelain") == ""
    assert run_tool("apply_patches.py", "--status", str(checkout)).returncode == 1
    assert run_tool("apply_patches.py", str(checkout)).returncode == 0  # and it applies again


# -- git or the file system in the way: refusals, never tracebacks ------------------------------------------
def assert_refusal(result: subprocess.CompletedProcess, *words: str, as_json: bool = False) -> dict:
    assert "Traceback" not in result.stderr + result.stdout
    if as_json:
        report = json.loads(result.stdout)
        assert report["result"] == "error" and report["exit_code"] == result.returncode == 1
        text = report["message"] + (report.get("hint") or "")
    else:
        report = {}
        text = result.stderr
        assert result.returncode == 1 and "error: " in text and "hint: " in text
    for word in words:
        assert word in text
    return report


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to give the checkout to another uid with chown")
def test_a_checkout_owned_by_another_user(checkout, tmp_path):
    before = snapshot(checkout)
    subprocess.run(["chown", "-R", "12345:12345", str(checkout)], check=True)
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"), "GIT_CONFIG_NOSYSTEM": "1"}
    for command in (["apply_patches.py", "--status"], ["apply_patches.py", "--check"], ["apply_patches.py"],
                    ["rollback.py"]):
        assert_refusal(run_tool(*command, str(checkout), env=env), "dubious ownership", "belongs to uid 12345",
                       f"git config --global --add safe.directory {checkout}")
    for command in (["apply_patches.py", "--status"], ["rollback.py"]):
        assert_refusal(run_tool(*command, "--json", str(checkout), env=env), "safe.directory", as_json=True)
    assert snapshot(checkout) == before
    # the hint works: once each repository is marked safe, the tools work
    for path in (checkout, checkout / "cosyvoice", checkout / "third_party/Matcha-TTS"):
        subprocess.run(["git", "config", "--global", "--add", "safe.directory", str(path)], env={**os.environ, **env},
                       check=True)
    assert run_tool("apply_patches.py", "--check", str(checkout), env=env).returncode == 0


def test_a_git_directory_that_cannot_be_written(checkout):
    before = snapshot(checkout)
    git_dirs = [path for path in (checkout / ".git", checkout / "cosyvoice/.git",
                                  checkout / "third_party/Matcha-TTS/.git") if path.is_dir()]
    for path in git_dirs:
        subprocess.run(["chmod", "-R", "a-w", str(path)], check=True)
    # root writes anywhere: drop the capabilities that let it, so permission bits apply as to anyone
    prefix = ["setpriv", "--bounding-set=-dac_override,-fowner"] if os.geteuid() == 0 else []

    def tool(*args):
        return subprocess.run([*prefix, sys.executable, str(REPO_ROOT / args[0]), *args[1:], str(checkout)],
                              capture_output=True, text=True, timeout=120)

    try:
        status = tool("apply_patches.py", "--status")
        assert status.returncode == 1 and "Traceback" not in status.stderr
        assert "could not take the lock" in status.stderr and "the series is NOT fully applied" in status.stderr
        report = json.loads(tool("apply_patches.py", "--status", "--json").stdout)
        assert report["exit_code"] == 1 and report["result"] == "not-applied"
        assert tool("apply_patches.py", "--check").returncode == 0
        for command in ("apply_patches.py", "rollback.py"):
            assert_refusal(tool(command), "cannot write the lock in", "Permission denied", "nothing was changed",
                           "make that directory writable")
        assert_refusal(tool("apply_patches.py", "--json"), "cannot write the lock in", as_json=True)
        assert snapshot(checkout) == before
    finally:
        for path in git_dirs:
            subprocess.run(["chmod", "-R", "u+w", str(path)], check=True)


def test_an_unforeseen_error_is_a_refusal_not_a_traceback(checkout, monkeypatch, capsys):
    def broken(selected):
        raise OSError(5, "Input/output error", "somewhere")

    monkeypatch.setattr(transaction, "plan_apply", broken)
    assert cli.apply_main(["--json", str(checkout)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["result"] == "error" and report["message"].startswith("unexpected OSError")
    assert "Input/output error" in report["message"] and report["set"] == "fakepin"


def test_a_refusal_after_an_undo_lists_the_files_as_they_are_now(checkout, monkeypatch):
    kill_apply_halfway(checkout, monkeypatch)  # flow.py written by the killed run
    cli_py = checkout / "light_tts/server/api_cli.py"
    cli_py.write_bytes(cli_py.read_bytes() + b"# mine\n")
    report = json.loads(run_tool("apply_patches.py", "--json", str(checkout)).stdout)
    assert report["result"] == "error" and "had planned to write light_tts/server/api_cli.py" in report["message"]
    assert {f["path"]: f["state"] for f in report["files"]} == {  # flow.py was put back: pristine, not ours
        "cosyvoice/cosyvoice/flow/flow.py": "pristine", "light_tts/server/api_cli.py": "foreign",
        "light_tts/server/manager.py": "pristine"}
    assert "interrupted_run" not in report


def test_ctrl_c_while_writing_puts_back_what_was_written_and_exits_130(checkout, monkeypatch, capsys):
    before = snapshot(checkout)

    def ctrl_c_after_the_first_file(step):
        if step.startswith("create") and "api_cli.py" in step:  # flow.py is written by then
            raise KeyboardInterrupt

    monkeypatch.setattr(journal, "fault_point", ctrl_c_after_the_first_file)
    assert cli.apply_main(["--json", str(checkout)]) == 130
    report = json.loads(capsys.readouterr().out)
    assert report["message"] == "interrupted (Ctrl-C)" and "nothing was changed" in report["hint"]
    assert snapshot(checkout) == before and "interrupted_run" not in report
