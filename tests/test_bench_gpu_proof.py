"""bench/gpu_proof.sh phases that need no GPU, run for real in a temporary $OUT."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DRIVER = REPO / "bench" / "gpu_proof.sh"


def run_phase(tmp_path: Path, out: Path, *phases: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OUT=str(out), WORK=str(tmp_path / "work"), SITE=str(tmp_path / "site"))
    return subprocess.run(["bash", str(DRIVER), *phases], env=env, capture_output=True, text=True, timeout=60)


def test_bundle_packs_more_than_eight_files_into_one(tmp_path):
    out = tmp_path / "out"
    (out / "bg-soak").mkdir(parents=True)
    names = [f"load_{i}.json" for i in range(9)] + ["bg-soak/soak_p.json"]
    for n in names:
        (out / n).write_text(n)
    r = run_phase(tmp_path, out, "bundle")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["bundle.tar.gz"]
    with tarfile.open(out / "bundle.tar.gz") as tar:
        assert sorted(tar.getnames()) == sorted(names)
        assert tar.extractfile("bg-soak/soak_p.json").read() == b"bg-soak/soak_p.json"


def test_bundle_leaves_eight_files_alone(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for i in range(8):
        (out / f"f{i}.log").write_text(str(i))
    r = run_phase(tmp_path, out, "bundle")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"f{i}.log" for i in range(8)]
