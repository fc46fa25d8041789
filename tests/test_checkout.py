import os
import subprocess

import pytest

from lighttts_a10.checkout import FOREIGN, MISSING, OURS, PRISTINE, UNSAFE, Checkout, blob_id, open_superproject
from lighttts_a10.errors import CheckoutError
from lighttts_a10.series import load_series

from conftest import SET, git, write


@pytest.fixture
def series(upstream):
    return load_series(upstream.patches / SET)


def test_blob_id_matches_git_hash_object(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"some bytes\n\x00\xff")
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True).stdout.strip()
    assert blob_id(path.read_bytes()) == expected


def test_layouts_are_detected(request, checkout, series, upstream):
    made_as = request.node.callspec.params["checkout"]  # how the fixture built it: the oracle
    # git's own view agrees: a submodule keeps its git directory under the superproject's .git/modules
    git_dir = git(checkout / "cosyvoice", "rev-parse", "--absolute-git-dir").strip()
    assert (os.path.realpath(checkout / ".git/modules") in os.path.realpath(git_dir)) == (made_as == "submodule")
    opened = Checkout(checkout, series.repos)
    assert opened.layouts["cosyvoice"] == {"submodule": "submodule", "nested": "nested clone"}[made_as]
    assert opened.head("cosyvoice") == git(upstream.cosyvoice, "rev-parse", "HEAD").strip()


def test_states(checkout, series):
    opened = Checkout(checkout, series.repos)
    flow, cli, manager = sorted(series.files, key=lambda t: t.path)
    assert opened.status(flow).state == PRISTINE
    (checkout / cli.path).write_text("edited")
    assert opened.status(cli).state == FOREIGN
    (checkout / manager.path).unlink()
    assert opened.status(manager).state == MISSING


def test_symlink_leading_outside_is_unsafe(checkout, series, tmp_path):
    target = next(t for t in series.files if t.path.endswith("manager.py"))
    outside = tmp_path / "outside.py"
    outside.write_text("x")
    (checkout / target.path).unlink()
    os.symlink(outside, checkout / target.path)
    status = Checkout(checkout, series.repos).status(target)
    assert status.state == UNSAFE and "outside" in status.reason


def test_symlinked_parent_directory_leading_outside_is_unsafe(checkout, series, tmp_path):
    import shutil
    target = next(t for t in series.files if t.path.endswith("manager.py"))
    moved = tmp_path / "elsewhere"
    shutil.move(str(checkout / "light_tts/server"), moved)
    os.symlink(moved, checkout / "light_tts/server")
    assert Checkout(checkout, series.repos).status(target).state == UNSAFE


def test_non_regular_file_is_unsafe(checkout, series):
    target = next(t for t in series.files if t.path.endswith("manager.py"))
    (checkout / target.path).unlink()
    os.mkfifo(checkout / target.path)
    status = Checkout(checkout, series.repos).status(target)
    assert status.state == UNSAFE and "regular" in status.reason


def test_not_a_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckoutError, match="is not a directory"):
        open_superproject(tmp_path / "file")
    with pytest.raises(CheckoutError, match="does not exist"):
        open_superproject(tmp_path / "nowhere")


def test_not_a_git_repository(tmp_path):
    write(tmp_path / "light_tts/server/api_server.py", "")
    with pytest.raises(CheckoutError, match="is not a git checkout"):
        open_superproject(tmp_path)


def test_subdirectory_of_the_checkout(checkout):
    with pytest.raises(CheckoutError, match="not its top level"):
        open_superproject(checkout / "light_tts")


def test_another_project(tmp_path):
    git(tmp_path, "init", "-q")
    with pytest.raises(CheckoutError, match="not of LightTTS"):
        open_superproject(tmp_path)


def test_uninitialised_submodule_says_how_to_fix(upstream, series, tmp_path):
    git(tmp_path, "clone", "-q", str(upstream.superproject), "plain")  # git clone without --recursive
    with pytest.raises(CheckoutError) as caught:
        Checkout(tmp_path / "plain", series.repos)
    assert "cosyvoice is missing or not checked out" in caught.value.message
    assert "git submodule update --init --recursive" in caught.value.hint


def test_commits_between_pin_and_head_name_the_drift(checkout, series):
    flow = next(t for t in series.files if t.repo == "cosyvoice")
    repo_dir = checkout / "cosyvoice"
    (checkout / flow.path).write_text("rewritten upstream\n")
    git(repo_dir, "add", "-A")
    git(repo_dir, "commit", "-qm", "Refactor the flow")
    assert [c.split(" ", 2)[2] for c in Checkout(checkout, series.repos).commits_between_pin_and_head(flow)] == ["Refactor the flow"]
