#!/usr/bin/env python3
"""Summarize the probe logs (bench/stubs/lighttts_bench_probe.py) of one or more servers.

    python3 -m bench.probe_report PROBE_DIR [--json OUT.json] [--base unpatched --new patched]

Per server tag it reports:
- decode process: flow_steps attribute, flow dtype, estimator calls per token2wav call (a histogram per
  call kind), token2wav seconds per audio second (non-streaming calls, i.e. whole utterances);
- per requested flow_steps (per-request steps, issue 10; "default" = the server's --flow_steps): requests,
  token2wav calls, estimator calls per call, how many requests ran exactly their step count on every
  call, and token2wav seconds per audio second, non-streaming and streaming;
- LLM process: data_type, weight and KV-cache dtypes, and LLM step times per batch size: all steps, and
  "isolated" steps that overlap no token2wav call of the same server (so the decode process was not
  competing for the GPU or the host at that moment);
and, for --base/--new, the ratios new/base of the LLM step medians at each batch size both have.

With --mem MEM.csv --events EVENTS.log (written by bench/gpu_proof.sh's memwatch phase) it also reports
memory per server: each GPU process (named llm / decode from the probe, else by pid) when the server
went live and at its peak, the server's summed GPU memory and host RSS (whole process group), and for a
soak window the first and last samples and the growth per minute (least squares).

Standard library only.
"""

from __future__ import annotations

import argparse
import bisect
import glob
import json
import os
import sys
from typing import Iterable

try:
    from .tts_load import percentile
except ImportError:  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from tts_load import percentile

SAMPLE_RATE = 24000


def read_events(paths: Iterable[str]) -> list[dict]:
    events = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut short by a killed process
    return events


def _intervals(events: list[dict]) -> tuple[list[float], list[float]]:
    iv = sorted((e["t"], e["t"] + e["dur"]) for e in events)
    return [a for a, _ in iv], [b for _, b in iv]


def overlaps(starts: list[float], ends: list[float], t0: float, t1: float) -> bool:
    """Does [t0, t1] overlap any interval? Intervals sorted by start, assumed not to overlap each other
    (the decode process runs token2wav calls one at a time)."""
    i = bisect.bisect_left(starts, t1)  # intervals starting before t1
    return i > 0 and ends[i - 1] > t0


def _stats(xs: list[float]) -> dict:
    return {"n": len(xs), "p50_ms": _ms(percentile(xs, 50)), "p90_ms": _ms(percentile(xs, 90)),
            "mean_ms": _ms(sum(xs) / len(xs)) if xs else None}


def _ms(v):
    return None if v is None else round(v * 1000, 3)


def by_requested_steps(t2w: list[dict]) -> dict[str, dict]:
    """token2wav calls grouped by the flow_steps their request asked for (probe field steps_req; None or 0:
    the server's, key "default"). A request is exact when every one of its calls made as many estimator
    calls as its effective step count (its own, else the flow's flow_steps)."""
    groups: dict[str, dict] = {}
    for e in t2w:
        if "steps_req" not in e:
            continue  # a probe from before per-request steps
        requested = e["steps_req"] or None
        g = groups.setdefault("default" if requested is None else str(requested),
                              {"effective": set(), "calls": 0, "est": {}, "requests": {},
                               "nonstream": [0.0, 0], "stream": [0.0, 0]})
        effective = requested or e.get("fs")
        g["effective"].add(effective)
        g["calls"] += 1
        g["est"][str(e["est"])] = g["est"].get(str(e["est"]), 0) + 1
        req = str(e.get("req"))
        g["requests"][req] = g["requests"].get(req, True) and e["est"] == effective
        if e.get("samples"):
            acc = g["stream" if e.get("stream") else "nonstream"]
            acc[0] += e["dur"]
            acc[1] += e["samples"][-1]
    out = {}
    for key in sorted(groups, key=lambda k: (k == "default", int(k) if k.isdigit() else 0)):
        g = groups[key]
        exact = [r for r, ok in g["requests"].items() if ok]
        out[key] = {"effective_steps": sorted(g["effective"], key=str), "calls": g["calls"],
                    "requests": len(g["requests"]), "estimator_calls_per_call": g["est"],
                    "requests_exact": len(exact),
                    "requests_not_exact": sorted(r for r, ok in g["requests"].items() if not ok)[:10]}
        for kind in ("nonstream", "stream"):
            dur, samples = g[kind]
            out[key][f"s_per_audio_s_{kind}"] = round(dur / (samples / SAMPLE_RATE), 5) if samples else None
    return out


