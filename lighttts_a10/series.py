"""The patch series: quilt-style `series` file, DEP-3-headed patches, and the lock that pins them.

Layout of one patch set (one directory per supported upstream pin):

    patches/<set>/series      patch file names, one per line, in order (# comments allowed)
    patches/<set>/lock.json   the pinned commit of every repository, and for every touched file its
                              owning repository, mode and pre-/post-image git blob ids, and the
                              sha256 of every patch file
    patches/<set>/*.patch     unified diffs relative to the LightTTS root (git apply / patch -p1)

Each file is touched by exactly one patch of a set, so a file is either pristine (pinned
pre-image), ours (post-image) or foreign (anything else), and rollback needs no history.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from unidiff import PatchedFile, PatchSet
from unidiff.errors import UnidiffParseError

from .errors import Problem, SeriesError

LOCK_FORMAT = 1
# The repository keeps one copy of the patch sets, in patches/ at its root; a wheel ships that folder
# as the package data `lighttts_a10.patches` (pyproject.toml maps it), i.e. next to this file.
INSTALLED_PATCHES_DIR = Path(__file__).resolve().parent / "patches"
CHECKOUT_PATCHES_DIR = Path(__file__).resolve().parent.parent / "patches"


def patches_dir() -> Path:
    """The folder of patch sets: $LIGHTTTS_A10_PATCHES_DIR, else the installed package's, else the
    patches/ of the checkout this module runs from (a clone, or an editable install)."""
    if os.environ.get("LIGHTTTS_A10_PATCHES_DIR"):
        return Path(os.environ["LIGHTTTS_A10_PATCHES_DIR"])
    return INSTALLED_PATCHES_DIR if INSTALLED_PATCHES_DIR.is_dir() else CHECKOUT_PATCHES_DIR


@dataclass(frozen=True)
class RepoPin:
    path: str  # relative to the LightTTS root; "." is LightTTS itself
    name: str  # e.g. "FunAudioLLM/CosyVoice"
    commit: str  # full sha of the pinned commit


@dataclass(frozen=True)
class TargetFile:
    path: str  # relative to the LightTTS root, as written in the patch
    repo: str  # the repository that owns the file, relative to the LightTTS root
    patch: str
    mode: str  # "100644" or "100755"
    pre: str  # git blob id at the pin
    post: str  # git blob id once the patch is applied

    @property
    def path_in_repo(self) -> str:
        return self.path if self.repo == "." else self.path[len(self.repo) + 1:]


@dataclass(frozen=True)
class Patch:
    name: str
    file: Path
    header: str  # DEP-3 header: everything before the first "diff --git"
    diff: PatchSet

    def hunks(self, path: str) -> PatchedFile:
        for patched_file in self.diff:
            if patched_file.path == path:
                return patched_file
        raise KeyError(path)


@dataclass(frozen=True)
class Series:
    name: str
    directory: Path
    description: str
    repos: dict[str, RepoPin]
    patches: list[Patch]
    files: list[TargetFile]

    def patch(self, name: str) -> Patch:
        return next(patch for patch in self.patches if patch.name == name)

    def hunks(self, target: TargetFile) -> PatchedFile:
        return self.patch(target.patch).hunks(target.path)

    def summary(self) -> str:
        pins = ", ".join(f"{pin.name} {pin.commit[:7]}" for pin in self.repos.values())
        return f"patch set {self.name} ({pins})"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def available_sets(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "series").is_file())


def read_series_file(directory: Path) -> list[str]:
    """Patch names from a quilt `series` file."""
    names: list[str] = []
    for raw in (directory / "series").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if "/" in line or "\\" in line or line.startswith("."):
            raise SeriesError(f"{directory / 'series'}: '{line}' is not a plain patch file name")
        names.append(line)
    return names


def check_relative_path(path: str) -> str | None:
    """Why `path` may not be written by a patch, or None when it is a safe relative path."""
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or path.startswith("/"):
        return "absolute paths are not allowed"
    if any(part in ("..", ".", "") for part in path.split("/")):
        return "'..', '.' and empty path components are not allowed"
    if ".git" in pure.parts:
        return "paths inside .git are not allowed"
    return None


def split_header(text: str) -> tuple[str, str]:
    """(DEP-3 header, diff) of a patch file's text."""
    index = text.find("diff --git ")
    while index > 0 and text[index - 1] != "\n":
        index = text.find("diff --git ", index + 1)
    if index < 0:
        return text, ""
    return text[:index], text[index:]


