"""Exact hunk application: every hunk must match at its recorded line, no fuzz, no offset.

The series is verified against known blob ids, so a loose applier could only hide drift (or, where
two classes share identical context, patch the wrong one). We therefore apply hunks ourselves,
strictly, from the hunks unidiff parsed.
"""

from __future__ import annotations

from dataclasses import dataclass

from unidiff import PatchedFile
from unidiff.constants import LINE_TYPE_NO_NEWLINE


@dataclass(frozen=True)
class HunkMismatch:
    hunk: int  # 1-based index of the hunk in its file
    line: int  # 1-based line in the file where the mismatch is
    expected: str
    found: str | None  # None: the file ends before this line


def split_lines(text: str) -> list[str]:
    """Split on "\\n" only (str.splitlines also splits on form feeds and other separators)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _sides(hunk) -> tuple[list[str], list[str]]:
    """The hunk's pre-image and post-image lines, honouring "\\ No newline at end of file"."""
    source: list[str] = []
    target: list[str] = []
    lines = list(hunk)
    for index, line in enumerate(lines):
        if line.line_type == LINE_TYPE_NO_NEWLINE:
            continue
        value = line.value
        if index + 1 < len(lines) and lines[index + 1].line_type == LINE_TYPE_NO_NEWLINE:
            value = value.removesuffix("\n")
        if line.is_context or line.is_removed:
            source.append(value)
        if line.is_context or line.is_added:
            target.append(value)
    return source, target


def mismatches(text: str, patched_file: PatchedFile) -> list[HunkMismatch]:
    """Every hunk that does not match exactly at its recorded line (first differing line each)."""
    lines = split_lines(text)
    found: list[HunkMismatch] = []
    for number, hunk in enumerate(patched_file, start=1):
        source, _ = _sides(hunk)
        start = hunk.source_start - 1
        for offset, expected in enumerate(source):
            index = start + offset
            actual = lines[index] if index < len(lines) else None
            if actual != expected:
                found.append(HunkMismatch(number, index + 1, expected.rstrip("\n"),
                                          None if actual is None else actual.rstrip("\n")))
                break
    return found


def apply_exact(text: str, patched_file: PatchedFile) -> str:
    """The post-image of `text`. Callers check `mismatches` first; a mismatch here is a bug."""
    lines = split_lines(text)
    output: list[str] = []
    position = 0
    for hunk in patched_file:
        source, target = _sides(hunk)
        start = hunk.source_start - 1
        if start < position or lines[start:start + len(source)] != source:
            raise ValueError(f"hunk at line {hunk.source_start} of {patched_file.path} does not match")
        output.extend(lines[position:start])
        output.extend(target)
        position = start + len(source)
    output.extend(lines[position:])
    return "".join(output)
