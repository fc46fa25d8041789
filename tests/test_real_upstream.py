"""The real series on the real upstream. Needs LIGHTTTS_UPSTREAM: a LightTTS checkout (any layout)
with the pinned commits available; each test works on fresh local clones of it."""

from __future__ import annotations

import importlib.util
import json
import os
import py_compile
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT, git, run_tool

SET_DIR = REPO_ROOT / "patches" / "30bc57b"
UPSTREAM = os.environ.get("LIGHTTTS_UPSTREAM")
pytestmark = pytest.mark.skipif(
    not UPSTREAM, reason="LIGHTTTS_UPSTREAM is not set: point it at a LightTTS 30bc57b checkout with its "
                         "submodules to run the real-series tests")
LOCK = json.loads((SET_DIR / "lock.json").read_text())
SERIES = [line for line in (SET_DIR / "series").read_text().splitlines() if line and not line.startswith("#")]


def clone_pin(dest: Path, layout: str) -> Path:
    source = Path(UPSTREAM)
    git(dest.parent, "clone", "-q", "--no-checkout", str(source), dest.name)
    git(dest, "checkout", "-q", LOCK["repos"]["."]["commit"])
    for path, pin in LOCK["repos"].items():
        if path == ".":
            continue
        if layout == "submodule":
            git(dest, "submodule", "init", path)
            git(dest, "config", f"submodule.{path}.url", str(source / path))
            git(dest, "submodule", "-q", "update", path)
        else:
            shutil.rmtree(dest / path, ignore_errors=True)
            git(dest, "clone", "-q", "--no-checkout", str(source / path), path)
            git(dest / path, "checkout", "-q", pin["commit"])
    return dest


@pytest.fixture(params=["submodule", "nested"])
def real(request, tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("LIGHTTTS_A10_PATCHES_DIR", raising=False)
    return clone_pin(tmp_path / "LightTTS", request.param)


def dirty(root: Path) -> str:
    return "".join(git(root / path, "status", "--porcelain") for path in LOCK["repos"])


def test_round_trip(real):
    assert run_tool("apply_patches.py", "--status", str(real)).returncode == 1
    applied = run_tool("apply_patches.py", str(real))
    assert applied.returncode == 0, applied.stderr
    assert f"wrote {len(LOCK['files'])} files" in applied.stdout
    assert run_tool("apply_patches.py", "--status", str(real)).returncode == 0
    assert "already applied" in run_tool("apply_patches.py", str(real)).stdout
    assert "cosyvoice/flow/flow.py" in git(real / "cosyvoice", "status", "--porcelain")
    assert run_tool("rollback.py", str(real)).returncode == 0
    assert run_tool("rollback.py", str(real)).returncode == 0
    assert dirty(real) == ""


def load_api_cli(root: Path):
    spec = importlib.util.spec_from_file_location("patched_api_cli", root / "light_tts/server/api_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # it imports only argparse, unlike the light_tts.server package
    return module


def test_patched_cli_parses_the_new_flags(real):
    assert run_tool("apply_patches.py", str(real)).returncode == 0
    parser = load_api_cli(real).make_argument_parser()
    defaults = parser.parse_args([])
    assert (defaults.data_type, defaults.flow_steps, defaults.load_trt, defaults.load_jit) == ("bfloat16", 5, True, False)
    args = parser.parse_args(["--load_trt", "False", "--load_jit", "yes", "--flow_steps", "50", "--data_type", "fp16"])
    assert (args.load_trt, args.load_jit, args.flow_steps, args.data_type) == (False, True, 50, "fp16")
    for bad in (["--flow_steps", "0"], ["--flow_steps", "51"], ["--flow_steps", "five"],
                ["--load_trt", "maybe"], ["--load_trt", ""], ["--data_type", "int8"]):
        with pytest.raises(SystemExit) as caught:
            parser.parse_args(bad)
        assert caught.value.code == 2, bad


def test_every_touched_file_compiles(real):
    assert run_tool("apply_patches.py", str(real)).returncode == 0
    for path in LOCK["files"]:
        py_compile.compile(str(real / path), doraise=True)


def test_plain_git_apply_and_patch_give_the_same_bytes(real):
    for name in SERIES:
        subprocess.run(["git", "apply", "--check", str(SET_DIR / name)], cwd=real, check=True)
        subprocess.run(["patch", "--dry-run", "--forward", "-p1", "-F0", "-i", str(SET_DIR / name)], cwd=real,
                       check=True, capture_output=True)
    subprocess.run(["git", "apply", *[str(SET_DIR / name) for name in SERIES]], cwd=real, check=True)
    assert run_tool("apply_patches.py", "--status", str(real)).returncode == 0  # identical to our apply
    assert run_tool("rollback.py", str(real)).returncode == 0
    for name in SERIES:
        subprocess.run(["patch", "--forward", "-s", "-p1", "-F0", "-i", str(SET_DIR / name)], cwd=real, check=True)
    assert run_tool("apply_patches.py", "--status", str(real)).returncode == 0
    assert run_tool("rollback.py", str(real)).returncode == 0
    assert dirty(real) == ""


def test_refresh_reproduces_the_committed_series(real, tmp_path):
    from lighttts_a10 import refresh

    assert run_tool("apply_patches.py", str(real)).returncode == 0
    copy = tmp_path / "patches"
    shutil.copytree(SET_DIR, copy / "30bc57b")
    assert refresh.main([str(real), "--set", "30bc57b", "--patches-dir", str(copy)]) == 0
    for file in SET_DIR.iterdir():
        assert (copy / "30bc57b" / file.name).read_bytes() == file.read_bytes(), file.name
