"""Command lines of apply_patches.py, rollback.py and `python -m lighttts_a10`: parse, run one
transaction, report, exit.

Exit codes: 0 success, 1 refused or verification failed (nothing changed), 2 usage error, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from . import journal
from .checkout import OURS, PRISTINE, Checkout
from .errors import OverlayError, UsageError, as_refusal
from .selection import Selected, select
from .transaction import Outcome, apply, rollback

# What the next run does with each file of an interrupted run, in words.
RECOVERY_ACTIONS = {journal.WRITTEN: ("put back", "holds what that run wrote: the next run puts back what was there"),
                    journal.UNTOUCHED: ("leave", "as it was before that run"),
                    journal.CHANGED: ("keep", "changed after that run, so it is yours: the next run keeps it and "
                                              "refuses")}


def patch_states(selected: Selected) -> dict[str, str]:
    """applied / not applied / partly applied / conflict, per patch, from its files' states."""
    states: dict[str, str] = {}
    for patch in selected.series.patches:
        files = {s.state for s in selected.statuses if s.target.patch == patch.name}
        states[patch.name] = ("applied" if files == {OURS} else "not applied" if files == {PRISTINE}
                              else "partly applied" if files == {OURS, PRISTINE} else "conflict")
    return states


def interrupted_run(checkout: Checkout) -> dict | None:
    """The journal an interrupted run left, and what the next run will do with each of its files."""
    try:
        pending = journal.read(checkout)
    except OverlayError as error:
        return {"unreadable": error.message}
    if pending is None:
        return None
    findings = journal.inspect(checkout, pending)
    return {"operation": pending.operation, "pid": pending.pid, "started": pending.started,
            "journal": str(journal.journal_path(checkout)), "description": pending.describe(),
            "files": [{"path": f.entry.path, "found": f.state, "action": RECOVERY_ACTIONS[f.state][0]}
                      for f in findings],
            "temporary_files": [f.entry.temp for f in findings if f.temp_present]}


def describe(selected: Selected | None) -> dict:
    """The checkout as it is now on disk (after whatever the command did or undid)."""
    if selected is None:
        return {}
    selected.checkout.assumed = {}  # --check may have looked at the files as an undo would leave them
    selected.statuses = [selected.checkout.status(s.target) for s in selected.statuses]
    pending = interrupted_run(selected.checkout)
    return {**({"interrupted_run": pending} if pending else {}),
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
    pending = report.get("interrupted_run")
    if pending and "unreadable" in pending:
        say(f"warning: {pending['unreadable']}")
    elif pending:
        say(f"warning: an interrupted {pending['description']} left its journal ({pending['journal']}); "
            "the next apply_patches.py or rollback.py undoes it first:")
        for entry in pending["files"]:
            say(f"  {entry['action']:<9} {entry['path']}  ({RECOVERY_ACTIONS[entry['found']][1]})")
        for temp in pending["temporary_files"]:
            say(f"  {'remove':<9} {temp}  (that run's temporary file)")
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


def refusal(failure: BaseException) -> OverlayError:
    """Every failure as a refusal with an exit code and a hint; never a traceback."""
    return as_refusal(
        failure,
        hint_interrupted="a run that was writing put back what it wrote first, or left its journal for the next run "
                         "to undo",
        # git or the OS failing in a way no check foresaw
        hint_unexpected="if this happened while writing, the journal in .git/lighttts-a10 records the run and the "
                        "next run puts back what it wrote (--status shows it). Please report this output")


def run(command: str, path: str | None, set_name: str | None, as_json: bool, show_files: bool, writes: bool,
        action: Callable[[Selected], tuple[Outcome, str, int]]) -> int:
    """Select the set, take the lock, run `action`, print the report; map every failure to an exit code."""
    report: dict = {"command": command}
    selected = None
    try:
        if not path:
            raise UsageError("no checkout given: pass PATH or set LIGHTTTS_DIR")
        report["checkout"] = str(Path(path).resolve())
        selected = select(Path(path), set_name)
        with journal.exclusive(selected.checkout, required=writes) as locked:
            outcome, summary, code = action(selected)
        if not locked:
            outcome.warnings.append(f"could not take the lock in {selected.checkout.state_dir} (not writable): "
                                    "this report does not wait for a run that may be writing")
        report.update(result="ok" if code == 0 else "not-applied", summary=summary, written=outcome.written,
                      notes=outcome.notes, warnings=outcome.warnings, exit_code=code)
        report.update(describe(selected))
    except (Exception, KeyboardInterrupt) as failure:
        error = refusal(failure)
        code = error.exit_code
        report.update(result="error", message=error.message, hint=error.hint, exit_code=code,
                      problems=[problem.to_json() for problem in error.problems])
        try:
            report.update(describe(selected))
        except Exception as second:  # what failed may also break describing the checkout: say so, don't crash
            report.setdefault("warnings", []).append(f"could not describe the checkout: {second}")
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
                                            "(nothing was changed), 2 usage error, 130 interrupted by Ctrl-C. "
                                            "Patch sets: $LIGHTTTS_A10_PATCHES_DIR, else the ones shipped with "
                                            "lighttts-a10.")
    parser.add_argument("path", nargs="?", default=os.environ.get("LIGHTTTS_DIR"), metavar="PATH",
                        help="the LightTTS checkout (default: $LIGHTTTS_DIR)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable report")
    parser.add_argument("--set", dest="set_name", metavar="NAME",
                        help="use this patch set instead of picking the one that matches the checkout")
    return parser


