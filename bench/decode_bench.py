#!/usr/bin/env python3
"""Decode-stage micro-benchmark: token2wav (flow + HiFT) the way LightTTS's decode process runs it.

    python3 bench/decode_bench.py CHECKOUT MODEL_DIR [--steps 10,8,5,3] [--precisions fp16,bf16]
                                  [--modes nonstream,stream] [--flows eager,graph,graph-all] [--tokens 250] [--reps 12]
                                  [--stream-reps 3] [--exact-steps 5] [--parts-steps 5] [--parts-reps 3]
                                  [--graph-max-frames 1500] [--out decode.json]

The model is built by the checkout's own decode RPC class, TTS2DecodeModelRpcServer.init_model
(light_tts/server/tts_decode/model_infer/model_rpc.py): CosyVoice2Model(llm, flow, hift, fp16=True),
load(), del llm, hift_cache_dict, and the patch_conditional_cfm import. Each call then builds its
tensors exactly as model_rpc.forward does and ends with .view(-1).cpu().numpy().

Axes:
- steps: the flow-matching Euler steps. On a patched checkout, flow.flow_steps (what --flow_steps sets);
  on an unpatched one, CausalConditionalCFM.forward's n_timesteps is overridden for the call.
  An estimator forward hook counts the calls; every non-streaming call must show exactly `steps`.
- precision: the flow's precision. fp16 is what the server runs (fp16=True is hard-coded in the decode
  process; --data_type only reaches the LLM process, so the LLM's fp16/bf16 setting cannot change this
  stage). bf16 is flow.to(bfloat16) under a bf16 autocast, for comparison only. HiFT stays fp32 in both.
- mode: nonstream = one call with all tokens (stream=False, finalize=True); stream = the chunk schedule
  of decode_req.py (hop 25 + prompt pad, +3 look-ahead, stream=True on every call, the last finalizes).
- flow: eager = the estimator run by PyTorch call by call; graph = CUDA-graph replays of the estimator only
  (the flow-cuda-graph patch; the flow encoder and HiFT eager); graph-all = what the server runs with
  --flow_cuda_graph true: the estimator's, the flow encoder's and HiFT's graphs (the encoder's and HiFT's
  replay for the streaming chunks but the last; the hift-cuda-graph patch). The model is built with
  flow_cuda_graph=True through model_rpc, so the decode process's own capture and fallback run (bf16 gets
  its own estimator graphs, no others). All run on the same model and inputs, by hiding graphs. Only on a
  checkout whose CausalConditionalCFM has capture_cuda_graphs (graph-all: whose encoder and HiFT have
  cuda_graphs too). The capture's time and memory are reported, and for every graph config how many
  estimator steps, encoder calls and HiFT calls were replays.

Two passes after the timing, each eager and graph on the same inputs with the RNG seeded per call (HiFT
draws noise): exactness (max abs and relative error of the mel and the waveform, each graph flow vs eager, and a
second eager pass vs the first, "eager-again": what eager itself varies from run to run; for the
non-streaming call and every streaming chunk, at --tokens and again one token short, where the non-streaming
call and the final chunk are not a multiple of the 50-frame bucket and the graph pads them) and parts (flow encoder, CFM = estimator steps, HiFT and the
rest, each bracketed by a device synchronize, so the parts' sum exceeds the unbracketed time).

Configs run round-robin (the order rotates every repetition) after warm-up; medians and quartiles.
Inputs are random: 75 prompt tokens, a 150x80 prompt mel, a 192-d speaker embedding, `--tokens`
generated tokens (250 = 10 s of audio at 24 kHz).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

try:
    from .tts_load import percentile
except ImportError:  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from tts_load import percentile

HOP = 25              # decode_token_hop_len (tts_decode/manager.py, tts_llm/manager.py)
TOKEN_RATE = 25       # speech tokens per second
SAMPLE_RATE = 24000


# --------------------------------------------------------------------------- pure parts

def stream_schedule(n_tokens: int, prompt_tokens: int, hop: int = HOP, lookahead: int = 3) -> list[dict]:
    """The token2wav calls the decode process makes for one streamed request of n_tokens.

    Mirrors decode_req.py (get_infer_data / update_one_decode) with tts_llm/manager.py's sends: a chunk
    whenever the LLM has hop(+prompt pad on the first)+lookahead tokens past the offset, then one final
    call with everything once the request has finished."""
    if n_tokens < 1:
        raise ValueError("n_tokens must be >= 1")
    pad = int(math.ceil(prompt_tokens / hop) * hop - prompt_tokens)
    calls, offset = [], 0
    while True:
        this_hop = hop + pad if offset == 0 else hop
        end = this_hop + lookahead + offset
        if n_tokens < end:
            break
        calls.append({"prefix": end, "token_offset": offset, "finalize": False})
        offset += this_hop
    calls.append({"prefix": n_tokens, "token_offset": offset, "finalize": True})
    return calls


def rotate(items: list, k: int) -> list:
    k %= max(1, len(items))
    return items[k:] + items[:k]


def summarize(samples: dict[str, list[dict]], audio_s: float) -> dict[str, dict]:
    """samples: config name -> list of {'total_s', 'first_s', 'calls_s'}; returns per-config stats."""
    out = {}
    for name, runs in samples.items():
        tot = [r["total_s"] for r in runs]
        first = [r["first_s"] for r in runs]
        out[name] = {
            "n": len(runs), "median_ms": _ms(percentile(tot, 50)), "p25_ms": _ms(percentile(tot, 25)),
            "p75_ms": _ms(percentile(tot, 75)), "first_call_median_ms": _ms(percentile(first, 50)),
            "ms_per_audio_s": _ms(percentile(tot, 50) / audio_s) if tot else None,
            "estimator_calls": sorted({c for r in runs for c in r.get("est", [])}),
            "graph_replays": sorted({c for r in runs for c in r.get("graphed", [])}),
            # per utterance: flow encoder and HiFT calls that were graph replays
            "encoder_replays": sorted({r["encoder_graphed"] for r in runs if "encoder_graphed" in r}),
            "hift_replays": sorted({r["hift_graphed"] for r in runs if "hift_graphed" in r}),
        }
    return out


def _ms(v):
    return None if v is None else round(v * 1000, 2)


def ratios(stats: dict[str, dict], steps: list[int], precisions: list[str], modes: list[str],
           base_steps: int = 10, flows: tuple[str, ...] = ("eager",)) -> dict:
    """steps/base_steps per precision, mode and flow, bf16/fp16 per steps, mode and flow (median totals),
    and graph/eager. Keys without the flow kind are eager, as before graphs existed."""
    out = {"steps_over_base": {}, "bf16_over_fp16": {}, "first_call_steps_over_base": {},
           "graph_over_eager": graph_ratios(stats), "graph_all_over_graph": graph_ratios(stats, "graph")}
    for flow in flows:
        tag = "" if flow == "eager" else f"/{flow}"
        for mode in modes:
            for prec in precisions:
                base = stats.get(name_of(mode, prec, base_steps, flow))
                if not base:
                    continue
                for s in steps:
                    cur = stats.get(name_of(mode, prec, s, flow))
                    if cur and base["median_ms"]:
                        out["steps_over_base"][f"{mode}/{prec}/{s}{tag}"] = round(cur["median_ms"] / base["median_ms"], 4)
                    if cur and base["first_call_median_ms"]:
                        out["first_call_steps_over_base"][f"{mode}/{prec}/{s}{tag}"] = round(
                            cur["first_call_median_ms"] / base["first_call_median_ms"], 4)
            if "fp16" in precisions and "bf16" in precisions:
                for s in steps:
                    a, b = stats.get(name_of(mode, "fp16", s, flow)), stats.get(name_of(mode, "bf16", s, flow))
                    if a and b and a["median_ms"]:
                        out["bf16_over_fp16"][f"{mode}/{s}{tag}"] = round(b["median_ms"] / a["median_ms"], 4)
    return out


def name_of(mode: str, precision: str, steps: int, flow: str = "eager") -> str:
    return f"{mode}/{precision}/{steps}/{flow}"


def errors(reference, other) -> dict:
    """Max abs error, that over the reference's max abs, and relative L2 of two same-shape arrays."""
    import numpy as np

    ref, got = np.asarray(reference, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if ref.shape != got.shape:
        raise ValueError(f"shapes differ: {ref.shape} vs {got.shape}")
    diff = np.abs(got - ref)
    scale, norm = float(np.abs(ref).max(initial=0.0)), float(np.linalg.norm(ref))
    max_abs = float(diff.max(initial=0.0))
    return {"max_abs": max_abs, "max_rel": max_abs / scale if scale else None,
            "rel_l2": float(np.linalg.norm(got - ref)) / norm if norm else None}


def graph_key_tag(flow: str) -> str:
    """The flow's part of a graph-vs-base key: none for the estimator-only "graph", as before graph-all."""
    return "" if flow == "graph" else f"/{flow}"


def graph_ratios(stats: dict[str, dict], base_flow: str = "eager") -> dict:
    """graph flow / base_flow median per mode, precision and steps, where both were run. Keys of the
    estimator-only flow ("graph") have no flow part, as before graph-all existed."""
    out = {}
    for name, cur in stats.items():
        mode, prec, steps, flow = name.split("/")
        base = stats.get(name_of(mode, prec, int(steps), base_flow))
        if flow not in ("eager", base_flow) and base and base["median_ms"]:
            out[f"{mode}/{prec}/{steps}{graph_key_tag(flow)}"] = {
                "median": round(cur["median_ms"] / base["median_ms"], 4),
                "first_call": round(cur["first_call_median_ms"] / base["first_call_median_ms"], 4)}
    return out


def markdown(stats: dict[str, dict], audio_s: float) -> str:
    lines = [f"| mode | flow precision | steps | graphs | runs | median ms ({audio_s:g} s audio) | p25-p75 ms "
             "| ms per audio s | first call ms | estimator calls/call | of which graph replays "
             "| encoder / HiFT replays per utterance |", "|" + "---|" * 12]
    for name, s in stats.items():
        mode, prec, steps, flow = name.split("/")
        lines.append(f"| {mode} | {prec} | {steps} | {flow} | {s['n']} | {s['median_ms']} | {s['p25_ms']}-{s['p75_ms']} "
                     f"| {s['ms_per_audio_s']} | {s['first_call_median_ms']} | {s['estimator_calls']} "
                     f"| {s.get('graph_replays', [])} | {s.get('encoder_replays', [])} / {s.get('hift_replays', [])} |")
    return "\n".join(lines) + "\n"


def exactness_markdown(exactness: dict) -> str:
    lines = ["| config | call | mel frames | mel max abs | mel max rel | mel rel L2 | wav max abs | wav max rel "
             "| wav rel L2 |", "|" + "---|" * 9]
    for config, calls in exactness.items():
        for i, c in enumerate(calls):
            m, w = c["mel"], c["wav"]
            lines.append(f"| {config} | {i} | {c.get('frames', '')} | {m['max_abs']:.3g} | {_g(m['max_rel'])} "
                         f"| {_g(m['rel_l2'])} "
                         f"| {w['max_abs']:.3g} | {_g(w['max_rel'])} | {_g(w['rel_l2'])} |")
    return "\n".join(lines) + "\n"


def parts_markdown(parts: dict) -> str:
    lines = ["| config | runs | total ms | flow encoder ms | CFM (estimator steps) ms | HiFT ms | rest ms |",
             "|" + "---|" * 7]
    for config, p in parts.items():
        lines.append(f"| {config} | {p['n']} | {p['total_ms']} | {p['encoder_ms']} | {p['cfm_ms']} | {p['hift_ms']} "
                     f"| {p['rest_ms']} |")
    return "\n".join(lines) + "\n"


def _g(v):
    return "-" if v is None else f"{v:.3g}"


# --------------------------------------------------------------------------- the GPU part

def run(checkout: Path, model_dir: Path, steps: list[int], precisions: list[str], modes: list[str],
        n_tokens: int, reps: int, stream_reps: int, warmup: int, seed: int, log=print,
        stream_warmup: int | None = None, flows: tuple[str, ...] = ("eager", "graph", "graph-all"), exact_steps: list[int] = (5,),
        parts_steps: list[int] = (5,), parts_reps: int = 3, graph_max_frames: int = 1500) -> dict:
    checkout = Path(checkout).resolve()
    for p in (str(checkout / "third_party" / "Matcha-TTS"), str(checkout / "cosyvoice"), str(checkout)):
        if p not in sys.path:
            sys.path.insert(0, p)
    import copy
    import inspect

    import torch
    from cosyvoice.cli.model import CosyVoice2Model
    from cosyvoice.flow.flow_matching import CausalConditionalCFM
    from cosyvoice.hifigan.generator import HiFTGenerator
    from cosyvoice.transformer.upsample_encoder import UpsampleConformerEncoder
    from light_tts.server.tts_decode.model_infer.model_rpc import TTS2DecodeModelRpcServer

    patched = "flow_steps" in inspect.signature(CosyVoice2Model.__init__).parameters
    graphs_supported = hasattr(CausalConditionalCFM, "capture_cuda_graphs") and hasattr(CosyVoice2Model, "load_cuda_graph")
    parts_supported = graphs_supported and all(hasattr(c, "capture_cuda_graphs") for c in (UpsampleConformerEncoder, HiFTGenerator))
    if "graph" in flows and not graphs_supported:
        log("[decode] this checkout has no flow CUDA graphs (flow-cuda-graph patch): eager only")
    if "graph-all" in flows and not parts_supported:
        log("[decode] this checkout has no encoder and HiFT CUDA graphs (hift-cuda-graph patch): no graph-all")
    flows = tuple(f for f in flows if f == "eager" or (f == "graph" and graphs_supported) or (f == "graph-all" and parts_supported))
    graph_flows = tuple(f for f in flows if f != "eager")

    capture: dict[str, dict] = {}
    if graph_flows:  # record what the decode process's own load_cuda_graph call returns or raises
        load_cuda_graph = CosyVoice2Model.load_cuda_graph

        def recorded_load_cuda_graph(self, *a, **k):
            try:
                capture["fp16"] = load_cuda_graph(self, *a, **k)
            except Exception as error:
                capture["fp16"] = {"error": f"{type(error).__name__}: {error}"}
                raise
            return capture["fp16"]

        CosyVoice2Model.load_cuda_graph = recorded_load_cuda_graph

    t_load = time.time()
    srv = TTS2DecodeModelRpcServer()
    kv = {"gpu_id": 0, "model_dir": str(model_dir), "port": int(os.environ.get("DECODE_BENCH_PORT", "19199")),
          "shared_cache_capacity": 4, "load_jit": False, "load_trt": False}
    if patched:
        kv["flow_steps"] = 10
    if graph_flows:
        kv["flow_cuda_graph"] = True
        kv["flow_cuda_graph_max_frames"] = graph_max_frames
    srv.init_model(kv)
    base = srv.model
    variants = {"fp16": base}
    graphs = {"fp16": getattr(base.flow.decoder, "graphs", {})}
    # the encoder's (fp16 flow only) and HiFT's (fp32, shared by both precisions) graphs, for graph-all
    part_graphs = {"encoder": base.flow.encoder.cuda_graphs.graphs, "hift": base.hift.cuda_graphs.graphs} if parts_supported else {}
    if "bf16" in precisions:
        m = copy.copy(base)
        base.flow.decoder.graphs = {}  # CUDA graphs cannot be deep-copied; bf16 gets its own below
        if parts_supported:
            base.flow.encoder.cuda_graphs.graphs = {}
        m.flow = copy.deepcopy(base.flow).to(torch.bfloat16)
        base.flow.decoder.graphs = graphs["fp16"]
        m.hift_cache_dict = type(base.hift_cache_dict)(lambda: None)
        variants["bf16"] = m
        if graph_flows:
            try:
                capture["bf16"] = m.flow.decoder.capture_cuda_graphs(graph_max_frames, torch.bfloat16)
            except Exception as error:
                capture["bf16"] = {"error": f"{type(error).__name__}: {error}"}
                log(f"[decode] bf16 CUDA graph capture failed: {capture['bf16']['error']}")
            graphs["bf16"] = m.flow.decoder.graphs
    load_s = time.time() - t_load
    log(f"[decode] model ready in {load_s:.1f} s; checkout is {'patched' if patched else 'unpatched'}; "
        f"flows {','.join(flows)}; CUDA graph capture: {json.dumps(capture)}")
    graph_flows_ok = {prec: bool(graphs.get(prec)) for prec in variants}
    if "graph-all" in flows:
        graph_flows_ok.update({part: bool(g) for part, g in part_graphs.items()})

    est_count = {"n": 0}
    for m in variants.values():
        m.flow.decoder.estimator.register_forward_pre_hook(lambda mod, args: est_count.__setitem__("n", est_count["n"] + 1))

    override = {"steps": None}
    if not patched:  # unpatched: force n_timesteps through the CFM's keyword call (flow.py passes it by name)
        orig_forward = CausalConditionalCFM.forward

        def forward(self, *a, **k):
            if override["steps"] is not None:
                k["n_timesteps"] = override["steps"]
            return orig_forward(self, *a, **k)

        CausalConditionalCFM.forward = forward

    @contextlib.contextmanager
    def precision_ctx(prec):
        if prec != "bf16":
            yield
            return
        orig = torch.cuda.amp.autocast
        torch.cuda.amp.autocast = lambda enabled=True, *a, **k: torch.autocast("cuda", dtype=torch.bfloat16,
                                                                                   enabled=enabled)
        try:
            yield
        finally:
            torch.cuda.amp.autocast = orig

    g = torch.Generator().manual_seed(seed)
    prompt_tokens = 75
    speech_token = torch.randint(0, 6561, (1, prompt_tokens), generator=g, dtype=torch.int32).numpy()
    speech_feat = (torch.randn(prompt_tokens * 2, 80, generator=g) * 2 - 6).numpy()
    spk = torch.randn(1, 192, generator=g).numpy()
    out_ids = torch.randint(0, 6561, (n_tokens,), generator=g).tolist()
    audio_s = n_tokens / TOKEN_RATE

    # per-call hooks of the exactness and parts passes; off during the timing
    probe = {"mel": None, "parts": None}

    def wrap_parts(m):
        def timed(name, fn):
            def inner(*a, **k):
                if probe["parts"] is None:
                    return fn(*a, **k)
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                out = fn(*a, **k)
                torch.cuda.synchronize()
                probe["parts"][name] = probe["parts"].get(name, 0.0) + time.perf_counter() - t0
                return out
            return inner

        flow_inference = m.flow.inference

        def inference(*a, **k):
            mel, cache = flow_inference(*a, **k)
            if probe["mel"] is not None:
                probe["mel"].append(mel.detach().float().cpu().numpy())
            return mel, cache

        m.flow.inference = inference
        m.flow.encoder.forward = timed("encoder", m.flow.encoder.forward)
        m.flow.decoder.forward = timed("cfm", m.flow.decoder.forward)
        if not getattr(m.hift, "_bench_timed", False):  # the bf16 variant shares HiFT with fp16
            m.hift.inference = timed("hift", m.hift.inference)
            m.hift._bench_timed = True

    for m in variants.values():
        wrap_parts(m)

    def one_call(model, ids, offset, rid, stream, finalize):
        # exactly model_rpc.forward's tensor construction and post-processing
        est_count["n"] = 0
        replays = getattr(model.flow.decoder, "graph_replays", 0)
        t0 = time.perf_counter()
        tts = model.token2wav(
            torch.tensor(ids, device="cuda").unsqueeze(0),
            torch.as_tensor(speech_token, device="cuda"),
            torch.as_tensor(speech_feat, device="cuda").unsqueeze(0),
            torch.as_tensor(spk, device="cuda"),
            offset, rid, stream=stream, finalize=finalize, speed=1.0)
        wav = tts.view(-1).cpu().numpy()
        graphed = getattr(model.flow.decoder, "graph_replays", 0) - replays
        return time.perf_counter() - t0, est_count["n"] + graphed, graphed, wav

    counter = {"rid": 0}

    def part_replay_counts(model) -> list[int]:
        """The encoder's and HiFT's graph replays so far (0 where the checkout has none)."""
        return [g.replays for g in (model.flow.encoder.cuda_graphs, model.hift.cuda_graphs)] if parts_supported else [0, 0]

    def utterance(mode, prec, s, flow, seeded=False, tokens=None):
        tokens = tokens or n_tokens
        model = variants[prec]
        if patched:
            model.flow.flow_steps = s
        override["steps"] = s
        if graphs_supported:
            model.flow.decoder.graphs = graphs.get(prec, {}) if flow in ("graph", "graph-all") else {}
        if parts_supported:
            model.flow.encoder.cuda_graphs.graphs = part_graphs["encoder"] if flow == "graph-all" and prec == "fp16" else {}
            model.hift.cuda_graphs.graphs = part_graphs["hift"] if flow == "graph-all" else {}
        replays_before = part_replay_counts(model)
        counter["rid"] += 1
        rid = counter["rid"]
        torch.cuda.synchronize()
        calls, ests, replayed, wavs, samples = [], [], [], [], 0
        plan = ([{"prefix": tokens, "token_offset": 0, "finalize": True}] if mode == "nonstream"
                else stream_schedule(tokens, prompt_tokens))
        with precision_ctx(prec), torch.no_grad():
            for i, c in enumerate(plan):
                if seeded:
                    torch.manual_seed(seed + i)  # HiFT draws noise: the same draws for eager and graph
                dt, est, graphed, wav = one_call(model, out_ids[:c["prefix"]], c["token_offset"], rid,
                                                 mode == "stream", c["finalize"])
                calls.append(dt)
                ests.append(est)
                replayed.append(graphed)
                wavs.append(wav)
                samples += wav.shape[0]
            model.hift_cache_dict.pop(rid, None)  # model_rpc.forward pops after the final call
        replays_after = part_replay_counts(model)
        return {"total_s": sum(calls), "first_s": calls[0], "calls_s": calls, "est": ests, "graphed": replayed,
                "samples": samples, "wavs": wavs, "encoder_graphed": replays_after[0] - replays_before[0],
                "hift_graphed": replays_after[1] - replays_before[1]}

    def part_replays(mode, prec, flow) -> tuple[int, int]:
        """How many calls of an utterance should replay the encoder's / HiFT's graphs (graph-all), from
        what the decode process sends, not from what was captured (a capture of the wrong shapes must show
        here): the encoder for every streaming chunk with look-ahead context (the fp16 flow only); HiFT for
        the first chunk's shapes (hop + prompt pad tokens, no cache) and the middle chunks' one (hop tokens
        after the 8-frame mel cache, 3840 cached samples), wherever a call has one of them."""
        if flow != "graph-all":
            return 0, 0
        plan = ([{"prefix": n_tokens, "token_offset": 0, "finalize": True}] if mode == "nonstream"
                else stream_schedule(n_tokens, prompt_tokens))
        hift_shapes = {(2 * (HOP + pad), 0) for pad in range(HOP)} | {(2 * HOP + 8, 8 * 480)}
        n_encoder = n_hift = 0
        for i, c in enumerate(plan):
            context = 0 if c["finalize"] else 3
            n_encoder += (mode == "stream" and context and prec == "fp16"
                          and (prompt_tokens + c["prefix"] - context) * 2 <= graph_max_frames)
            frames = 2 * (c["prefix"] - context - c["token_offset"]) + (8 if i else 0)
            n_hift += (frames, 8 * 480 if i else 0) in hift_shapes
        return n_encoder, n_hift

    samples: dict[str, list[dict]] = {}
    t_run = time.time()
    for mode in modes:
        configs = [(mode, p, s, f) for p in precisions for s in steps for f in flows]
        for cfg in configs:
            for _ in range(warmup if mode == "nonstream" or stream_warmup is None else stream_warmup):
                utterance(*cfg)
        n = reps if mode == "nonstream" else stream_reps
        for r in range(n):
            for cfg in rotate(configs, r):
                res = utterance(*cfg)
                res.pop("wavs")
                samples.setdefault(name_of(*cfg), []).append(res)
            log(f"[decode] {mode} repetition {r + 1}/{n} done")
    stats = summarize(samples, audio_s)

    exactness: dict[str, list[dict]] = {}
    if graph_flows:
        for mode in modes:
            for prec in precisions:
                # one token short, the non-streaming call and the final chunk are not a multiple of the
                # 50-frame bucket (75 prompt tokens + 250 = 650 frames), so the graph pads them
                for s, (tokens, tag) in itertools.product(exact_steps, ((n_tokens, ""), (n_tokens - 1, "/padded"))):
                    runs = {}
                    # eager twice: what eager itself varies from run to run, the floor of any comparison
                    for label, flow in [("eager", "eager"), ("eager-again", "eager")] + [(f, f) for f in graph_flows]:
                        probe["mel"] = []
                        res = utterance(mode, prec, s, flow, seeded=True, tokens=tokens)
                        runs[label] = (probe["mel"], res["wavs"])
                        probe["mel"] = None
                    for flow in ("eager-again",) + graph_flows:
                        exactness[f"{mode}/{prec}/{s}{tag}{graph_key_tag(flow)}"] = [
                            {"mel": errors(me, mg), "wav": errors(we, wg), "frames": int(me.shape[-1])}
                            for me, mg, we, wg in zip(runs["eager"][0], runs[flow][0], runs["eager"][1], runs[flow][1])]
        log("[decode] exactness pass done")

    parts: dict[str, dict] = {}
    for mode in modes:
        for prec in precisions:
            for s in parts_steps:
                for flow in flows:
                    rows = []
                    for _ in range(parts_reps):
                        probe["parts"] = {}
                        res = utterance(mode, prec, s, flow)
                        rows.append({"total": res["total_s"], **probe["parts"]})
                        probe["parts"] = None
                    med = {k: percentile([r.get(k, 0.0) for r in rows], 50) for k in ("total", "encoder", "cfm", "hift")}
                    parts[name_of(mode, prec, s, flow)] = {
                        "n": len(rows), "total_ms": _ms(med["total"]), "encoder_ms": _ms(med["encoder"]),
                        "cfm_ms": _ms(med["cfm"]), "hift_ms": _ms(med["hift"]),
                        "rest_ms": _ms(med["total"] - med["encoder"] - med["cfm"] - med["hift"])}
    if parts:
        log("[decode] parts pass done")

    problems = []
    for name, st in stats.items():
        mode, prec, stp, flow = name.split("/")
        if mode == "nonstream" and st["estimator_calls"] != [int(stp)]:
            problems.append(f"{name}: estimator calls {st['estimator_calls']}, expected [{stp}]")
        if flow in ("graph", "graph-all") and st["graph_replays"] != sorted(set(st["estimator_calls"])):
            problems.append(f"{name}: graph replays {st['graph_replays']} but estimator calls {st['estimator_calls']}: "
                            "some steps ran eagerly (see the capture result)")
        expected = part_replays(mode, prec, flow)
        if [st["encoder_replays"], st["hift_replays"]] != [[expected[0]], [expected[1]]]:
            problems.append(f"{name}: encoder / HiFT graph replays per utterance {st['encoder_replays']} / "
                            f"{st['hift_replays']}, expected {expected[0]} / {expected[1]} (see the capture result)")
    if graph_flows and not all(graph_flows_ok.values()):
        problems.append(f"CUDA graphs missing for {[p for p, ok in graph_flows_ok.items() if not ok]}: {json.dumps(capture)}")
    return {
        "schema": "lighttts-a10/decode_bench/2", "checkout": str(checkout), "patched_checkout": patched,
        "model_dir": str(model_dir), "device": torch.cuda.get_device_name(), "torch": torch.__version__,
        "n_tokens": n_tokens, "audio_s": audio_s, "prompt_tokens": prompt_tokens, "reps": reps,
        "stream_reps": stream_reps, "warmup": warmup, "stream_warmup": stream_warmup, "steps": steps, "precisions": precisions, "modes": modes,
        "flows": list(flows), "graph_max_frames": graph_max_frames, "graph_capture": capture,
        "graphs_used": graph_flows_ok if graph_flows else {},
        "stream_schedule": stream_schedule(n_tokens, prompt_tokens), "load_s": round(load_s, 1),
        "run_s": round(time.time() - t_run, 1), "stats": stats,
        "ratios": ratios(stats, steps, precisions, modes, flows=flows), "exactness": exactness, "parts": parts,
        "problems": problems,
        "raw": {k: [{"total_s": r["total_s"], "calls_s": r["calls_s"], "samples": r["samples"],
                     "encoder_graphed": r["encoder_graphed"], "hift_graphed": r["hift_graphed"]} for r in v]
                for k, v in samples.items()},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkout", type=Path)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--steps", default="10,8,5,3")
    ap.add_argument("--precisions", default="fp16,bf16")
    ap.add_argument("--modes", default="nonstream,stream")
    ap.add_argument("--tokens", type=int, default=250)
    ap.add_argument("--reps", type=int, default=12, help="non-streaming repetitions per config")
    ap.add_argument("--stream-reps", type=int, default=3, help="streamed utterances per config")
    ap.add_argument("--warmup", type=int, default=2, help="unrecorded utterances per config first")
    ap.add_argument("--stream-warmup", type=int, default=None, help="the same for stream (default: --warmup)")
    ap.add_argument("--seed", type=int, default=1986)
    ap.add_argument("--flows", default="eager,graph,graph-all",
                    help="eager; graph (the estimator's CUDA graphs); graph-all (also the flow encoder's and HiFT's: the server's)")
    ap.add_argument("--graph-max-frames", type=int, default=1500, help="largest CUDA-graph bucket, in mel frames")
    ap.add_argument("--exact-steps", default="5", help="step counts of the graph-vs-eager exactness pass ('' skips it)")
    ap.add_argument("--parts-steps", default="5", help="step counts of the per-part timing pass ('' skips it)")
    ap.add_argument("--parts-reps", type=int, default=3, help="utterances per config in the per-part pass")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    steps = [int(x) for x in args.steps.split(",")]
    precisions = [x for x in args.precisions.split(",") if x]
    modes = [x for x in args.modes.split(",") if x]
    flows = tuple(x for x in args.flows.split(",") if x)
    exact_steps = [int(x) for x in args.exact_steps.split(",") if x]
    parts_steps = [int(x) for x in args.parts_steps.split(",") if x]
    if any(s < 1 for s in steps + exact_steps + parts_steps) or not set(precisions) <= {"fp16", "bf16"} \
            or not set(modes) <= {"nonstream", "stream"} or not flows or not set(flows) <= {"eager", "graph", "graph-all"}:
        ap.error("steps >= 1, precisions from fp16,bf16, modes from nonstream,stream, flows from eager,graph,graph-all")
    if args.graph_max_frames < 50 or args.graph_max_frames % 50:
        ap.error("--graph-max-frames must be a positive multiple of 50")
    if 10 not in steps:
        print("decode_bench: note: 10 is not in --steps, so no ratios to 10 steps", file=sys.stderr)
    res = run(args.checkout, args.model_dir, steps, precisions, modes, args.tokens, args.reps, args.stream_reps,
              args.warmup, args.seed, log=lambda s: print(s, file=sys.stderr, flush=True),
              stream_warmup=args.stream_warmup, flows=flows, exact_steps=exact_steps, parts_steps=parts_steps,
              parts_reps=args.parts_reps, graph_max_frames=args.graph_max_frames)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)
    print(f"CUDA graphs: used {json.dumps(res['graphs_used'])}; capture {json.dumps(res['graph_capture'])}")
    print(markdown(res["stats"], res["audio_s"]))
    if res["exactness"]:
        print("graph vs eager, same inputs and RNG:")
        print(exactness_markdown(res["exactness"]))
    if res["parts"]:
        print("parts (each bracketed by a device synchronize):")
        print(parts_markdown(res["parts"]))
    print(json.dumps(res["ratios"], indent=1))
    for p in res["problems"]:
        print(f"PROBLEM: {p}")
    return 1 if res["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