def summarize(events: list[dict]) -> dict:
    tags = sorted({e.get("tag", "") for e in events})
    out = {}
    for tag in tags:
        evs = [e for e in events if e.get("tag", "") == tag]
        t2w = [e for e in evs if e["ev"] == "t2w"]
        llm = [e for e in evs if e["ev"] == "llm"]
        s: dict = {"decode_init": [e for e in evs if e["ev"] == "decode_init"],
                   "llm_init": [e for e in evs if e["ev"] == "llm_init"],
                   "probe_missing": sorted({m for e in evs if e["ev"] == "probe_missing" for m in e["missing"]})}
        hist: dict[str, dict[str, int]] = {}
        for e in t2w:
            kind = "stream" if e.get("stream") else "nonstream"
            kind += "/final" if e.get("finalize") else ""
            h = hist.setdefault(kind, {})
            h[str(e["est"])] = h.get(str(e["est"]), 0) + 1
        s["estimator_calls_per_token2wav"] = hist
        s["flow_steps_attr"] = sorted({str(e.get("fs")) for e in t2w})
        s["by_requested_steps"] = by_requested_steps(t2w)
        s["flow_dtype"] = sorted({str(e.get("flow_dtype")) for e in t2w})
        whole = [e for e in t2w if not e.get("stream") and e.get("samples")]
        audio = sum(e["samples"][-1] for e in whole) / SAMPLE_RATE
        s["token2wav_nonstream"] = {"calls": len(whole), "audio_s": round(audio, 3),
                                    "s_per_audio_s": round(sum(e["dur"] for e in whole) / audio, 5) if audio else None}
        streamed = [e for e in t2w if e.get("stream") and e.get("samples")]
        audio_st = sum(e["samples"][-1] for e in streamed) / SAMPLE_RATE
        s["token2wav_stream"] = {"calls": len(streamed), "audio_s": round(audio_st, 3),
                                 "s_per_audio_s": round(sum(e["dur"] for e in streamed) / audio_st, 5)
                                 if audio_st else None}
        starts, ends = _intervals(t2w)
        steps: dict[str, dict] = {}
        for kind in ("decode", "prefill"):
            by_batch: dict[int, list[float]] = {}
            iso: dict[int, list[float]] = {}
            for e in llm:
                if e.get("kind") != kind or e.get("batch") is None:
                    continue
                by_batch.setdefault(e["batch"], []).append(e["dur"])
                if not overlaps(starts, ends, e["t"], e["t"] + e["dur"]):
                    iso.setdefault(e["batch"], []).append(e["dur"])
            steps[kind] = {str(b): {"all": _stats(by_batch[b]), "isolated": _stats(iso.get(b, []))}
                           for b in sorted(by_batch)}
        s["llm_steps"] = steps
        out[tag] = s
    return out


def compare_llm(summary: dict, base: str, new: str, kind: str = "decode") -> list[dict]:
    """new/base ratios of LLM step medians (isolated and all) at each batch size both have."""
    a, b = summary[base]["llm_steps"][kind], summary[new]["llm_steps"][kind]
    rows = []
    for batch in sorted(set(a) & set(b), key=int):
        row = {"batch": int(batch)}
        for which in ("isolated", "all"):
            va, vb = a[batch][which]["p50_ms"], b[batch][which]["p50_ms"]
            row[f"{which}_n"] = (a[batch][which]["n"], b[batch][which]["n"])
            row[f"{which}_base_ms"], row[f"{which}_new_ms"] = va, vb
            row[f"{which}_ratio"] = round(vb / va, 4) if va and vb else None
        rows.append(row)
    return rows


