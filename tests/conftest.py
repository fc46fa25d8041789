"""Fixtures: small git repositories shaped like LightTTS (a superproject with two submodules),
a patch set for them made with the real refresh command, and checkouts in both layouts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SET = "fakepin"
NEXT_SET = "fakenext"

# The real upstream checkouts some tests need: variable -> the pin it must point at.
UPSTREAM_VARIABLES = {"LIGHTTTS_UPSTREAM": "30bc57b", "LIGHTTTS_UPSTREAM_V110": "ad1c76e"}


def upstream_checkout(variable: str) -> Path:
    """The real LightTTS checkout `variable` points at; without it the test skips, or fails under CI=true."""
    value = os.environ.get(variable)
    if not value:
        pytest.skip(f"{variable} is not set: point it at a LightTTS {UPSTREAM_VARIABLES[variable]} checkout with "
                    "its submodules (README, Tests and CI) to run this test")
    return Path(value)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Under CI=true a test skipped because an upstream variable it names is unset fails instead.

    This is the one place that rule lives: it covers upstream_checkout() and every other skip whose
    reason names LIGHTTTS_UPSTREAM or LIGHTTTS_UPSTREAM_V110 while that variable is unset. CI builds both
    checkouts (.ci/run), so such a skip there means a regression is hidden, not that a test passed."""
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or os.environ.get("CI") != "true" or call.excinfo is None:
        return
    if not call.excinfo.errisinstance(pytest.skip.Exception):
        return
    reason = str(call.excinfo.value)
    unset = [name for name in UPSTREAM_VARIABLES
             if re.search(rf"\b{name}\b", reason) and not os.environ.get(name)]
    if unset:
        report.outcome = "failed"
        report.longrepr = (f"CI=true and {' and '.join(unset)} {'is' if len(unset) == 1 else 'are'} not set, "
                           f"so this test would have been skipped: "
                           f"{reason}\nRun CI through .ci/run, which builds the pinned checkouts and sets them.")


GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", "-c", "protocol.file.allow=always", "-c", "init.defaultBranch=main", *args],
                            cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}:\n{result.stderr}")
    return result.stdout


def write(path: Path, text: str, executable: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())
    path.chmod(0o755 if executable else 0o644)


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD").strip()


# Pristine upstream contents. Two classes with identical context guard against loose hunk placement.
FLOW = "".join(f"# line {i}\n" for i in range(1, 21)) + (
    "class CosyVoice2Flow:\n    def inference(self):\n        return self.decoder(\n            n_timesteps=10,\n        )\n\n"
    "class CosyVoice3Flow:\n    def inference(self):\n        return self.decoder(\n            n_timesteps=10,\n        )\n")
CLI = "import argparse\n\ndef make_argument_parser():\n    parser = argparse.ArgumentParser()\n" \
      "    parser.add_argument(\"--load_trt\", type=bool, default=True)\n    return parser"  # no final newline, as upstream
MANAGER = "kvargs = {\n    \"a\": 1,\n}\n"


@dataclass
class Upstream:
    """Source repositories (the 'remotes') and the patch folder made from them.

    `pin` is the commit the set "fakepin" is made for; `next` is a later LightTTS commit with a changed
    api_cli.py and its own set "fakenext"; `drifted` changes api_cli.py again and fits no set."""

    base: Path
    superproject: Path
    cosyvoice: Path
    matcha: Path
    patches: Path
    pin: str = ""
    next: str = ""
    drifted: str = ""

    def clone(self, dest: Path, layout: str, commit: str | None = None) -> Path:
        """A checkout of `commit` (the pin by default): 'submodule' (git clone --recursive) or 'nested'."""
        git(self.base, "clone", "-q", "--no-checkout", str(self.superproject), str(dest))
        git(dest, "checkout", "-q", commit or self.pin)
        if layout == "submodule":
            git(dest, "submodule", "init")
            git(dest, "config", "submodule.cosyvoice.url", str(self.cosyvoice))
            git(dest, "config", "submodule.third_party/Matcha-TTS.url", str(self.matcha))
            git(dest, "submodule", "-q", "update")
        else:
            for path, source in (("cosyvoice", self.cosyvoice), ("third_party/Matcha-TTS", self.matcha)):
                shutil.rmtree(dest / path, ignore_errors=True)
                git(dest, "clone", "-q", str(source), path)
        return dest


