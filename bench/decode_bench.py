#!/usr/bin/env python3
"""Decode-stage micro-benchmark: token2wav (flow + HiFT) the way LightTTS's decode process runs it.

    python3 bench/decode_bench.py CHECKOUT MODEL_DIR [--steps 10,8,5,3] [--precisions fp16,bf16]
                                  [--modes nonstream,stream] [--tokens 250] [--reps 12] [--stream-reps 3]
                                  [--out decode.json]

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

Configs run round-robin (the order rotates every repetition) after warm-up; medians and quartiles.
Inputs are random: 75 prompt tokens, a 150x80 prompt mel, a 192-d speaker embedding, `--tokens`
generated tokens (250 = 10 s of audio at 24 kHz).
"""

from __future__ import annotations

import argparse
import contextlib
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
        }
    return out


def _ms(v):
    return None if v is None else round(v * 1000, 2)


def ratios(stats: dict[str, dict], steps: list[int], precisions: list[str], modes: list[str],
           base_steps: int = 10) -> dict:
    """steps/base_steps per precision and mode, and bf16/fp16 per steps and mode (median totals)."""
    out = {"steps_over_base": {}, "bf16_over_fp16": {}, "first_call_steps_over_base": {}}
    for mode in modes:
        for prec in precisions:
            base = stats.get(name_of(mode, prec, base_steps))
            if not base:
                continue
            for s in steps:
                cur = stats.get(name_of(mode, prec, s))
                if cur and base["median_ms"]:
                    out["steps_over_base"][f"{mode}/{prec}/{s}"] = round(cur["median_ms"] / base["median_ms"], 4)
                if cur and base["first_call_median_ms"]:
                    out["first_call_steps_over_base"][f"{mode}/{prec}/{s}"] = round(
                        cur["first_call_median_ms"] / base["first_call_median_ms"], 4)
        if "fp16" in precisions and "bf16" in precisions:
            for s in steps:
                a, b = stats.get(name_of(mode, "fp16", s)), stats.get(name_of(mode, "bf16", s))
                if a and b and a["median_ms"]:
                    out["bf16_over_fp16"][f"{mode}/{s}"] = round(b["median_ms"] / a["median_ms"], 4)
    return out


def name_of(mode: str, precision: str, steps: int) -> str:
    return f"{mode}/{precision}/{steps}"


