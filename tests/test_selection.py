"""Picking the patch set by content, forcing one, and refusing a checkout that fits none."""

import shutil
import subprocess

import pytest

from lighttts_a10 import transaction
from lighttts_a10.errors import CheckoutError, ConflictError
from lighttts_a10.selection import select

from conftest import NEXT_SET, SET, git, snapshot


@pytest.mark.parametrize("layout", ["submodule", "nested"])
def test_each_pin_gets_its_own_set_with_no_flag(upstream, patches_env, tmp_path, layout):
    for commit, name in ((upstream.pin, SET), (upstream.next, NEXT_SET)):
        root = upstream.clone(tmp_path / name, layout, commit)
        assert select(root).series.name == name
        transaction.apply(select(root))
        assert select(root).series.name == name and select(root).fits  # an applied tree is recognised too
        transaction.rollback(select(root))
        assert git(root, "status", "--porcelain") == ""


def test_a_checkout_that_fits_no_set_is_refused_untouched(upstream, patches_env, tmp_path):
    root = upstream.clone(tmp_path / "drifted", "submodule", upstream.drifted)
    before = snapshot(root)
    selected = select(root)
    assert not selected.fits
    with pytest.raises(ConflictError) as caught:
        transaction.apply(selected)
    # The hint names the set that was not picked, and why: api_cli.py differs from both sets' files.
    (other,) = {SET, NEXT_SET} - {selected.series.name}
    others_line = next(line for line in caught.value.hint.splitlines() if line.startswith("other supported pins: "))
    assert f"patch set {other} (" in others_line and "1 of 3 target files differ" in others_line
    assert f"patch set {selected.series.name} (" not in others_line
    assert any(p.kind == "hunk-mismatch" for p in caught.value.problems)
    assert snapshot(root) == before


def test_set_can_be_forced(upstream, patches_env, tmp_path):
    root = upstream.clone(tmp_path / "pin", "submodule")
    forced = select(root, NEXT_SET)
    assert forced.series.name == NEXT_SET and not forced.fits
    with pytest.raises(ConflictError):
        transaction.apply(forced)


def test_no_set_fits_the_layout(upstream, patches_env, tmp_path):
    root = tmp_path / "plain"
    git(tmp_path, "clone", "-q", str(upstream.superproject), str(root))  # submodules never initialised
    with pytest.raises(CheckoutError) as caught:
        select(root)
    assert "fits none of the supported patch sets" in caught.value.message
    assert {SET, NEXT_SET} <= {p.message.split()[2] for p in caught.value.problems}


def test_hunk_never_lands_on_the_identical_cosyvoice3_class(upstream, patches_env, tmp_path):
    """The CosyVoice2 and CosyVoice3 blocks share their context. If the CosyVoice2 block moves, a loose
    applier puts the hunk on CosyVoice3 and reports success; the series must refuse instead."""
    root = upstream.clone(tmp_path / "moved", "nested")
    flow = root / "cosyvoice/cosyvoice/flow/flow.py"
    flow.write_text(flow.read_text().replace("# line 20\n", ""))  # upstream drops a line above both classes
    before = snapshot(root)
    with pytest.raises(ConflictError) as caught:
        transaction.apply(select(root))
    assert snapshot(root) == before
    assert any(p.kind == "hunk-mismatch" and p.path.endswith("flow.py") for p in caught.value.problems)
    if shutil.which("patch"):  # show the hazard is real: plain patch with fuzz/offset "succeeds"
        patch = upstream.patches / SET / "0001-flow.patch"
        loose = subprocess.run(["patch", "-p1", "-i", str(patch)], cwd=root, capture_output=True, text=True)
        assert loose.returncode == 0 and "offset" in loose.stdout
