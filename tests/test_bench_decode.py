"""bench/decode_bench.py: the chunk schedule and the statistics (the GPU part runs only on the device)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import decode_bench as db  # noqa: E402


def replay_decode_req(n_tokens: int, prompt_tokens: int, hop: int = 25, lookahead: int = 3) -> list[tuple]:
    """What LightTTS 30bc57b's decode_req.py does for a streamed request whose LLM has finished with
    n_tokens: get_infer_data / update_one_decode until finalize (written from its logic, step by step)."""
    pad = int(math.ceil(prompt_tokens / hop) * hop - prompt_tokens)  # tts_encode/manager.py
    offset, calls = 0, []
    while True:
        this_hop = hop + pad if offset == 0 else hop
        end = this_hop + lookahead + offset
        if n_tokens >= end:
            calls.append((end, offset, False))
        else:
            calls.append((n_tokens, offset, True))
            return calls
        offset += this_hop


@pytest.mark.parametrize("n_tokens,prompt", [(250, 75), (200, 75), (103, 75), (28, 75), (1, 75), (250, 60), (128, 50)])
def test_stream_schedule_matches_decode_req(n_tokens, prompt):
    got = [(c["prefix"], c["token_offset"], c["finalize"]) for c in db.stream_schedule(n_tokens, prompt)]
    assert got == replay_decode_req(n_tokens, prompt)
    assert got[-1][0] == n_tokens and got[-1][2] and not any(f for _, _, f in got[:-1])


def test_stream_schedule_first_chunk_pads_to_the_hop():
    calls = db.stream_schedule(250, 75)
    # 75 prompt tokens are already 3 hops: no pad, so chunks end at 28, 53, 78, ...
    assert [c["prefix"] for c in calls[:3]] == [28, 53, 78]
    calls = db.stream_schedule(250, 60)  # pad 15: first chunk is 25 + 15 + 3
    assert calls[0]["prefix"] == 43 and calls[1]["token_offset"] == 40
    with pytest.raises(ValueError):
        db.stream_schedule(0, 75)


def test_summary_and_ratios():
    samples = {
        "nonstream/fp16/10/eager": [{"total_s": 1.0, "first_s": 1.0, "est": [10]}, {"total_s": 1.2, "first_s": 1.2, "est": [10]}],
        "nonstream/fp16/5/eager": [{"total_s": 0.5, "first_s": 0.5, "est": [5]}, {"total_s": 0.7, "first_s": 0.7, "est": [5]}],
        "nonstream/bf16/10/eager": [{"total_s": 2.2, "first_s": 2.2, "est": [10]}],
        "nonstream/fp16/5/graph": [{"total_s": 0.15, "first_s": 0.15, "est": [5], "graphed": [5]}],
    }
    stats = db.summarize(samples, audio_s=10.0)
    assert stats["nonstream/fp16/10/eager"]["median_ms"] == 1100.0
    assert stats["nonstream/fp16/10/eager"]["ms_per_audio_s"] == 110.0
    assert stats["nonstream/fp16/5/eager"]["estimator_calls"] == [5]
    assert stats["nonstream/fp16/5/graph"]["graph_replays"] == [5] and stats["nonstream/fp16/5/eager"]["graph_replays"] == []
    r = db.ratios(stats, [10, 5], ["fp16", "bf16"], ["nonstream"], flows=("eager", "graph"))
    assert r["steps_over_base"]["nonstream/fp16/5"] == pytest.approx(0.6 / 1.1, abs=1e-4)
    assert r["bf16_over_fp16"]["nonstream/10"] == 2.0
    assert "nonstream/bf16/5" not in r["steps_over_base"]  # no bf16/5 sample: no ratio invented
    assert "nonstream/fp16/5/graph" not in r["steps_over_base"]  # no graph/10 sample either
    assert r["graph_over_eager"] == {"nonstream/fp16/5": {"median": 0.25, "first_call": 0.25}}
    table = db.markdown(stats, 10.0)
    assert "| nonstream | fp16 | 5 | eager | 2 | 600.0 |" in table
    assert "| nonstream | fp16 | 5 | graph | 1 | 150.0 |" in table and table.rstrip().endswith("| [5] | [5] |")


def test_errors_of_graph_against_eager():
    assert db.errors([1.0, -2.0, 0.5], [1.0, -2.0, 0.5]) == {"max_abs": 0.0, "max_rel": 0.0, "rel_l2": 0.0}
    e = db.errors([[3.0, -4.0]], [[3.0, -4.5]])
    assert e["max_abs"] == 0.5 and e["max_rel"] == pytest.approx(0.125) and e["rel_l2"] == pytest.approx(0.1)
    assert db.errors([0.0], [0.0])["max_rel"] is None  # no scale: no ratio invented
    with pytest.raises(ValueError, match="shapes differ"):
        db.errors([1.0, 2.0], [1.0])
    table = db.exactness_markdown({"stream/fp16/5": [{"mel": e, "wav": db.errors([1.0], [1.0])}]})
    assert "| stream/fp16/5 | 0 | 0.5 | 0.125 | 0.1 | 0 | 0 | 0 |" in table
    parts = db.parts_markdown({"nonstream/fp16/5/graph": {"n": 3, "total_ms": 90.0, "encoder_ms": 20.0, "cfm_ms": 45.0,
                                                          "hift_ms": 18.0, "rest_ms": 7.0}})
    assert "| nonstream/fp16/5/graph | 3 | 90.0 | 20.0 | 45.0 | 18.0 | 7.0 |" in parts


def test_rotate_changes_who_goes_first():
    assert db.rotate([1, 2, 3], 1) == [2, 3, 1] and db.rotate([1, 2, 3], 3) == [1, 2, 3] and db.rotate([], 2) == []