def markdown(stats: dict[str, dict], audio_s: float) -> str:
    lines = [f"| mode | flow precision | steps | runs | median ms ({audio_s:g} s audio) | p25-p75 ms | ms per audio s "
             "| first call ms | estimator calls/call |", "|" + "---|" * 9]
    for name, s in stats.items():
        mode, prec, steps = name.split("/")
        lines.append(f"| {mode} | {prec} | {steps} | {s['n']} | {s['median_ms']} | {s['p25_ms']}-{s['p75_ms']} "
                     f"| {s['ms_per_audio_s']} | {s['first_call_median_ms']} | {s['estimator_calls']} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the GPU part

def run(checkout: Path, model_dir: Path, steps: list[int], precisions: list[str], modes: list[str],
        n_tokens: int, reps: int, stream_reps: int, warmup: int, seed: int, log=print,
        stream_warmup: int | None = None) -> dict:
    checkout = Path(checkout).resolve()
    for p in (str(checkout / "third_party" / "Matcha-TTS"), str(checkout / "cosyvoice"), str(checkout)):
        if p not in sys.path:
            sys.path.insert(0, p)
    import copy
    import inspect

    import numpy as np
    import torch
    from cosyvoice.cli.model import CosyVoice2Model
    from cosyvoice.flow.flow_matching import CausalConditionalCFM
    from light_tts.server.tts_decode.model_infer.model_rpc import TTS2DecodeModelRpcServer

    patched = "flow_steps" in inspect.signature(CosyVoice2Model.__init__).parameters
    t_load = time.time()
    srv = TTS2DecodeModelRpcServer()
    kv = {"gpu_id": 0, "model_dir": str(model_dir), "port": int(os.environ.get("DECODE_BENCH_PORT", "19199")),
          "shared_cache_capacity": 4, "load_jit": False, "load_trt": False}
    if patched:
        kv["flow_steps"] = 10
    srv.init_model(kv)
    base = srv.model
    variants = {"fp16": base}
    if "bf16" in precisions:
        m = copy.copy(base)
        m.flow = copy.deepcopy(base.flow).to(torch.bfloat16)
        m.hift_cache_dict = type(base.hift_cache_dict)(lambda: None)
        variants["bf16"] = m
    load_s = time.time() - t_load
    log(f"[decode] model ready in {load_s:.1f} s; checkout is {'patched' if patched else 'unpatched'}")

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

    def one_call(model, ids, offset, rid, stream, finalize):
        # exactly model_rpc.forward's tensor construction and post-processing
        est_count["n"] = 0
        t0 = time.perf_counter()
        tts = model.token2wav(
            torch.tensor(ids, device="cuda").unsqueeze(0),
            torch.as_tensor(speech_token, device="cuda"),
            torch.as_tensor(speech_feat, device="cuda").unsqueeze(0),
            torch.as_tensor(spk, device="cuda"),
            offset, rid, stream=stream, finalize=finalize, speed=1.0)
        wav = tts.view(-1).cpu().numpy()
        return time.perf_counter() - t0, est_count["n"], wav.shape[0]

    counter = {"rid": 0}

    def utterance(mode, prec, s):
        model = variants[prec]
        if patched:
            model.flow.flow_steps = s
        override["steps"] = s
        counter["rid"] += 1
        rid = counter["rid"]
        torch.cuda.synchronize()
        with precision_ctx(prec), torch.no_grad():
            if mode == "nonstream":
                dt, est, n = one_call(model, out_ids, 0, rid, False, True)
                calls, ests, samples = [dt], [est], n
            else:
                calls, ests, samples = [], [], 0
                for c in stream_schedule(n_tokens, prompt_tokens):
                    dt, est, n = one_call(model, out_ids[:c["prefix"]], c["token_offset"], rid, True, c["finalize"])
                    calls.append(dt)
                    ests.append(est)
                    samples += n
            model.hift_cache_dict.pop(rid, None)  # model_rpc.forward pops after the final call
        return {"total_s": sum(calls), "first_s": calls[0], "calls_s": calls, "est": ests, "samples": samples}

    samples: dict[str, list[dict]] = {}
    t_run = time.time()
    for mode in modes:
        configs = [(mode, p, s) for p in precisions for s in steps]
        for cfg in configs:
            for _ in range(warmup if mode == "nonstream" or stream_warmup is None else stream_warmup):
                utterance(*cfg)
        n = reps if mode == "nonstream" else stream_reps
        for r in range(n):
            for cfg in rotate(configs, r):
                res = utterance(*cfg)
                samples.setdefault(name_of(*cfg), []).append(res)
            log(f"[decode] {mode} repetition {r + 1}/{n} done")
    stats = summarize(samples, audio_s)
    problems = []
    for name, s in stats.items():
        mode, prec, st = name.split("/")
        if mode == "nonstream" and s["estimator_calls"] != [int(st)]:
            problems.append(f"{name}: estimator calls {s['estimator_calls']}, expected [{st}]")
    return {
        "schema": "lighttts-a10/decode_bench/1", "checkout": str(checkout), "patched_checkout": patched,
        "model_dir": str(model_dir), "device": torch.cuda.get_device_name(), "torch": torch.__version__,
        "n_tokens": n_tokens, "audio_s": audio_s, "prompt_tokens": prompt_tokens, "reps": reps,
        "stream_reps": stream_reps, "warmup": warmup, "stream_warmup": stream_warmup, "steps": steps, "precisions": precisions, "modes": modes,
        "stream_schedule": stream_schedule(n_tokens, prompt_tokens), "load_s": round(load_s, 1),
        "run_s": round(time.time() - t_run, 1), "stats": stats,
        "ratios": ratios(stats, steps, precisions, modes), "problems": problems,
        "raw": {k: [{"total_s": r["total_s"], "calls_s": r["calls_s"], "samples": r["samples"]} for r in v]
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
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    steps = [int(x) for x in args.steps.split(",")]
    precisions = [x for x in args.precisions.split(",") if x]
    modes = [x for x in args.modes.split(",") if x]
    if any(s < 1 for s in steps) or not set(precisions) <= {"fp16", "bf16"} or not set(modes) <= {"nonstream", "stream"}:
        ap.error("steps >= 1, precisions from fp16,bf16, modes from nonstream,stream")
    if 10 not in steps:
        print("decode_bench: note: 10 is not in --steps, so no ratios to 10 steps", file=sys.stderr)
    res = run(args.checkout, args.model_dir, steps, precisions, modes, args.tokens, args.reps, args.stream_reps,
              args.warmup, args.seed, log=lambda s: print(s, file=sys.stderr, flush=True),
              stream_warmup=args.stream_warmup)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)
    print(markdown(res["stats"], res["audio_s"]))
    print(json.dumps(res["ratios"], indent=1))
    for p in res["problems"]:
        print(f"PROBLEM: {p}")
    return 1 if res["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
