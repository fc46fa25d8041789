"""The upstream checkout: LightTTS plus the repositories it contains, in either layout.

Layouts: real submodules (`git clone --recursive`: `cosyvoice/.git` is a file pointing into
`.git/modules/`) and plain nested clones (`cosyvoice/.git` is a directory). Both are opened with
GitPython; each target file is read and written through its own repository's root.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import git
from gitdb.exc import BadName, BadObject

from .errors import AccessError, CheckoutError, Problem
from .series import RepoPin, TargetFile

SENTINEL = "light_tts/server/api_server.py"  # what makes a directory a LightTTS checkout
STATE_DIR_NAME = "lighttts-a10"  # inside the superproject's git dir: lock, journal, saved files

PRISTINE, OURS, FOREIGN, MISSING, UNSAFE = "pristine", "ours", "foreign", "missing", "unsafe"


def blob_id(data: bytes) -> str:
    """The git blob id of `data` (what `git hash-object` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def file_mode(path: Path) -> str:
    return "100755" if os.stat(path).st_mode & stat.S_IXUSR else "100644"


@dataclass(frozen=True)
class FileStatus:
    target: TargetFile
    state: str  # PRISTINE, OURS, FOREIGN, MISSING or UNSAFE
    blob: str | None = None
    mode: str | None = None
    reason: str = ""


def open_repo(path: Path) -> git.Repo:
    """The git repository whose top level is exactly `path`."""
    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as error:
        raise CheckoutError(f"{path} is not a git checkout",
                            hint="pass the root of a LightTTS clone (git clone --recursive https://github.com/ModelTC/LightTTS)") from error
    top = repo.working_tree_dir
    if top is None or Path(top).resolve() != path.resolve():
        raise CheckoutError(f"{path} is inside a git checkout but is not its top level ({top})",
                            hint="pass the LightTTS root, the folder that holds light_tts/ and .gitmodules")
    git_works_in(str(path.resolve()))
    return repo


@functools.lru_cache(maxsize=None)  # once per repository and process; a refusal is not cached
def git_works_in(path: str) -> None:
    """GitPython opens a repository without running git: ask git itself whether it will work here."""
    try:
        git.Repo(path).git.rev_parse("--git-dir")
    except git.GitCommandError as error:
        raise git_refusal(Path(path), error) from error


def git_refusal(path: Path, error: git.GitCommandError) -> AccessError | CheckoutError:
    """Why git will not work in `path`, and what to do."""
    said = str(error.stderr).strip().strip("'").strip()
    first = next((line.strip() for line in said.splitlines() if line.strip()), said)
    if "dubious ownership" in said:
        owner = os.stat(path).st_uid
        return AccessError(
            f"git refuses to work in {path}: it belongs to uid {owner}, and this runs as uid {os.geteuid()} "
            f"(git's 'dubious ownership' check: {first})",
            hint=f"nothing was changed. Run as the user who owns the checkout; or, if you trust it, tell git so: "
                 f"git config --global --add safe.directory {path} (once per repository: LightTTS and each "
                 "submodule or nested clone, e.g. cosyvoice)")
    return CheckoutError(f"git fails in {path}: {first}", hint="fix what git says, then run this again")


def open_superproject(root: Path) -> git.Repo:
    """Check that `root` is the top of a LightTTS git checkout, whatever its pin."""
    if not root.exists():
        raise CheckoutError(f"{root} does not exist", hint="pass the path of your LightTTS checkout (or set LIGHTTTS_DIR)")
    if not root.is_dir():
        raise CheckoutError(f"{root} is not a directory", hint="pass the path of your LightTTS checkout (or set LIGHTTTS_DIR)")
    repo = open_repo(root)
    if not (root / SENTINEL).is_file():
        raise CheckoutError(f"{root} is a git checkout but not of LightTTS (no {SENTINEL})",
                            hint="pass the root of a ModelTC/LightTTS clone")
    return repo


def registered_submodules(root: Path) -> set[str]:
    """Paths .gitmodules registers as submodules (read without git: it is a plain config file)."""
    gitmodules = root / ".gitmodules"
    if not gitmodules.is_file():
        return set()
    config = git.GitConfigParser(str(gitmodules), read_only=True)
    return {str(config.get_value(section, "path")) for section in config.sections()
            if section.startswith("submodule ") and config.has_option(section, "path")}


class Checkout:
    """A LightTTS checkout opened for one patch set: the superproject and each pinned repository."""

    def __init__(self, root: Path, pins: dict[str, RepoPin]) -> None:
        self.root = root.resolve()
        self.pins = pins
        # What --check takes the files to hold, by path: their contents once an interrupted run is
        # undone ((bytes, mode), or None for no file). Empty: the files on disk.
        self.assumed: dict[str, tuple[bytes, str] | None] = {}
        self.superproject = open_superproject(self.root)
        submodules = registered_submodules(self.root)
        self.repos: dict[str, git.Repo] = {".": self.superproject}
        self.layouts: dict[str, str] = {".": "superproject"}
        for path in pins:
            if path == ".":
                continue
            location = self.root / path
            if not (location / ".git").exists():
                raise CheckoutError(
                    f"{path} is missing or not checked out in {self.root}",
                    hint=f"run `git submodule update --init --recursive` in {self.root}" if path in submodules
                    else f"this checkout does not have {path} as a repository: is it the pinned LightTTS?")
            self.repos[path] = open_repo(location)
            registered = path in submodules
            self.layouts[path] = ("submodule" if (location / ".git").is_file() else "nested clone") if registered \
                else "unregistered clone"

    # -- paths -----------------------------------------------------------------------------
    def resolve(self, relative: str) -> Path:
        """Absolute path of a target file; raises if it (or a parent) leads outside the checkout."""
        path = self.root / relative
        real = Path(os.path.realpath(path))
        if real != self.root and self.root not in real.parents:
            raise CheckoutError(f"{relative} leads outside the checkout (to {real})",
                                [Problem("unsafe-path", f"{relative} resolves to {real}, outside {self.root}", path=relative)])
        return path

    @property
    def state_dir(self) -> Path:
        """Where the lock, the journal and saved files live: inside the superproject's git dir."""
        return Path(self.superproject.git_dir) / STATE_DIR_NAME

    # -- states ----------------------------------------------------------------------------
    def status(self, target: TargetFile) -> FileStatus:
        path = self.root / target.path
        try:
            self.resolve(target.path)
        except CheckoutError as error:
            return FileStatus(target, UNSAFE, reason=error.message)
        if target.path in self.assumed:
            content = self.assumed[target.path]
            if content is None:
                return FileStatus(target, MISSING, reason="the file does not exist")
            data, mode = content
        else:
            if not os.path.lexists(path):
                return FileStatus(target, MISSING, reason="the file does not exist")
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                return FileStatus(target, UNSAFE, reason=f"is a symbolic link (to {os.readlink(path)})")
            if not stat.S_ISREG(info.st_mode):
                return FileStatus(target, UNSAFE, reason="is not a regular file")
            data, mode = path.read_bytes(), file_mode(path)
        blob = blob_id(data)
        if blob not in (target.pre, target.post):
            blob = self.committed_blob(target, data)
        state = PRISTINE if blob == target.pre else OURS if blob == target.post else FOREIGN
        return FileStatus(target, state, blob, mode)

    def read_text(self, target: TargetFile) -> str:
        content = self.assumed.get(target.path)
        data = content[0] if content else (self.root / target.path).read_bytes()
        return data.decode("utf-8", "surrogateescape")

    def _git(self, target: TargetFile, *args: str, data: bytes | None = None) -> bytes:
        """Run git in the repository that owns `target`; its stdout as bytes."""
        result = subprocess.run(["git", *args], cwd=self.repos[target.repo].working_tree_dir, input=data,
                                capture_output=True)
        if result.returncode:
            said = result.stderr.decode("utf-8", "replace").strip()
            raise CheckoutError(f"git {args[0]} failed for {target.path}: {said}",
                                hint="fix what git says, then run this again")
        return result.stdout

    def committed_blob(self, target: TargetFile, data: bytes) -> str:
        """The blob git would commit for `data` at this path: with core.autocrlf, eol attributes and clean
        filters applied, so a file git calls unmodified is never taken for a local edit."""
        return self._git(target, "hash-object", "--stdin", f"--path={target.path_in_repo}", data=data).decode().strip()

    def checkout_bytes(self, target: TargetFile) -> bytes:
        """The pinned file as `git checkout` writes it here (core.autocrlf, eol attributes, smudge filters)."""
        self.pinned_bytes(target)  # a clear refusal when the blob is not there
        return self._git(target, "cat-file", "--filters", f"--path={target.path_in_repo}", target.pre)

    def pinned_bytes(self, target: TargetFile) -> bytes:
        """The file as upstream has it at the pin, from the owning repository's git objects."""
        repo = self.repos[target.repo]
        try:
            return repo.odb.stream(bytes.fromhex(target.pre)).read()
        except (BadObject, BadName, ValueError) as error:
            raise CheckoutError(f"the pinned version of {target.path} (blob {target.pre}) is not in {target.repo}'s git objects",
                                hint="fetch the upstream history (git fetch, or git submodule update) and retry") from error

    # -- git views --------------------------------------------------------------------------
    def head(self, repo_path: str) -> str:
        try:
            return self.repos[repo_path].head.commit.hexsha
        except ValueError:
            return "(no commit)"

    def is_clean(self, target: TargetFile) -> bool:
        repo = self.repos[target.repo]
        return not repo.git.status("--porcelain", "--", target.path_in_repo).strip()

    def head_blob(self, target: TargetFile) -> str | None:
        """The file's blob id in its repository's HEAD commit (None if HEAD lacks it)."""
        try:
            return (self.repos[target.repo].head.commit.tree / target.path_in_repo).hexsha
        except (KeyError, ValueError):
            return None

    def commits_between_pin_and_head(self, target: TargetFile) -> list[str]:
        """Upstream commits that changed this file between the pin and HEAD, in either direction."""
        repo = self.repos[target.repo]
        pin = self.pins[target.repo].commit
        try:
            log = repo.git.log("--format=%h %ad %s", "--date=short", f"{pin}...HEAD", "--", target.path_in_repo)
        except git.GitCommandError:
            return []  # the pin is not in this repository's history (shallow or foreign clone)
        return [line for line in log.splitlines() if line.strip()]
