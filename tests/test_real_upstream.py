"""The real series on the real upstream, for each supported pin. Needs LIGHTTTS_UPSTREAM (a LightTTS
30bc57b checkout with its submodules) and/or LIGHTTTS_UPSTREAM_V110 (an ad1c76e checkout); each test
works on fresh local clones of it, in both layouts, and never touches the checkout itself."""

from __future__ import annotations

import ast
import importlib.util
import json
import py_compile
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT, UPSTREAM_VARIABLES, git, run_tool, snapshot, upstream_checkout

SOURCES = {pin: variable for variable, pin in UPSTREAM_VARIABLES.items()}


class Pin:
    def __init__(self, name: str) -> None:
        self.name = name
        self.dir = REPO_ROOT / "patches" / name
        self.lock = json.loads((self.dir / "lock.json").read_text())
        self.series = [line for line in (self.dir / "series").read_text().splitlines()
                       if line and not line.startswith("#")]
        self.source = upstream_checkout(SOURCES[name])

    def clone(self, dest: Path, layout: str, commit: str | None = None) -> Path:
        source = Path(self.source)
        git(dest.parent, "clone", "-q", "--no-checkout", str(source), dest.name)
        git(dest, "checkout", "-q", commit or self.lock["repos"]["."]["commit"])
        for path, pin in self.lock["repos"].items():
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

    def dirty(self, root: Path) -> str:
        return "".join(git(root / path, "status", "--porcelain") for path in self.lock["repos"])


@pytest.fixture(params=sorted(SOURCES))
def pin(request, monkeypatch) -> Pin:
    monkeypatch.delenv("LIGHTTTS_A10_PATCHES_DIR", raising=False)
    return Pin(request.param)


@pytest.fixture(params=["submodule", "nested"])
def real(request, pin, tmp_path) -> Path:
    return pin.clone(tmp_path / "LightTTS", request.param)


def test_round_trip_with_no_set_named(pin, real):
    assert run_tool("apply_patches.py", "--status", str(real)).returncode == 1
    applied = run_tool("apply_patches.py", str(real))
    assert applied.returncode == 0, applied.stderr
    assert f"patch set {pin.name}" in applied.stdout and f"wrote {len(pin.lock['files'])} files" in applied.stdout
    assert run_tool("apply_patches.py", "--status", str(real)).returncode == 0
    assert "already applied" in run_tool("apply_patches.py", str(real)).stdout
    assert "cosyvoice/flow/flow.py" in pin.dirty(real)
    assert run_tool("rollback.py", str(real)).returncode == 0
    assert run_tool("rollback.py", str(real)).returncode == 0
    assert pin.dirty(real) == ""


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
    assert (defaults.flow_cuda_graph, defaults.flow_cuda_graph_max_frames) == (True, 1500)
    args = parser.parse_args(["--flow_cuda_graph", "false", "--flow_cuda_graph_max_frames", "650"])
    assert (args.flow_cuda_graph, args.flow_cuda_graph_max_frames) == (False, 650)
    for bad in (["--flow_steps", "0"], ["--flow_steps", "51"], ["--flow_steps", "five"],
                ["--load_trt", "maybe"], ["--load_trt", ""], ["--data_type", "int8"], ["--flow_cuda_graph", "on"],
                ["--flow_cuda_graph_max_frames", "75"], ["--flow_cuda_graph_max_frames", "3050"],
                ["--flow_cuda_graph_max_frames", "0"], ["--flow_cuda_graph_max_frames", "many"]):
        with pytest.raises(SystemExit) as caught:
            parser.parse_args(bad)
        assert caught.value.code == 2, bad


def test_every_touched_file_compiles(pin, real):
    assert run_tool("apply_patches.py", str(real)).returncode == 0
    for path in pin.lock["files"]:
        py_compile.compile(str(real / path), doraise=True)