def markdown(summary: dict, base: str | None = None, new: str | None = None) -> str:
    lines = ["| server | flow_steps | flow dtype | estimator calls per token2wav | token2wav s per audio s "
             "(non-stream) | LLM data_type | LLM layer dtypes | KV cache |", "|" + "---|" * 8]
    for tag, s in summary.items():
        li = s["llm_init"][0] if s["llm_init"] else {}
        hist = "; ".join(f"{k}: " + ", ".join(f"{n}x{c}" for n, c in sorted(v.items(), key=lambda kv: int(kv[0])))
                         for k, v in sorted(s["estimator_calls_per_token2wav"].items()))
        lines.append(f"| {tag} | {', '.join(s['flow_steps_attr'])} | {', '.join(s['flow_dtype'])} | {hist} "
                     f"| {s['token2wav_nonstream']['s_per_audio_s']} | {li.get('data_type')} "
                     f"| {li.get('layer_dtypes')} | {li.get('kv_dtype')} |")
    text = "\n".join(lines) + "\n"
    steps_rows = [(tag, key, g) for tag, s in summary.items() for key, g in s.get("by_requested_steps", {}).items()]
    if steps_rows:
        text += ("\nPer requested flow_steps (default: the server's --flow_steps); exact = requests whose every "
                 "token2wav call made exactly that many estimator calls\n\n| server | requested | effective "
                 "| requests | exact | token2wav calls | estimator calls per call | token2wav s per audio s "
                 "(non-stream) | (stream) |\n" + "|" + "---|" * 9 + "\n")
        for tag, key, g in steps_rows:
            hist = ", ".join(f"{n}x{c}" for n, c in sorted(g["estimator_calls_per_call"].items(),
                                                            key=lambda kv: int(kv[0])))
            text += (f"| {tag} | {key} | {', '.join(map(str, g['effective_steps']))} | {g['requests']} "
                     f"| {g['requests_exact']} | {g['calls']} | {hist} | {g['s_per_audio_s_nonstream']} "
                     f"| {g['s_per_audio_s_stream']} |\n")
    missing = [f"{tag}: {', '.join(s['probe_missing'])}" for tag, s in summary.items() if s["probe_missing"]]
    if missing:
        text = ("**PROBE INCOMPLETE**: hooked classes or methods missing in the server (their events are absent, "
                "not zero): " + "; ".join(missing) + "\n\n" + text)
    if base and new and base in summary and new in summary:
        rows = compare_llm(summary, base, new)
        text += (f"\nLLM decode step, median ms ({new} / {base}); isolated = no token2wav call of the same server "
                 f"running\n\n| batch | n isolated | {base} | {new} | ratio | n all | {base} all | {new} all "
                 f"| ratio all |\n" + "|" + "---|" * 9 + "\n")
        for r in rows:
            text += (f"| {r['batch']} | {r['isolated_n'][0]}/{r['isolated_n'][1]} | {r['isolated_base_ms']} "
                     f"| {r['isolated_new_ms']} | {r['isolated_ratio']} | {r['all_n'][0]}/{r['all_n'][1]} "
                     f"| {r['all_base_ms']} | {r['all_new_ms']} | {r['all_ratio']} |\n")
    return text


# --------------------------------------------------------------------------- memory (gpu_proof memwatch)