def parse_patch(name: str, file: Path) -> Patch:
    """Parse one patch file; refuse anything but in-place modifications of safe relative paths."""
    try:
        text = file.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SeriesError(f"cannot read patch {name}: {error}") from error
    header, diff_text = split_header(text)
    try:
        diff = PatchSet(diff_text)
    except UnidiffParseError as error:
        raise SeriesError(f"corrupt patch {name}: {error}",
                          hint="restore the patch file from the release (git checkout -- patches/)") from error
    if not len(diff):
        raise SeriesError(f"corrupt patch {name}: it contains no file diff")
    problems = []
    for patched_file in diff:
        source = patched_file.source_file.removeprefix("a/")
        target = patched_file.target_file.removeprefix("b/")
        reason = check_relative_path(target) or check_relative_path(source)
        if source != target:
            reason = reason or f"renames are not supported ({source} -> {target})"
        if not patched_file.is_modified_file:
            reason = reason or "only modifications of existing files are supported"
        if reason:
            problems.append(Problem("unsafe-path", f"{name}: {target}: {reason}", path=target, patch=name))
    if problems:
        raise SeriesError(f"patch {name} writes paths it may not write", problems)
    return Patch(name, file, header, diff)


def load_series(directory: Path) -> Series:
    """Load and verify a patch set: checksums, paths, and agreement between series, lock and diffs."""
    lock_path = directory / "lock.json"
    if not (directory / "series").is_file():
        raise SeriesError(f"{directory} has no series file")
    try:
        lock = json.loads(lock_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SeriesError(f"cannot read {lock_path}: {error}") from error
    if lock.get("format") != LOCK_FORMAT:
        raise SeriesError(f"{lock_path}: unsupported lock format {lock.get('format')!r}")

    names = read_series_file(directory)
    if sorted(names) != sorted(lock["patches"]):
        raise SeriesError(f"{directory}: series lists {names} but lock.json pins {sorted(lock['patches'])}",
                          hint="regenerate the lock with `python -m lighttts_a10.refresh`")

    problems = []
    for name in names:
        file = directory / name
        expected = lock["patches"][name]["sha256"]
        actual = sha256_file(file) if file.is_file() else "missing"
        if actual != expected:
            problems.append(Problem("checksum", f"{name}: sha256 {actual} does not match the lock ({expected})",
                                    patch=name, expected=expected, found=actual))
    if problems:
        raise SeriesError("patch files differ from the ones the lock pins (corrupt or edited)", problems,
                          hint="restore them from the release (git checkout -- patches/); a maintainer who "
                               "changed a patch on purpose regenerates the lock with `python -m lighttts_a10.refresh`")
    patches = [parse_patch(name, directory / name) for name in names]

    repos = {path: RepoPin(path, pin["name"], pin["commit"]) for path, pin in lock["repos"].items()}
    files = [TargetFile(path, entry["repo"], entry["patch"], entry["mode"], entry["pre"], entry["post"])
             for path, entry in sorted(lock["files"].items())]
    for target in files:
        owner_ok = target.repo in repos and (target.repo == "." or target.path.startswith(target.repo + "/"))
        if not owner_ok or check_relative_path(target.path):
            raise SeriesError(f"{lock_path}: bad entry for {target.path} (repo {target.repo!r})")
    for patch in patches:
        in_diff = sorted(patched_file.path for patched_file in patch.diff)
        in_lock = sorted(target.path for target in files if target.patch == patch.name)
        if in_diff != in_lock:
            raise SeriesError(f"{patch.name} touches {in_diff} but lock.json records {in_lock}")
    return Series(directory.name, directory, lock.get("description", ""), repos, patches, files)