def steps_per_flow_class(flow_py: Path) -> dict[str, list[str]]:
    """For each class in flow.py, the source of every n_timesteps= keyword it passes."""
    found: dict[str, list[str]] = {}
    for node in ast.parse(flow_py.read_text()).body:
        if isinstance(node, ast.ClassDef):
            found[node.name] = [ast.unparse(k.value) for n in ast.walk(node) if isinstance(n, ast.Call)
                                for k in n.keywords if k.arg == "n_timesteps"]
    return {name: values for name, values in found.items() if values}


def test_every_flow_class_and_only_its_own_site_reads_flow_steps(pin, real):
    """Guards the identical-context hazard: each class's own call site is patched, none twice or skipped."""
    flow = real / "cosyvoice/cosyvoice/flow/flow.py"
    before = steps_per_flow_class(flow)
    assert set(v for values in before.values() for v in values) == {"10"}
    assert run_tool("apply_patches.py", str(real)).returncode == 0
    after = steps_per_flow_class(flow)
    # The causal classes serve LightTTS and also take a request's own steps; CosyVoice 1 only the model's.
    causal = {"CausalMaskedDiffWithXvec"} | ({"CausalMaskedDiffWithDiT"} if pin.name == "ad1c76e" else set())
    assert set(after) == {"MaskedDiffWithXvec"} | causal
    assert after == {name: ["flow_steps or self.flow_steps" if name in causal else "self.flow_steps"] * len(values)
                     for name, values in before.items()}
    tree = ast.parse((real / "cosyvoice/cosyvoice/cli/model.py").read_text())
    takes_steps = {node.name for node in tree.body if isinstance(node, ast.ClassDef)
                   for item in node.body if isinstance(item, ast.FunctionDef) and item.name == "__init__"
                   and "flow_steps" in [a.arg for a in item.args.args]}
    assert takes_steps == ({"CosyVoice2Model", "CosyVoice3Model"} if pin.name == "ad1c76e" else {"CosyVoice2Model"})


def test_plain_git_apply_and_patch_give_the_same_bytes(pin, real):
    for name in pin.series:
        subprocess.run(["git", "apply", "--check", str(pin.dir / name)], cwd=real, check=True)
        subprocess.run(["patch", "--dry-run", "--forward", "-p1", "-F0", "-i", str(pin.dir / name)], cwd=real,
                       check=True, capture_output=True)
    subprocess.run(["git", "apply", *[str(pin.dir / name) for name in pin.series]], cwd=real, check=True)
    assert run_tool("apply_patches.py", "--status", str(real)).returncode == 0  # identical to our apply
    assert run_tool("rollback.py", str(real)).returncode == 0
    for name in pin.series:
        subprocess.run(["patch", "--forward", "-s", "-p1", "-F0", "-i", str(pin.dir / name)], cwd=real, check=True)
    assert run_tool("apply_patches.py", "--status", str(real)).returncode == 0
    assert run_tool("rollback.py", str(real)).returncode == 0
    assert pin.dirty(real) == ""


def test_refresh_reproduces_the_committed_series(pin, real, tmp_path):
    from lighttts_a10 import refresh

    assert run_tool("apply_patches.py", str(real)).returncode == 0
    copy = tmp_path / "patches"
    shutil.copytree(pin.dir, copy / pin.name)
    assert refresh.main([str(real), "--set", pin.name, "--patches-dir", str(copy)]) == 0
    for file in pin.dir.iterdir():
        assert (copy / pin.name / file.name).read_bytes() == file.read_bytes(), file.name


def test_an_upstream_commit_between_the_pins_is_refused_untouched(tmp_path, monkeypatch):
    """8c78024 (2026-01, v1.1.0 work in progress) has the newer layout but different target files."""
    monkeypatch.delenv("LIGHTTTS_A10_PATCHES_DIR", raising=False)
    pin = Pin("ad1c76e")
    root = pin.clone(tmp_path / "between", "submodule", "8c78024")  # a clone error fails the test
    before = snapshot(root)
    result = run_tool("apply_patches.py", str(root))
    assert result.returncode == 1
    assert "other supported pins" in result.stderr and "30bc57b" in result.stderr
    assert snapshot(root) == before and pin.dirty(root) == ""