def read_mem(path: str) -> list[tuple[int, str, str, str, float]]:
    """mem.csv rows: (ts, 'gpu' | 'host', pid or '-', pgid, MiB)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) == 5 and parts[0].isdigit():
                try:
                    rows.append((int(parts[0]), parts[1], parts[2], parts[3], float(parts[4])))
                except ValueError:
                    continue  # a sample cut short
    return rows


def read_marks(path: str) -> list[tuple[int, list[str]]]:
    """events.log lines: 'EPOCH word...' (launch NAME pgid N, live NAME, soak-start NAME, ...)."""
    marks = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = line.split()
            if len(words) >= 2 and words[0].isdigit():
                marks.append((int(words[0]), words[1:]))
    return marks


def slope_per_min(points: list[tuple[int, float]]) -> float | None:
    if len(points) < 2:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return None if var == 0 else round(60 * sum((t - mt) * (v - mv) for t, v in points) / var, 2)


def summarize_memory(rows, marks, probe_events) -> dict:
    groups = {ws[3]: ws[1] for _, ws in marks if ws[0] == "launch" and len(ws) >= 4}  # pgid -> server
    roles = {str(e["pid"]): {"llm_init": "llm", "decode_init": "decode"}[e["ev"]]
             for e in probe_events if e.get("ev") in ("llm_init", "decode_init")}
    live = {ws[1]: t for t, ws in marks if ws[0] == "live"}
    out = {}
    for pgid, name in groups.items():
        gpu = [r for r in rows if r[1] == "gpu" and r[3] == pgid]
        host = [(t, v) for t, kind, _, g, v in rows if kind == "host" and g == pgid]
        totals: dict[int, float] = {}
        for t, _, _, _, v in gpu:
            totals[t] = totals.get(t, 0.0) + v
        t_live = live.get(name)
        procs = {}
        for pid in sorted({r[2] for r in gpu}):
            mine = [(t, v) for t, _, p, _, v in gpu if p == pid]
            after = [v for t, v in mine if t_live is not None and t >= t_live]
            procs[f"{roles.get(pid, 'pid')} {pid}"] = {"at_live_mib": after[0] if after else None,
                                                      "peak_mib": max(v for _, v in mine), "last_mib": mine[-1][1]}
        tot = sorted(totals.items())
        s = {"processes": procs,
             "gpu_total_at_live_mib": next((v for t, v in tot if t_live is not None and t >= t_live), None),
             "gpu_total_peak_mib": max((v for _, v in tot), default=None),
             "host_rss_at_live_mib": next((v for t, v in host if t_live is not None and t >= t_live), None),
             "host_rss_peak_mib": max((v for _, v in host), default=None), "soak": None}
        start = next((t for t, ws in marks if ws[0] == "soak-start" and ws[1:2] == [name]), None)
        end = next((t for t, ws in marks if ws[0] == "soak-end" and ws[1:2] == [name]), None)
        if start is not None:
            end = end if end is not None else max(t for t, *_ in rows)
            g = [(t, v) for t, v in tot if start <= t <= end]
            h = [(t, v) for t, v in host if start <= t <= end]
            # A load change early in the soak steps the caching allocator up once; the last half's slope
            # tells that step from a steady growth.
            mid = start + (end - start) / 2
            s["soak"] = {"seconds": end - start, "samples": len(g),
                         "gpu_first_mib": g[0][1] if g else None, "gpu_last_mib": g[-1][1] if g else None,
                         "gpu_max_mib": max((v for _, v in g), default=None), "gpu_mib_per_min": slope_per_min(g),
                         "gpu_mib_per_min_last_half": slope_per_min([p for p in g if p[0] >= mid]),
                         "host_first_mib": h[0][1] if h else None, "host_last_mib": h[-1][1] if h else None,
                         "host_max_mib": max((v for _, v in h), default=None), "host_mib_per_min": slope_per_min(h),
                         "host_mib_per_min_last_half": slope_per_min([p for p in h if p[0] >= mid])}
        out[name] = s
    return out


def memory_markdown(mem: dict) -> str:
    lines = ["| server | process | GPU MiB when live | GPU MiB peak |", "|---|---|---|---|"]
    for name, s in mem.items():
        for proc, v in s["processes"].items():
            lines.append(f"| {name} | {proc} | {v['at_live_mib']} | {v['peak_mib']} |")
        lines.append(f"| {name} | **all GPU** | {s['gpu_total_at_live_mib']} | {s['gpu_total_peak_mib']} |")
        lines.append(f"| {name} | host RSS (process group) | {s['host_rss_at_live_mib']} | {s['host_rss_peak_mib']} |")
    text = "\n".join(lines) + "\n"
    for name, s in mem.items():
        if s["soak"]:
            k = s["soak"]
            text += (f"\nsoak {name}: {k['seconds']} s, {k['samples']} samples; GPU {k['gpu_first_mib']} -> "
                     f"{k['gpu_last_mib']} MiB (max {k['gpu_max_mib']}, {k['gpu_mib_per_min']} MiB/min, last half "
                     f"{k['gpu_mib_per_min_last_half']}); host RSS {k['host_first_mib']} -> {k['host_last_mib']} MiB "
                     f"(max {k['host_max_mib']}, {k['host_mib_per_min']} MiB/min, last half "
                     f"{k['host_mib_per_min_last_half']})\n")
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("probe_dir")
    ap.add_argument("--json", help="write the summary here")
    ap.add_argument("--base", help="tag to divide by (e.g. unpatched)")
    ap.add_argument("--new", help="tag to compare (e.g. patched)")
    ap.add_argument("--mem", help="mem.csv from gpu_proof.sh memwatch: add the memory report")
    ap.add_argument("--events", help="events.log from gpu_proof.sh (needed with --mem)")
    ap.add_argument("--mem-only", action="store_true", help="only the memory report")
    args = ap.parse_args(argv)
    paths = sorted(glob.glob(os.path.join(args.probe_dir, "probe-*.jsonl")))
    mem = None
    if args.mem:
        if not args.events:
            ap.error("--mem needs --events")
        mem = summarize_memory(read_mem(args.mem), read_marks(args.events), read_events(paths))
        print(memory_markdown(mem))
        if args.mem_only:
            if args.json:
                with open(args.json, "w", encoding="utf-8") as f:
                    json.dump({"memory": mem}, f, indent=1)
            return 0
    if not paths:
        print(f"probe_report: no probe-*.jsonl in {args.probe_dir}", file=sys.stderr)
        return 1
    summary = summarize(read_events(paths))
    for tag, s in summary.items():
        if s["probe_missing"]:
            print(f"probe_report: WARNING: server {tag!r}: the probe found no {', '.join(s['probe_missing'])}; "
                  "what it would have recorded is missing from this report", file=sys.stderr)
    if args.json:
        result = {"summary": summary, **({"memory": mem} if mem is not None else {})}
        if args.base and args.new and args.base in summary and args.new in summary:
            result["llm_decode_ratio"] = compare_llm(summary, args.base, args.new)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    print(markdown(summary, args.base, args.new))
    return 0


if __name__ == "__main__":
    sys.exit(main())
