import shutil

import pytest

from lighttts_a10 import refresh, transaction
from lighttts_a10.selection import select

from conftest import SET


@pytest.fixture
def patch_copy(upstream, tmp_path):
    copy = tmp_path / "patches"
    shutil.copytree(upstream.patches, copy)
    return copy


def test_refresh_of_an_applied_checkout_reproduces_the_set_byte_for_byte(checkout, upstream, patch_copy):
    transaction.apply(select(checkout))
    assert refresh.main([str(checkout), "--set", SET, "--patches-dir", str(patch_copy)]) == 0
    for name in ("series", "lock.json", "0001-flow.patch", "0002-cli.patch"):
        assert (patch_copy / SET / name).read_bytes() == (upstream.patches / SET / name).read_bytes(), name


def test_refresh_picks_up_an_edit(checkout, patch_copy, monkeypatch):
    transaction.apply(select(checkout))
    manager = checkout / "light_tts/server/manager.py"
    manager.write_text(manager.read_text().replace('"flow_steps": 5', '"flow_steps": 6'))
    assert refresh.main([str(checkout), "--set", SET, "--patches-dir", str(patch_copy)]) == 0
    assert '+    "flow_steps": 6,' in (patch_copy / SET / "0002-cli.patch").read_text()
    monkeypatch.setenv("LIGHTTTS_A10_PATCHES_DIR", str(patch_copy))
    assert {s.state for s in select(checkout).statuses} == {"ours"}  # the new lock matches the edited tree


def test_refresh_refuses_an_unchanged_file(checkout, patch_copy, capsys):
    assert refresh.main([str(checkout), "--set", SET, "--patches-dir", str(patch_copy)]) == 1
    assert "has no changes against the pin" in capsys.readouterr().err


def test_refresh_add_must_name_a_patch_in_the_series(checkout, patch_copy, capsys):
    code = refresh.main([str(checkout), "--set", SET, "--patches-dir", str(patch_copy), "--add", "nope.patch:x.py"])
    assert code == 2 and "expected PATCH:FILE" in capsys.readouterr().err
