"""Maintainer command: regenerate a set's patch files and lock from an upstream checkout you edited.

The role of quilt's `refresh`. Start from a checkout at the pin with the series applied (or with
fresh edits), change the target files, then run:

    python -m lighttts_a10.refresh PATH --set 30bc57b [--add PATCH:FILE ...]

Each patch keeps its DEP-3 header (the text before its first `diff --git`) and gets a fresh diff of
its files, taken with `git diff` in the repository that owns each file, so the result applies with
`git apply` and `patch -p1` from the LightTTS root. The lock records HEAD of every repository as
the pin. Nothing in the checkout is changed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from .checkout import Checkout, blob_id, file_mode, open_superproject
from .errors import OverlayError, SeriesError, UsageError
from .series import LOCK_FORMAT, RepoPin, check_relative_path, patches_dir, read_series_file, sha256_file, split_header

# Where each repository comes from, for the lock (names only: nothing is downloaded).
KNOWN_NAMES = {".": "ModelTC/LightTTS", "cosyvoice": "FunAudioLLM/CosyVoice",
               "third_party/Matcha-TTS": "shivammehta25/Matcha-TTS"}


def owning_repo(root: Path, path: str, repos: Sequence[str]) -> str:
    """The deepest repository (of `repos`) that contains `path`."""
    owners = [repo for repo in repos if repo != "." and path.startswith(repo + "/")]
    return max(owners, key=len) if owners else "."


def diff_of(checkout: Checkout, repo: str, path_in_repo: str, pin: str) -> str:
    """`git diff` of one file against the pin, with paths relative to the LightTTS root."""
    prefix = "" if repo == "." else repo + "/"
    return checkout.repos[repo].git.diff(
        pin, "--", path_in_repo, full_index=True, no_color=True, no_ext_diff=True, no_renames=True,
        src_prefix=f"a/{prefix}", dst_prefix=f"b/{prefix}", strip_newline_in_stdout=False)


def refresh(root: Path, set_dir: Path, additions: Sequence[str]) -> list[str]:
    names = read_series_file(set_dir)
    lock_path = set_dir / "lock.json"
    old = json.loads(lock_path.read_text(encoding="utf-8")) if lock_path.exists() else {"files": {}, "repos": {}}
    owner_of_file = {path: entry["patch"] for path, entry in old["files"].items()}
    for addition in additions:
        patch, sep, path = addition.partition(":")
        if not sep or patch not in names or check_relative_path(path):
            raise UsageError(f"--add {addition!r}: expected PATCH:FILE with PATCH in the series and a relative FILE")
        owner_of_file[path] = patch

    superproject = open_superproject(root)
    repo_paths = sorted(set(old["repos"]) | {"."} | {sm.path for sm in superproject.submodules
                                                     if (root / sm.path / ".git").exists()})
    names_of = {path: old["repos"].get(path, {}).get("name", KNOWN_NAMES.get(path, path)) for path in repo_paths}
    checkout = Checkout(root, {path: RepoPin(path, name, "") for path, name in names_of.items()})
    pins = {path: RepoPin(path, name, checkout.head(path)) for path, name in names_of.items()}

    files: dict[str, dict] = {}
    diffs: dict[str, list[str]] = {name: [] for name in names}
    for path, patch in sorted(owner_of_file.items()):
        repo = owning_repo(root, path, repo_paths)
        in_repo = path if repo == "." else path[len(repo) + 1:]
        head_tree = checkout.repos[repo].head.commit.tree
        try:
            entry = head_tree / in_repo
        except KeyError as error:
            raise SeriesError(f"{path} is not in {repo} at {pins[repo].commit[:12]}") from error
        diff = diff_of(checkout, repo, in_repo, pins[repo].commit)
        if not diff:
            raise SeriesError(f"{path} has no changes against the pin; drop it from the lock or edit it")
        mode = f"{entry.mode:o}"
        if file_mode(root / path) != mode:
            raise SeriesError(f"{path}: mode changes are not supported ({mode} at the pin)")
        files[path] = {"repo": repo, "patch": patch, "mode": mode, "pre": entry.hexsha,
                       "post": blob_id((root / path).read_bytes())}
        diffs[patch].append(diff)

    written = []
    patches = {}
    for name in names:
        file = set_dir / name
        header = split_header(file.read_text(encoding="utf-8"))[0] if file.exists() else f"Description: {name}\n\n"
        if not diffs[name]:
            raise SeriesError(f"{name} would be empty: no file in the lock or --add belongs to it")
        file.write_bytes((header + "".join(diffs[name])).encode("utf-8"))
        patches[name] = {"sha256": sha256_file(file), "files": sorted(p for p, f in files.items() if f["patch"] == name)}
        written.append(str(file))
    lock = {"format": LOCK_FORMAT, "set": set_dir.name, "description": old.get("description", ""),
            "repos": {path: {"name": pin.name, "commit": pin.commit} for path, pin in pins.items()},
            "patches": patches, "files": files}
    lock_path.write_text(json.dumps(lock, indent=2) + "\n", encoding="utf-8")
    written.append(str(lock_path))
    return written


def main(argv: Sequence[str] | None = None, prog: str = "python -m lighttts_a10.refresh") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", metavar="PATH", help="the edited LightTTS checkout, at the pin")
    parser.add_argument("--set", dest="set_name", required=True, help="the patch set to regenerate (a folder of patches/)")
    parser.add_argument("--patches-dir", type=Path, default=None, help="folder of patch sets (default: the repository's patches/)")
    parser.add_argument("--add", action="append", default=[], metavar="PATCH:FILE",
                        help="put FILE (relative to the LightTTS root) into PATCH; repeatable")
    args = parser.parse_args(argv)
    set_dir = (args.patches_dir or patches_dir()) / args.set_name
    try:
        if not (set_dir / "series").is_file():
            raise UsageError(f"{set_dir} has no series file: create it (one patch name per line) first")
        for line in refresh(Path(args.path).resolve(), set_dir, args.add):
            print(f"wrote {line}")
    except OverlayError as error:
        print(f"error: {error.message}" + (f"\nhint: {error.hint}" if error.hint else ""), file=sys.stderr)
        return error.exit_code
    print("check the result with: python apply_patches.py --status PATH")
    return 0


if __name__ == "__main__":
    sys.exit(main())
