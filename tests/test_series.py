import json
import shutil
from pathlib import Path

import pytest

from lighttts_a10.errors import SeriesError
from lighttts_a10.series import check_relative_path, load_series, read_series_file, split_header

from conftest import SET


@pytest.fixture
def set_dir(upstream, tmp_path) -> Path:
    copy = tmp_path / SET
    shutil.copytree(upstream.patches / SET, copy)
    return copy


def test_loads_the_set_the_refresh_command_made(set_dir):
    series = load_series(set_dir)
    assert [p.name for p in series.patches] == ["0001-flow.patch", "0002-cli.patch"]
    assert {t.path: t.repo for t in series.files} == {
        "cosyvoice/cosyvoice/flow/flow.py": "cosyvoice",
        "light_tts/server/api_cli.py": ".",
        "light_tts/server/manager.py": "."}
    flow = next(t for t in series.files if t.repo == "cosyvoice")
    assert flow.path_in_repo == "cosyvoice/flow/flow.py"
    assert set(series.repos) == {".", "cosyvoice", "third_party/Matcha-TTS"}
    assert series.patches[0].header.startswith("Description: flow steps\n")


def test_tampered_patch_is_refused_by_checksum(set_dir):
    patch = set_dir / "0002-cli.patch"
    patch.write_bytes(patch.read_bytes().replace(b"default=5", b"default=6"))
    with pytest.raises(SeriesError) as caught:
        load_series(set_dir)
    assert caught.value.problems[0].patch == "0002-cli.patch"
    assert "checksum" == caught.value.problems[0].kind


def test_missing_patch_file_is_refused(set_dir):
    (set_dir / "0001-flow.patch").unlink()
    with pytest.raises(SeriesError, match="differ from the ones the lock pins"):
        load_series(set_dir)


def _relock(set_dir: Path, name: str) -> None:
    import hashlib
    lock = json.loads((set_dir / "lock.json").read_text())
    lock["patches"][name]["sha256"] = hashlib.sha256((set_dir / name).read_bytes()).hexdigest()
    (set_dir / "lock.json").write_text(json.dumps(lock))


def test_corrupt_patch_is_refused_even_with_a_matching_checksum(set_dir):
    patch = set_dir / "0001-flow.patch"
    text = patch.read_text()
    patch.write_text(text.replace("@@ -21,7", "@@ -21,99"))  # hunk header no longer fits its body
    _relock(set_dir, "0001-flow.patch")
    with pytest.raises(SeriesError, match="corrupt patch 0001-flow.patch"):
        load_series(set_dir)


@pytest.mark.parametrize("evil", ["/etc/passwd", "../outside.py", "light_tts/../../x.py", ".git/config"])
def test_patch_paths_outside_the_checkout_are_refused(set_dir, evil):
    patch = set_dir / "0002-cli.patch"
    patch.write_text(patch.read_text().replace("light_tts/server/manager.py", evil))
    _relock(set_dir, "0002-cli.patch")
    with pytest.raises(SeriesError) as caught:
        load_series(set_dir)
    assert any(p.kind == "unsafe-path" for p in caught.value.problems)


def test_series_and_lock_must_agree(set_dir):
    (set_dir / "series").write_text("0001-flow.patch\n")
    with pytest.raises(SeriesError, match="series lists"):
        load_series(set_dir)


def test_series_file_names_must_be_plain(set_dir):
    (set_dir / "series").write_text("../0001-flow.patch\n")
    with pytest.raises(SeriesError, match="not a plain patch file name"):
        read_series_file(set_dir)


def test_lock_entry_outside_its_repository_is_refused(set_dir):
    lock = json.loads((set_dir / "lock.json").read_text())
    lock["files"]["light_tts/server/manager.py"]["repo"] = "cosyvoice"
    (set_dir / "lock.json").write_text(json.dumps(lock))
    with pytest.raises(SeriesError, match="bad entry"):
        load_series(set_dir)


def test_check_relative_path():
    assert check_relative_path("a/b.py") is None
    assert check_relative_path("a//b.py")
    assert check_relative_path("./a.py")


def test_split_header_keeps_prose_mentioning_diff():
    text = "Description: says diff --git inline\n\ndiff --git a/x b/x\n--- a/x\n"
    header, diff = split_header(text)
    assert header == "Description: says diff --git inline\n\n" and diff.startswith("diff --git a/x")