def apply_main(argv: Sequence[str] | None = None, prog: str = "apply_patches.py") -> int:
    parser = _parser(prog, "Verify the A10 patch series against a LightTTS checkout, then apply "
                                         "all of it or nothing.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="verify only; write nothing")
    mode.add_argument("--status", action="store_true",
                      help="report each file and patch, and an interrupted run; exit 0 only when the series is "
                           "fully applied and no interrupted run is pending")
    args = parser.parse_args(argv)

    def action(selected: Selected) -> tuple[Outcome, str, int]:
        if args.status:
            pending = journal.read(selected.checkout)
            applied = all(state == "applied" for state in patch_states(selected).values())
            if pending is not None:
                return Outcome(), (f"the series is NOT settled: an interrupted {pending.describe()} is pending; "
                                   "run apply_patches.py (or rollback.py) to undo it and finish"), 1
            return Outcome(), "the series is fully applied" if applied else "the series is NOT fully applied", \
                0 if applied else 1
        outcome = apply(selected, check_only=args.check)
        count = len(selected.series.patches)
        if args.check:
            return outcome, f"check passed: the {count} patches can be applied (or already are)", 0
        summary = (f"applied {count} patches: wrote {len(outcome.written)} files" if outcome.written
                   else "already applied; nothing written")
        return outcome, summary, 0

    return run("apply", args.path, args.set_name, args.json, args.status, not (args.check or args.status), action)


def rollback_main(argv: Sequence[str] | None = None, prog: str = "rollback.py") -> int:
    parser = _parser(prog, "Restore every file the overlay touches to the pinned upstream bytes, "
                                    "from git objects.")
    parser.add_argument("--check", action="store_true", help="say what would be restored; write nothing")
    parser.add_argument("--force", action="store_true",
                        help="also replace files with local edits, after saving them aside (the path is printed)")
    args = parser.parse_args(argv)

    def action(selected: Selected) -> tuple[Outcome, str, int]:
        outcome = rollback(selected, check_only=args.check, force=args.force)
        if args.check:
            return outcome, "check passed: rollback can restore every touched file", 0
        summary = (f"restored {len(outcome.written)} files to the pinned upstream"
                   + ("" if outcome.shown_modified else "; git shows them unmodified") if outcome.written else "nothing to restore")
        return outcome, summary, 0

    return run("rollback", args.path, args.set_name, args.json, False, not args.check, action)


def refresh_main(argv: Sequence[str] | None = None, prog: str = "python -m lighttts_a10.refresh") -> int:
    from .refresh import main as refresh  # maintainers only: keep it out of the users' import path

    return refresh(argv, prog)


COMMANDS: dict[str, Callable[..., int]] = {"apply": apply_main, "rollback": rollback_main, "refresh": refresh_main}
USAGE = """usage: python -m lighttts_a10 {apply,rollback,refresh} [ARGS...]

  apply     verify the patch series against a LightTTS checkout, then apply all of it or nothing
            (the same as apply_patches.py and lighttts-a10-apply)
  rollback  restore the pinned upstream files (rollback.py, lighttts-a10-rollback)
  refresh   maintainers: regenerate a patch set from an edited checkout (lighttts-a10-refresh)

`python -m lighttts_a10 COMMAND --help` describes each command."""


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m lighttts_a10 apply|rollback|refresh ...`"""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if not args or args[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        print(f"error: {'no command given' if not args else f'unknown command {args[0]!r}'}", file=sys.stderr)
        return 2
    return COMMANDS[args[0]](args[1:], prog=f"python -m lighttts_a10 {args[0]}")


if __name__ == "__main__":
    sys.exit(main())
