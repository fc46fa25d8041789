"""The two scripts as users run them: exit codes, messages, --json, --status, --check."""

import json
import os
import time
from pathlib import Path

import pytest

from conftest import git, run_tool, snapshot


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
    from lighttts_a10 import cli

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
