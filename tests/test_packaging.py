"""The package as users install it: a wheel (`pip install .`, not editable) ships every patch set, and
the installed commands work from any directory, with no LIGHTTTS_A10_PATCHES_DIR."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO_ROOT, SET, git

SHIPPED = ("pyproject.toml", "README.md", "lighttts_a10", "patches")


def run(*command: str | Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode in (0, 1), f"{command}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def test_wheel_ships_the_patch_sets_and_the_installed_commands_work(upstream, tmp_path, monkeypatch):
    monkeypatch.delenv("LIGHTTTS_A10_PATCHES_DIR", raising=False)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "LIGHTTTS_A10_PATCHES_DIR")}
    # A copy of the project, plus one more set in patches/: pyproject.toml must pick it up unnamed.
    source = tmp_path / "src"
    source.mkdir()
    for name in SHIPPED:
        (shutil.copytree if (REPO_ROOT / name).is_dir() else shutil.copy2)(REPO_ROOT / name, source / name)
    shutil.copytree(upstream.patches / SET, source / "patches" / SET)
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *isolation, "-w", tmp_path / "dist", source,
        cwd=tmp_path, env=env)
    wheel = next((tmp_path / "dist").glob("lighttts_a10-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = {name.removeprefix("lighttts_a10/patches/") for name in archive.namelist()
                    if name.startswith("lighttts_a10/patches/")}
    in_source = {str(path.relative_to(source / "patches")) for path in (source / "patches").rglob("*") if path.is_file()}
    assert in_wheel == in_source and f"{SET}/lock.json" in in_wheel

    # A fresh virtual environment that sees the dependencies already installed here, and no network.
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", venv, cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--force-reinstall", wheel,
        cwd=tmp_path, env=env)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run(python, "-c", "import lighttts_a10.series as s; print(s.__file__); print(s.patches_dir())",
                cwd=elsewhere, env=env).stdout.split()
    assert all(Path(path).is_relative_to(venv) for path in where), where  # the installed copy, not this checkout
    installed = Path(where[1])
    for name in in_source:
        assert (installed / name).read_bytes() == (source / "patches" / name).read_bytes(), name

    checkout = upstream.clone(tmp_path / "LightTTS", "submodule")
    status = run(venv / "bin" / "lighttts-a10-apply", "--status", "--json", checkout, cwd=elsewhere, env=env)
    assert status.returncode == 1 and json.loads(status.stdout)["set"] == SET
    applied = run(venv / "bin" / "lighttts-a10-apply", checkout, cwd=elsewhere, env=env)
    assert applied.returncode == 0 and "wrote 3 files" in applied.stdout
    assert run(venv / "bin" / "lighttts-a10-rollback", "--check", checkout, cwd=elsewhere, env=env).returncode == 0
    back = run(python, "-m", "lighttts_a10", "rollback", checkout, cwd=elsewhere, env=env)
    assert back.returncode == 0 and "restored 3 files" in back.stdout
    assert git(checkout, "status", "--porcelain") == ""
    assert run(venv / "bin" / "lighttts-a10-refresh", "--help", cwd=elsewhere, env=env).returncode == 0