def edit_like_the_overlay(checkout: Path) -> None:
    flow = checkout / "cosyvoice/cosyvoice/flow/flow.py"
    text = flow.read_text()
    marker = "class CosyVoice2Flow:\n    def inference(self):\n        return self.decoder(\n            n_timesteps=10,"
    flow.write_text(text.replace(marker, marker.replace("n_timesteps=10", "n_timesteps=self.flow_steps")))
    cli = checkout / "light_tts/server/api_cli.py"
    cli.write_text(cli.read_text().replace("type=bool", "type=str2bool").replace(
        "    return parser", "    parser.add_argument(\"--flow_steps\", type=int, default=5)\n    return parser"))
    manager = checkout / "light_tts/server/manager.py"
    manager.write_text(manager.read_text().replace("    \"a\": 1,\n", "    \"a\": 1,\n    \"flow_steps\": 5,\n"))


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Upstream:
    from lighttts_a10 import refresh

    base = tmp_path_factory.mktemp("upstream")
    cosyvoice, matcha, superproject = base / "CosyVoice", base / "Matcha-TTS", base / "LightTTS"
    for repo in (cosyvoice, matcha, superproject):
        repo.mkdir()
        git(repo, "init", "-q")
    write(cosyvoice / "cosyvoice/flow/flow.py", FLOW)
    commit_all(cosyvoice, "flow")
    write(matcha / "README.md", "matcha\n")
    commit_all(matcha, "matcha")
    write(superproject / "light_tts/server/api_server.py", "print('server')\n")
    write(superproject / "light_tts/server/api_cli.py", CLI, executable=True)
    write(superproject / "light_tts/server/manager.py", MANAGER)
    git(superproject, "submodule", "add", "-q", str(cosyvoice), "cosyvoice")
    git(superproject, "submodule", "add", "-q", str(matcha), "third_party/Matcha-TTS")
    pin = commit_all(superproject, "LightTTS at the pin")
    cli = superproject / "light_tts/server/api_cli.py"
    cli.write_text("# upstream's next release\n" + CLI)
    next_ = commit_all(superproject, "next release")
    cli.write_text("# yet another release\n" + CLI.replace("default=True", "default=False"))
    drifted = commit_all(superproject, "drifted release")
    upstream = Upstream(base, superproject, cosyvoice, matcha, base / "patches", pin, next_, drifted)

    # The patch sets, made the way a maintainer makes them: edit a checkout, then refresh.
    for name, commit in ((SET, pin), (NEXT_SET, next_)):
        set_dir = upstream.patches / name
        set_dir.mkdir(parents=True)
        (set_dir / "series").write_text("# test series\n0001-flow.patch\n0002-cli.patch\n")
        (set_dir / "0001-flow.patch").write_text("Description: flow steps\nAuthor: tests\n\n")
        (set_dir / "0002-cli.patch").write_text("Description: cli\nAuthor: tests\n\n")
        work = upstream.clone(base / f"maintainer-{name}", "submodule", commit)
        edit_like_the_overlay(work)
        assert refresh.main([str(work), "--set", name, "--patches-dir", str(upstream.patches),
                             "--add", "0001-flow.patch:cosyvoice/cosyvoice/flow/flow.py",
                             "--add", "0002-cli.patch:light_tts/server/api_cli.py",
                             "--add", "0002-cli.patch:light_tts/server/manager.py"]) == 0
    return upstream


@pytest.fixture
def patches_env(upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the tool at the test patch folder (in-process and in subprocesses)."""
    monkeypatch.setenv("LIGHTTTS_A10_PATCHES_DIR", str(upstream.patches))
    return upstream.patches


@pytest.fixture(params=["submodule", "nested"])
def checkout(request: pytest.FixtureRequest, upstream: Upstream, patches_env: Path, tmp_path: Path) -> Path:
    """A fresh pinned checkout, in each layout."""
    return upstream.clone(tmp_path / "LightTTS", request.param)


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under root except git internals: bytes and mode, to prove nothing changed."""
    files = {}
    for path in sorted(root.rglob("*")):
        if ".git" in path.relative_to(root).parts or not path.is_file() or path.is_symlink():
            continue
        files[str(path.relative_to(root))] = (path.read_bytes(), path.stat().st_mode)
    return files


def run_tool(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["python3", str(REPO_ROOT / script), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)
