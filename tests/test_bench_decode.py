"""bench/decode_bench.py: the chunk schedule and the statistics (the GPU part runs only on the device)."""

from __future__ import annotations

import contextlib
import importlib
import math
import re
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import build_model_dir as bmd  # noqa: E402
from bench import decode_bench as db  # noqa: E402
from conftest import UPSTREAM_VARIABLES, upstream_checkout  # noqa: E402


@contextlib.contextmanager
def upstream_decode_req_module(checkout: Path):
    """light_tts/server/tts_decode/decode_req.py imported from the checkout itself.

    Two stubs, no more: the package light_tts.server (its __init__ starts the server's shared-memory
    imports, which need easydict and the rest of LightTTS's requirements) is registered bare, so its
    subpackages load from the checkout without it; and light_tts.server.core.objs, from which
    decode_req.py imports Req only for a type annotation. sys.modules is put back as it was on exit."""
    saved = dict(sys.modules)
    for name in [n for n in saved if n == "light_tts" or n.startswith("light_tts.")]:
        del sys.modules[name]
    server = types.ModuleType("light_tts.server")
    server.__path__ = [str(checkout / "light_tts/server")]
    objs = types.ModuleType("light_tts.server.core.objs")
    objs.Req = object
    sys.modules.update({"light_tts.server": server, "light_tts.server.core.objs": objs})
    sys.path.insert(0, str(checkout))
    try:
        module = importlib.import_module("light_tts.server.tts_decode.decode_req")
        assert Path(module.__file__) == checkout / "light_tts/server/tts_decode/decode_req.py"
        yield module
    finally:
        sys.path.remove(str(checkout))
        for name in set(sys.modules) - set(saved):
            del sys.modules[name]
        sys.modules.update(saved)


class FinishedStreamReq:
    """The fields of a streamed Req that DecodeReq reads, once its LLM has finished with n_tokens."""

    def __init__(self, n_tokens: int, prompt_token_pad: int) -> None:
        self.request_id, self.speech_index, self.stream = 1, 0, True
        self.prompt_token_pad = prompt_token_pad
        self.output_ids = list(range(1, n_tokens + 1))  # no eos (0) among them
        self.finish_status = types.SimpleNamespace(is_finished=lambda: True)

    def get_output_len(self) -> int:
        return len(self.output_ids)


@pytest.fixture(scope="module", params=sorted(UPSTREAM_VARIABLES))
def upstream_decode(request):
    """Upstream's DecodeReq and the constants its callers give it, read from each pin's checkout."""
    checkout = upstream_checkout(request.param)
    manager = (checkout / "light_tts/server/tts_decode/manager.py").read_text()
    hop = int(re.search(r"self\.decode_token_hop_len = (\d+)", manager).group(1))
    lookahead = int(re.search(r"pre_lookahead_len: (\d+)", bmd.yaml_path(checkout).read_text()).group(1))
    encode = " ".join((checkout / "light_tts/server/tts_encode/manager.py").read_text().split())
    # the first chunk's pad, as tts_encode/manager.py computes it (math.ceil below is its np.ceil)
    assert "np.ceil(speech_token.size / self.token_hop_len) * self.token_hop_len - speech_token.size" in encode
    with upstream_decode_req_module(checkout) as module:
        decode_req_class = module.DecodeReq  # its methods need nothing else from the package
    return decode_req_class, hop, lookahead


@pytest.mark.parametrize("n_tokens,prompt", [(250, 75), (200, 75), (103, 75), (28, 75), (1, 75), (250, 60), (128, 50),
                                             (300, 1)])
def test_stream_schedule_matches_upstreams_decode_req(upstream_decode, n_tokens, prompt):
    decode_req_class, hop, lookahead = upstream_decode
    assert (hop, lookahead) == (db.HOP, 3)  # the schedule's defaults are upstream's values
    req = decode_req_class(FinishedStreamReq(n_tokens, int(math.ceil(prompt / hop) * hop - prompt)), hop, lookahead)
    calls = []
    while not req.finish_stream and len(calls) <= n_tokens:
        output_ids, _, _, token_offset, finalize = req.get_infer_data()
        calls.append((len(output_ids), token_offset, finalize))
        req.update_one_decode(finalize)
    got = [(c["prefix"], c["token_offset"], c["finalize"]) for c in db.stream_schedule(n_tokens, prompt)]
    assert got == calls
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
        "stream/fp16/5/graph": [{"total_s": 0.6, "first_s": 0.08, "est": [5], "graphed": [5],
                                 "encoder_graphed": 0, "hift_graphed": 0}],
        "stream/fp16/5/graph-all": [{"total_s": 0.45, "first_s": 0.06, "est": [5], "graphed": [5],
                                     "encoder_graphed": 9, "hift_graphed": 9}],
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
    assert r["graph_over_eager"] == {"nonstream/fp16/5": {"median": 0.25, "first_call": 0.25}}  # no stream eager
    assert r["graph_all_over_graph"] == {"stream/fp16/5/graph-all": {"median": 0.75, "first_call": 0.75}}
    assert stats["stream/fp16/5/graph-all"]["encoder_replays"] == [9] == stats["stream/fp16/5/graph-all"]["hift_replays"]
    assert stats["nonstream/fp16/5/graph"]["encoder_replays"] == []  # not recorded: not invented
    table = db.markdown(stats, 10.0)
    assert "| nonstream | fp16 | 5 | eager | 2 | 600.0 |" in table
    assert "| nonstream | fp16 | 5 | graph | 1 | 150.0 |" in table
    assert table.rstrip().endswith("| stream | fp16 | 5 | graph-all | 1 | 450.0 | 450.0-450.0 | 45.0 | 60.0 | [5] | [5] | [9] / [9] |")


def test_errors_of_graph_against_eager():
    assert db.errors([1.0, -2.0, 0.5], [1.0, -2.0, 0.5]) == {"max_abs": 0.0, "max_rel": 0.0, "rel_l2": 0.0}
    e = db.errors([[3.0, -4.0]], [[3.0, -4.5]])
    assert e["max_abs"] == 0.5 and e["max_rel"] == pytest.approx(0.125) and e["rel_l2"] == pytest.approx(0.1)
    assert db.errors([0.0], [0.0])["max_rel"] is None  # no scale: no ratio invented
    with pytest.raises(ValueError, match="shapes differ"):
        db.errors([1.0, 2.0], [1.0])
    table = db.exactness_markdown({"stream/fp16/5/padded": [{"mel": e, "wav": db.errors([1.0], [1.0]), "frames": 648}]})
    assert "| stream/fp16/5/padded | 0 | 648 | 0.5 | 0.125 | 0.1 | 0 | 0 | 0 |" in table
    parts = db.parts_markdown({"nonstream/fp16/5/graph": {"n": 3, "total_ms": 90.0, "encoder_ms": 20.0, "cfm_ms": 45.0,
                                                          "hift_ms": 18.0, "rest_ms": 7.0}})
    assert "| nonstream/fp16/5/graph | 3 | 90.0 | 20.0 | 45.0 | 18.0 | 7.0 |" in parts


def test_rotate_changes_who_goes_first():
    assert db.rotate([1, 2, 3], 1) == [2, 3, 1] and db.rotate([1, 2, 3], 3) == [1, 2, 3] and db.rotate([], 2) == []
