"""Command lines of apply_patches.py and rollback.py: parse, run one transaction, report, exit.

Exit codes: 0 success, 1 refused or verification failed (nothing changed), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from .checkout import OURS, PRISTINE
from .errors import OverlayError, UsageError
from .selection import Selected, select
from .transaction import Outcome, apply, exclusive, rollback


def patch_states(selected: Selected) -> dict[str, str]:
    """applied / not applied / partly applied / conflict, per patch, from its files' states."""
    states: dict[str, str] = {}
    for patch in selected.series.patches:
        files = {s.state for s in selected.statuses if s.target.patch == patch.name}
        states[patch.name] = ("applied" if files == {OURS} else "not applied" if files == {PRISTINE}
                              else "partly applied" if files == {OURS, PRISTINE} else "conflict")
    return states


def describe(selected: Selected | None) -> dict:
    if selected is None:
        return {}
    return {
        "set": selected.series.name,
        "pins": {path: pin.commit for path, pin in selected.series.repos.items()},
        "layouts": selected.checkout.layouts,
        "patches": [{"name": name, "state": state} for name, state in patch_states(selected).items()],
        "files": [{"path": s.target.path, "repo": s.target.repo, "patch": s.target.patch, "state": s.state,
                   **({"reason": s.reason} if s.reason else {})} for s in selected.statuses],
    }


def print_text(report: dict, show_files: bool, stream=sys.stdout) -> None:
    def say(line: str = "") -> None:
        print(line, file=stream)

    if "set" in report:
        layouts = ", ".join(f"{path}: {kind}" for path, kind in report["layouts"].items() if path != ".")
        say(f"{report['command']}: {report['checkout']}")
        say(f"  patch set {report['set']} ({layouts or 'no nested repositories'})")
    for warning in report.get("warnings", []):
        say(f"warning: {warning}")
    for note in report.get("notes", []):
        say(f"note: {note}")
    if show_files and "files" in report:
        say("patches:")
        for patch in report["patches"]:
            say(f"  {patch['state']:<15} {patch['name']}")
        say("files:")
        for entry in report["files"]:
            reason = f"  ({entry['reason']})" if entry.get("reason") else ""
            say(f"  {entry['state']:<9} {entry['path']}  [{entry['patch']}]{reason}")
    if report["result"] == "error":
        say(f"error: {report['message']}")
        for problem in report.get("problems", []):
            say(f"  {problem['message']}")
            if problem.get("hunk"):
                say(f"    {problem['patch']}, hunk {problem['hunk']}, line {problem['line']}:")
                say(f"      expected: {problem['expected']!r}")
                say(f"      found:    {problem['found']!r}" if problem.get("found") is not None
                    else "      found:    end of file")
            for commit in problem.get("commits", []):
                say(f"    changed upstream by: {commit}")
        if report.get("hint"):
            for line in report["hint"].splitlines():
                say(f"hint: {line}")
    elif report.get("summary"):
        say(report["summary"])


def run(command: str, path: str | None, set_name: str | None, as_json: bool, show_files: bool,
        action: Callable[[Selected], tuple[Outcome, str, int]]) -> int:
    """Select the set, take the lock, run `action`, print the report; map refusals to exit codes."""
    report: dict = {"command": command}
    selected = None
    try:
        if not path:
            raise UsageError("no checkout given: pass PATH or set LIGHTTTS_DIR")
        report["checkout"] = str(Path(path).resolve())
        selected = select(Path(path), set_name)
        with exclusive(selected.checkout):
            outcome, summary, code = action(selected)
            selected.statuses = [selected.checkout.status(s.target) for s in selected.statuses]
        report.update(result="ok" if code == 0 else "not-applied", summary=summary, written=outcome.written,
                      notes=outcome.notes, warnings=outcome.warnings, exit_code=code)
    except OverlayError as error:
        code = error.exit_code
        report.update(result="error", message=error.message, hint=error.hint, exit_code=code,
                      problems=[problem.to_json() for problem in error.problems])
    report.update(describe(selected))
    try:
        if as_json:
            json.dump(report, sys.stdout, indent=2)
            print()
        else:
            print_text(report, show_files or report["result"] == "error", sys.stdout if code == 0 else sys.stderr)
    except BrokenPipeError:  # e.g. `apply_patches.py --status | head`: the work is done, keep its exit code
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     epilog="Exit codes: 0 success, 1 refused or verification failed "
                                            "(nothing was changed), 2 usage error.")
    parser.add_argument("path", nargs="?", default=os.environ.get("LIGHTTTS_DIR"), metavar="PATH",
                        help="the LightTTS checkout (default: $LIGHTTTS_DIR)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable report")
    parser.add_argument("--set", dest="set_name", metavar="NAME",
                        help="use this patch set instead of picking the one that matches the checkout")
    return parser


def apply_main(argv: Sequence[str] | None = None) -> int:
    parser = _parser("apply_patches.py", "Verify the A10 patch series against a LightTTS checkout, then apply "
                                         "all of it or nothing.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="verify only; write nothing")
    mode.add_argument("--status", action="store_true",
                      help="report each file and patch; exit 0 only when the series is fully applied")
    args = parser.parse_args(argv)

    def action(selected: Selected) -> tuple[Outcome, str, int]:
        if args.status:
            applied = all(state == "applied" for state in patch_states(selected).values())
            return Outcome(), "the series is fully applied" if applied else "the series is NOT fully applied", \
                0 if applied else 1
        outcome = apply(selected, check_only=args.check)
        count = len(selected.series.patches)
        if args.check:
            return outcome, f"check passed: the {count} patches can be applied (or already are)", 0
        summary = (f"applied {count} patches: wrote {len(outcome.written)} files" if outcome.written
                   else "already applied; nothing written")
        return outcome, summary, 0

    return run("apply", args.path, args.set_name, args.json, args.status, action)


def rollback_main(argv: Sequence[str] | None = None) -> int:
    parser = _parser("rollback.py", "Restore every file the overlay touches to the pinned upstream bytes, "
                                    "from git objects.")
    parser.add_argument("--check", action="store_true", help="say what would be restored; write nothing")
    parser.add_argument("--force", action="store_true",
                        help="also replace files with local edits, after saving them aside (the path is printed)")
    args = parser.parse_args(argv)

    def action(selected: Selected) -> tuple[Outcome, str, int]:
        outcome = rollback(selected, check_only=args.check, force=args.force)
        if args.check:
            return outcome, "check passed: rollback can restore every touched file", 0
        summary = (f"restored {len(outcome.written)} files to the pinned upstream; git shows them unmodified"
                   if outcome.written else "nothing to restore")
        return outcome, summary, 0

    return run("rollback", args.path, args.set_name, args.json, False, action)
