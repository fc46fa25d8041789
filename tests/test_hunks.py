from unidiff import PatchSet

from lighttts_a10.hunks import apply_exact, mismatches, split_lines

DIFF = """\
--- a/f.py
+++ b/f.py
@@ -2,3 +2,3 @@
 b
-c
+C
 d
@@ -8,2 +8,3 @@
 h
-i
\\ No newline at end of file
+i
+j
\\ No newline at end of file
"""
TEXT = "a\nb\nc\nd\ne\nf\ng\nh\ni"


def patched_file():
    return PatchSet(DIFF)[0]


def test_split_lines_splits_on_newline_only():
    assert split_lines("a\x0cb\nc\r\nd") == ["a\x0cb\n", "c\r\n", "d"]
    assert split_lines("a\n") == ["a\n"]
    assert split_lines("") == []


def test_apply_exact_honours_missing_final_newline():
    assert mismatches(TEXT, patched_file()) == []
    assert apply_exact(TEXT, patched_file()) == "a\nb\nC\nd\ne\nf\ng\nh\ni\nj"


def test_a_shifted_hunk_is_a_mismatch_not_an_offset():
    shifted = "x\n" + TEXT  # every hunk would still apply with an offset of 1
    found = mismatches(shifted, patched_file())
    assert [(m.hunk, m.line) for m in found] == [(1, 2), (2, 8)]
    assert found[0].expected == "b" and found[0].found == "a"


def test_missing_final_newline_is_part_of_the_match():
    found = mismatches(TEXT + "\n", patched_file())
    assert [(m.hunk, m.expected, m.found) for m in found] == [(2, "i", "i")]


def test_file_too_short_reports_end_of_file():
    found = mismatches("a\nb\nc\nd\n", patched_file())
    assert found[-1].hunk == 2 and found[-1].found is None
