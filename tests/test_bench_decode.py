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
        "nonstream/fp16/10": [{"total_s": 1.0, "first_s": 1.0, "est": [10]}, {"total_s": 1.2, "first_s": 1.2, "est": [10]}],
        "nonstream/fp16/5": [{"total_s": 0.5, "first_s": 0.5, "est": [5]}, {"total_s": 0.7, "first_s": 0.7, "est": [5]}],
        "nonstream/bf16/10": [{"total_s": 2.2, "first_s": 2.2, "est": [10]}],
    }
    stats = db.summarize(samples, audio_s=10.0)
    assert stats["nonstream/fp16/10"]["median_ms"] == 1100.0
    assert stats["nonstream/fp16/10"]["ms_per_audio_s"] == 110.0
    assert stats["nonstream/fp16/5"]["estimator_calls"] == [5]
    r = db.ratios(stats, [10, 5], ["fp16", "bf16"], ["nonstream"])
    assert r["steps_over_base"]["nonstream/fp16/5"] == pytest.approx(0.6 / 1.1, abs=1e-4)
    assert r["bf16_over_fp16"]["nonstream/10"] == 2.0
    assert "nonstream/bf16/5" not in r["steps_over_base"]  # no bf16/5 sample: no ratio invented
    table = db.markdown(stats, 10.0)
    assert "| nonstream | fp16 | 5 | 2 | 600.0 |" in table


def test_rotate_changes_who_goes_first():
    assert db.rotate([1, 2, 3], 1) == [2, 3, 1] and db.rotate([1, 2, 3], 3) == [1, 2, 3] and db.rotate([], 2) == []
