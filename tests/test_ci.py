"""CI never counts a missing upstream as a pass: .ci/run refuses to run without its snapshot, and under
CI=true a test that needs an upstream fails when its variable is unset (tests/conftest.py)."""

import os
import shutil
import subprocess
import sys

from conftest import REPO_ROOT, UPSTREAM_VARIABLES

NEEDS_V110 = "tests/test_real_upstream.py::test_an_upstream_commit_between_the_pins_is_refused_untouched"


def pytest_without_upstreams(*args: str, ci: bool) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in UPSTREAM_VARIABLES and key != "CI"}
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def test_a_test_needing_an_upstream_skips_outside_ci_and_fails_under_ci():
    outside = pytest_without_upstreams(NEEDS_V110, ci=False)
    assert outside.returncode == 0 and "1 skipped" in outside.stdout, outside.stdout
    assert "LIGHTTTS_UPSTREAM_V110 is not set" in outside.stdout
    under_ci = pytest_without_upstreams(NEEDS_V110, ci=True)
    assert under_ci.returncode == 1 and "1 failed" in under_ci.stdout, under_ci.stdout
    assert "CI=true and LIGHTTTS_UPSTREAM_V110 is not set, so this test would have been skipped" in under_ci.stdout


def test_other_skips_stay_skips_under_ci():
    """Only a skip for want of an upstream becomes a failure; a skip for another reason stays a skip."""
    result = pytest_without_upstreams("tests/test_bench_model_dir.py::test_full_build_loads_strictly_into_the_"
                                      "checkouts_classes", ci=True)
    assert result.returncode == 0 and "1 skipped" in result.stdout and "LIGHTTTS_A10_FULL_BUILD" in result.stdout


def test_ci_run_refuses_to_run_without_the_upstream_snapshot(tmp_path):
    clone = tmp_path / "repo"
    (clone / ".ci").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / ".ci" / "run", clone / ".ci" / "run")
    result = subprocess.run(["bash", str(clone / ".ci" / "run")], capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert f"no upstream snapshot at {tmp_path / 'shared' / 'upstream'}" in result.stderr
    assert "must never count as passing" in result.stderr and result.stdout == ""
