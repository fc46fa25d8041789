#!/usr/bin/env python3
"""Load client for running LightTTS servers: zero-shot requests over HTTP, several servers interleaved.

Standard library only (http.client and threads), so CI needs nothing extra.

Requests are `POST /inference_zero_shot` with the form fields LightTTS's own clients send
(test/test_zs_stream.py, test_zs_speed.py): tts_text, prompt_text, prompt_wav (a file) and stream.
The reply body is raw int16 PCM at 24 kHz. Metrics follow test_zs_stream.py:

- TTFA (time to first audio): from just before the request is sent to the first non-empty body bytes.
  For stream=false the server sends nothing before the whole utterance is made, so TTFA ~ latency.
- latency: to the last body byte.
- RTF: latency / audio seconds, audio seconds = body bytes / 2 / sample rate.
- requests per second: completed requests / wall time of the batches that ran them, counting only
  batches in which every request completed (a batch with a failed or timed-out request is left out of
  throughput, and counted in failed_batches).
- p50 / p90 / p99: linear interpolation between closest ranks (numpy.percentile's default).

Per-request flow steps (patched servers, issue 10): `run --flow-steps 3,5,10` sends the form field
flow_steps with every request, cycling through the list by request slot (the same slot gets the same
value on every server; `default` sends no field). Each record keeps the value it sent, and
`summary_by_steps` has TTFA/RTF/latency per (server, mode, concurrency, flow_steps); requests/s stays
per cell, since the values are interleaved inside each batch.

Side by side: for every round, every (mode, concurrency) cell and every server, one batch runs
(`concurrency` threads, each sending `per_worker` requests back to back). Servers take turns batch by
batch, and the first server of a round rotates, so slow drift of the machine hits all servers alike,
and only one server is loaded at a time. Every server gets the same texts in the same order.

Commands:
  run      measure; writes JSON (--out) and a markdown table (--md)
  table    markdown table from a JSON written by run
  compare  ratios B/A per cell and metric: `compare A.json B.json` (one server per file, or --a/--b
           to pick by name) or `compare RUN.json --a unpatched --b patched`
  merge    one result from several runs (same servers, texts and prompt), summary recomputed
  wait     poll GET /liveness until every server answers 200
  check-invalid  send bad flow_steps values (expect HTTP 400 naming the field) while a good streaming
           request is in flight, then a good request: the server must answer all of them and keep serving
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import json
import math
import os
import random
import struct
import sys
import threading
import time
import urllib.parse
import uuid
import wave
from dataclasses import dataclass
from typing import Iterable, Sequence

SCHEMA = "lighttts-a10/tts_load/1"
DEFAULT_TEXTS = ["Hello world, this is a test.", "The quick brown fox jumps."]
DEFAULT_PROMPT_TEXT = "This is the prompt text."
MODES = {"stream": True, "nonstream": False, "mixed": None}  # cell mode -> run_batch's stream argument

# Form values a patched server must refuse with HTTP 400 (issue 10): out of range, not an integer, empty.
DEFAULT_INVALID_FLOW_STEPS = ["0", "51", "x", "2.5", "", "-1"]
METRICS = ("ttfa_p50", "ttfa_p90", "rtf_p50", "rtf_p90", "latency_p50", "latency_p90", "rps", "audio_s_mean")


# --------------------------------------------------------------------------- small pure helpers

def percentile(values: Sequence[float], p: float) -> float | None:
    """numpy.percentile(values, p) with the default 'linear' method; None for no values."""
    if not values:
        return None
    xs = sorted(values)
    if not 0 <= p <= 100:
        raise ValueError(f"percentile out of range: {p}")
    pos = (len(xs) - 1) * p / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def make_prompt_wav(seconds: float = 3.0, rate: int = 16000, seed: int = 1986) -> bytes:
    """A mono 16-bit WAV: a 220 Hz sine plus a little seeded noise (a stand-in prompt voice)."""
    rng = random.Random(seed)
    n = int(seconds * rate)
    frames = bytearray()
    for i in range(n):
        v = 0.3 * math.sin(2 * math.pi * 220.0 * i / rate) + 0.05 * (rng.random() * 2 - 1)
        frames += struct.pack("<h", int(max(-1.0, min(1.0, v)) * 32767))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return buf.getvalue()


def encode_multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]],
                     boundary: str | None = None) -> tuple[bytes, str]:
    """multipart/form-data body and its Content-Type header value."""
    boundary = boundary or "----lighttts-a10-" + uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f"--{boundary}\r\n".encode())
        out.write(f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        out.write(str(value).encode("utf-8"))
        out.write(b"\r\n")
    for name, (filename, data, ctype) in files.items():
        out.write(f"--{boundary}\r\n".encode())
        out.write(f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'.encode())
        out.write(f"Content-Type: {ctype}\r\n\r\n".encode())
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


@dataclass(frozen=True)
class Server:
    name: str
    url: str

    @property
    def parts(self) -> urllib.parse.SplitResult:
        return urllib.parse.urlsplit(self.url)

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        p = self.parts
        if p.scheme == "https":
            return http.client.HTTPSConnection(p.hostname, p.port or 443, timeout=timeout)
        return http.client.HTTPConnection(p.hostname, p.port or 80, timeout=timeout)

    def path(self, endpoint: str) -> str:
        base = self.parts.path.rstrip("/")
        return f"{base}/{endpoint.lstrip('/')}"


def parse_server(spec: str) -> Server:
    """'NAME=URL' or just 'URL' (then the name is host:port)."""
    name, sep, url = spec.partition("=")
    if not sep or "://" in name:
        url, name = spec, ""
    p = urllib.parse.urlsplit(url)
    if p.scheme not in ("http", "https") or not p.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return Server(name or f"{p.hostname}:{p.port or 80}", url)


def parse_per_worker(spec: str | None, concurrencies: Iterable[int], default: int = 1) -> dict[int, int]:
    """'1:3,4:2,16:1' -> {1: 3, 4: 2, 16: 1}; concurrencies not named get `default`."""
    out = {c: default for c in concurrencies}
    if spec:
        for item in spec.split(","):
            c, sep, n = item.partition(":")
            if not sep:
                raise ValueError(f"per-worker item must be C:N, got {item!r}")
            if int(n) < 1:
                raise ValueError(f"per-worker count must be >= 1, got {item!r}")
            out[int(c)] = int(n)
    return out


# --------------------------------------------------------------------------- one request

def post_zero_shot(server: Server, tts_text: str, prompt_text: str, prompt_wav: bytes, stream: bool,
                   timeout: float, sample_rate: int = 24000, read_size: int = 4096,
                   flow_steps: int | str | None = None) -> dict:
    """One request, timed. Never raises: failures come back with ok=False and an error string.

    flow_steps: sent as the form field of that name unless None (any string, for the invalid-value check)."""
    fields = {"tts_text": tts_text, "prompt_text": prompt_text, "stream": "true" if stream else "false"}
    if flow_steps is not None:
        fields["flow_steps"] = str(flow_steps)
    body, ctype = encode_multipart(fields, {"prompt_wav": ("sample.wav", prompt_wav, "audio/wav")})
    rec = {"ok": False, "status": None, "error": None, "ttfa_s": None, "latency_s": None,
           "bytes": 0, "chunks": 0, "audio_s": None, "rtf": None, "flow_steps": flow_steps}
    conn = server.connection(timeout)
    t0 = time.perf_counter()
    rec["t_start"] = time.time()
    try:
        conn.request("POST", server.path("/inference_zero_shot"), body=body,
                     headers={"Content-Type": ctype, "Content-Length": str(len(body))})
        resp = conn.getresponse()
        rec["status"] = resp.status
        if resp.status != 200:
            rec["error"] = f"HTTP {resp.status}: {resp.read(300).decode('utf-8', 'replace')}"
            rec["latency_s"] = time.perf_counter() - t0
            return rec
        nbytes = 0
        while True:
            chunk = resp.read1(read_size)
            if not chunk:
                break
            if rec["ttfa_s"] is None:
                rec["ttfa_s"] = time.perf_counter() - t0
            nbytes += len(chunk)
            rec["chunks"] += 1
        rec["latency_s"] = time.perf_counter() - t0
        rec["bytes"] = nbytes
        if nbytes == 0:
            rec["error"] = "empty body"
            return rec
        if nbytes % 2:
            rec["error"] = f"odd body length {nbytes} (not int16 PCM)"
            return rec
        rec["audio_s"] = nbytes / 2 / sample_rate
        rec["rtf"] = rec["latency_s"] / rec["audio_s"]
        rec["ok"] = True
        return rec
    except Exception as exc:  # noqa: BLE001 - a failed request is data, not a crash
        rec["latency_s"] = time.perf_counter() - t0
        rec["error"] = f"{type(exc).__name__}: {exc}"
        return rec
    finally:
        conn.close()


# --------------------------------------------------------------------------- batches and runs

def run_batch(server: Server, concurrency: int, per_worker: int, texts: Sequence[str], text_offset: int,
              prompt_text: str, prompt_wav: bytes, stream: bool | None, timeout: float,
              sample_rate: int, flow_steps: Sequence[int | None] = (None,)) -> tuple[list[dict], float]:
    """`concurrency` threads, each sending `per_worker` requests back to back. Returns records, wall s.

    Request slot text_offset + k gets text k and flow_steps k, each list cycled.
    stream=None mixes the two: odd-numbered workers stream, even-numbered ones don't."""
    results: list[list[dict]] = [[] for _ in range(concurrency)]

    def worker(w: int) -> None:
        for j in range(per_worker):
            k = w * per_worker + j
            idx = (text_offset + k) % len(texts)
            streams = bool(w % 2) if stream is None else stream
            steps = flow_steps[(text_offset + k) % len(flow_steps)]
            rec = post_zero_shot(server, texts[idx], prompt_text, prompt_wav, streams, timeout, sample_rate,
                                 flow_steps=steps)
            rec["text_index"] = idx
            rec["slot"] = text_offset + k
            rec["worker"] = w
            rec["stream"] = streams
            results[w].append(rec)

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return [r for rs in results for r in rs], wall


def parse_flow_steps(spec: str) -> list[int | None]:
    """'3,5,10' -> [3, 5, 10]; 'default' (send no flow_steps field) -> None."""
    out: list[int | None] = []
    for item in spec.split(","):
        item = item.strip()
        if item == "default":
            out.append(None)
        elif item.isdigit() and int(item) >= 1:
            out.append(int(item))
        else:
            raise ValueError(f"--flow-steps items must be integers >= 1 or 'default', got {item!r}")
    return out


def parse_cells(spec: str) -> list[tuple]:
    """'nonstream:1:4,stream:4' -> [('nonstream', 1, 4), ('stream', 4)]: mode, concurrency and, optionally,
    requests per worker per batch for that cell (else --per-worker decides). Mode `mixed`: half the
    workers stream, half don't, at the same time (a soak)."""
    cells = []
    for item in spec.split(","):
        parts = item.strip().split(":")
        ok = len(parts) in (2, 3) and parts[0] in MODES and all(
            x.isdigit() and int(x) >= 1 for x in parts[1:])
        if not ok:
            raise ValueError(f"cell must be MODE:C or MODE:C:N (MODE stream, nonstream or mixed, C and N >= 1), "
                             f"got {item!r}")
        cells.append((parts[0], *map(int, parts[1:])))
    return cells


def run(servers: Sequence[Server], texts: Sequence[str], prompt_text: str, prompt_wav: bytes,
        modes: Sequence[str], concurrencies: Sequence[int], per_worker: dict[int, int], rounds: int,
        timeout: float = 600.0, sample_rate: int = 24000, warmup: int = 1, deadline_s: float | None = None,
        log=print, cells: Sequence[tuple] | None = None, timeout_nonstream: float | None = None,
        checkpoint=None, flow_steps: Sequence[int | None] | None = None) -> dict:
    """Measure; returns the JSON-ready result (config, batches, records, summary).

    cells: (mode, concurrency[, per_worker]) to run; default every mode x every concurrency.
    timeout_nonstream: per-request timeout for stream=false (default: timeout).
    checkpoint: called with the partial result after every round (e.g. to save it).
    flow_steps: per-request values to cycle through (None in the list: no field); None: never sent."""
    steps_cycle = list(flow_steps) if flow_steps else [None]
    cells = [tuple(c) for c in cells] if cells else [(m, c) for m in modes for c in concurrencies]
    modes = list(dict.fromkeys(c[0] for c in cells))
    concurrencies = list(dict.fromkeys(c[1] for c in cells))
    timeouts = {"stream": timeout, "nonstream": timeout_nonstream or timeout,
                "mixed": max(timeout, timeout_nonstream or timeout)}
    if not servers:
        raise ValueError("no servers")
    if len({s.name for s in servers}) != len(servers):
        raise ValueError("server names must be unique")
    for m in modes:
        if m not in MODES:
            raise ValueError(f"unknown mode {m!r} (stream, nonstream or mixed)")
    t_run = time.perf_counter()
    config = {
        "servers": {s.name: s.url for s in servers}, "texts": list(texts), "prompt_text": prompt_text,
        "prompt_wav_sha256": hashlib.sha256(prompt_wav).hexdigest(), "prompt_wav_bytes": len(prompt_wav),
        "modes": list(modes), "concurrencies": list(concurrencies), "cells": [list(x) for x in cells],
        "per_worker": {str(c): per_worker.get(c, 1) for c in concurrencies}, "rounds": rounds, "timeout_s": timeouts,
        "sample_rate": sample_rate, "warmup": warmup, "deadline_s": deadline_s,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "flow_steps": list(flow_steps) if flow_steps else None,
    }
    records: list[dict] = []
    batches: list[dict] = []
    warmups: list[dict] = []
    for mode in modes:
        for server in servers:
            for i in range(warmup):
                rec = post_zero_shot(server, texts[i % len(texts)], prompt_text, prompt_wav, mode != "nonstream",
                                     timeouts[mode], sample_rate, flow_steps=steps_cycle[i % len(steps_cycle)])
                warmups.append({"server": server.name, "mode": mode, **rec})
                log(f"warmup {server.name} {mode}: ok={rec['ok']} ttfa={_fmt(rec['ttfa_s'])} "
                    f"latency={_fmt(rec['latency_s'])} audio={_fmt(rec['audio_s'])} {rec['error'] or ''}")
    stopped_early = False
    rounds_done = 0
    for r in range(rounds):
        if deadline_s is not None and r > 0:
            elapsed = time.perf_counter() - t_run
            per_round = elapsed / r if r else 0
            if elapsed + per_round > deadline_s:
                stopped_early = True
                log(f"deadline: stopping after {r} round(s) ({elapsed:.0f} s used, ~{per_round:.0f} s a round)")
                break
        for cell in cells:
            mode, c = cell[0], cell[1]
            n = cell[2] if len(cell) > 2 else per_worker.get(c, 1)
            order = [servers[(r + i) % len(servers)] for i in range(len(servers))]
            for server in order:
                recs, wall = run_batch(server, c, n, texts, r * c * n, prompt_text, prompt_wav,
                                       MODES[mode], timeouts[mode], sample_rate, steps_cycle)
                batch_id = len(batches)
                for rec in recs:
                    rec.update({"server": server.name, "mode": mode, "concurrency": c, "round": r,
                                "batch": batch_id})
                records.extend(recs)
                ok = sum(1 for x in recs if x["ok"])
                batches.append({"batch": batch_id, "server": server.name, "mode": mode, "concurrency": c,
                                "round": r, "requests": len(recs), "ok": ok, "wall_s": wall})
                log(f"round {r} {mode:9s} c={c:<3d} {server.name:12s} {ok}/{len(recs)} ok in {wall:7.2f} s")
        rounds_done = r + 1
        if checkpoint is not None:
            checkpoint(_result(config, rounds_done, stopped_early, t_run, batches, warmups, records))
    return _result(config, rounds_done, stopped_early, t_run, batches, warmups, records)


def _result(config, rounds_done, stopped_early, t_run, batches, warmups, records) -> dict:
    t_first = min((x["t_start"] for x in records), default=0.0)
    recs = [{**x, "t_start": round(x["t_start"] - t_first, 4)} for x in records]
    # t_start is relative to the first recorded request; t0_epoch anchors it to server-side logs.
    result = {"schema": SCHEMA, "config": config, "rounds_done": rounds_done, "stopped_early": stopped_early,
              "elapsed_s": time.perf_counter() - t_run, "t0_epoch": t_first, "batches": list(batches),
              "warmups": list(warmups), "records": recs}
    result["summary"] = summarize(result)
    result["summary_by_steps"] = summarize_by_steps(result)
    return result


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _latency_stats(good: list[dict], percentiles: tuple[int, ...], means: bool) -> dict:
    """TTFA, RTF and latency percentiles (and means) of the successful records."""
    stats: dict = {}
    for name, field in (("ttfa", "ttfa_s"), ("rtf", "rtf"), ("latency", "latency_s")):
        xs = [x[field] for x in good]
        for p in percentiles:
            stats[f"{name}_p{p}"] = percentile(xs, p)
        if means:
            stats[f"{name}_mean"] = sum(xs) / len(xs) if xs else None
    return stats


def _cell_order(servers: list[str]):
    """Sort key of (server, mode, concurrency, ...): by mode, concurrency, then the servers' own order."""
    return lambda k: (k[1], k[2], servers.index(k[0]) if k[0] in servers else 0)


def summarize(result: dict) -> list[dict]:
    """One cell per (server, mode, concurrency): counts, percentiles, requests/s, audio length check."""
    cells: dict[tuple, dict] = {}
    for b in result["batches"]:
        key = (b["server"], b["mode"], b["concurrency"])
        cell = cells.setdefault(key, {"server": b["server"], "mode": b["mode"], "concurrency": b["concurrency"],
                                      "batches": 0, "failed_batches": 0, "wall_s": 0.0, "_ok": 0, "_recs": []})
        cell["batches"] += 1
        if b["ok"] == b["requests"]:  # throughput from batches where every request completed
            cell["wall_s"] += b["wall_s"]
            cell["_ok"] += b["ok"]
        else:
            cell["failed_batches"] += 1
    for rec in result["records"]:
        key = (rec["server"], rec["mode"], rec["concurrency"])
        if key in cells:
            cells[key]["_recs"].append(rec)
    out = []
    for key in sorted(cells, key=_cell_order(list(result["config"]["servers"]))):
        cell = cells[key]
        recs = cell.pop("_recs")
        good = [x for x in recs if x["ok"]]
        audio = [x["audio_s"] for x in good]
        by_text: dict[str, list[float]] = {}
        for x in good:
            by_text.setdefault(str(x["text_index"]), [])
            if x["audio_s"] not in by_text[str(x["text_index"])]:
                by_text[str(x["text_index"])].append(x["audio_s"])
        cell.update({
            "requests": len(recs), "ok": len(good), "failed": len(recs) - len(good),
            "errors": sorted({x["error"] for x in recs if x["error"]})[:5],
            "audio_s_mean": sum(audio) / len(audio) if audio else None,
            "audio_s_by_text": by_text,
            "rps": cell.pop("_ok") / cell["wall_s"] if cell["wall_s"] > 0 else None,
        })
        cell.update(_latency_stats(good, (50, 90, 99), means=True))
        out.append(cell)
    return out


def summarize_by_steps(result: dict) -> list[dict]:
    """Latency metrics per (server, mode, concurrency, flow_steps sent); only for runs that sent flow_steps.

    No requests/s here: the values are interleaved inside each batch, so a batch's wall time is shared."""
    if not result["config"].get("flow_steps"):
        return []
    order = _cell_order(list(result["config"]["servers"]))
    groups: dict[tuple, list[dict]] = {}
    for rec in result["records"]:
        key = (rec["server"], rec["mode"], rec["concurrency"], rec.get("flow_steps"))
        groups.setdefault(key, []).append(rec)
    out = []
    for key in sorted(groups, key=lambda k: (*order(k), -1 if k[3] is None else k[3])):
        recs = groups[key]
        good = [x for x in recs if x["ok"]]
        cell = {"server": key[0], "mode": key[1], "concurrency": key[2], "flow_steps": key[3],
                "requests": len(recs), "ok": len(good), "failed": len(recs) - len(good),
                "audio_s_mean": sum(x["audio_s"] for x in good) / len(good) if good else None}
        cell.update(_latency_stats(good, (50, 90), means=False))
        out.append(cell)
    return out


def merge(results: Sequence[dict]) -> dict:
    """One result from several runs against the same servers with the same texts and prompt.

    Batches and records keep their values and get a `part` (index of the run); batch ids are renumbered
    and the summary is recomputed over everything."""
    if not results:
        raise ValueError("nothing to merge")
    first = results[0]["config"]
    for res in results[1:]:
        cfg = res["config"]
        for key in ("servers", "texts", "prompt_text", "prompt_wav_sha256", "sample_rate", "flow_steps"):
            if cfg.get(key) != first.get(key):
                raise ValueError(f"cannot merge: runs differ in {key}")
    config = json.loads(json.dumps(first))
    config["merged_from"] = [{"started_at": r["config"].get("started_at"), "cells": r["config"].get("cells"),
                              "rounds_done": r.get("rounds_done"), "per_worker": r["config"].get("per_worker")}
                             for r in results]
    config["cells"] = [list(x) for x in dict.fromkeys(tuple(c) for r in results
                                                        for c in r["config"].get("cells") or [])]
    config["timeout_s"] = [r["config"].get("timeout_s") for r in results]
    batches, records, warmups = [], [], []
    for part, res in enumerate(results):
        renum = {}
        for b in res["batches"]:
            renum[b["batch"]] = len(batches)
            batches.append({**b, "batch": len(batches), "part": part})
        for rec in res["records"]:
            records.append({**rec, "batch": renum.get(rec.get("batch"), rec.get("batch")), "part": part})
        warmups.extend({**w, "part": part} for w in res.get("warmups", []))
    out = {"schema": SCHEMA, "config": config, "rounds_done": sum(r.get("rounds_done", 0) for r in results),
           "stopped_early": any(r.get("stopped_early") for r in results),
           "elapsed_s": sum(r.get("elapsed_s", 0.0) for r in results), "batches": batches, "warmups": warmups,
           "records": records}
    out["summary"] = summarize(out)
    out["summary_by_steps"] = summarize_by_steps(out)
    return out


# --------------------------------------------------------------------------- tables and comparisons

def markdown_table(summary: list[dict]) -> str:
    head = ("| mode | conc. | server | ok/req | audio s | TTFA p50 s | TTFA p90 s | RTF p50 | RTF p90 "
            "| latency p50 s | latency p90 s | req/s |")
    lines = [head, "|" + "---|" * 12]
    for c in summary:
        lines.append(
            f"| {c['mode']} | {c['concurrency']} | {c['server']} | {c['ok']}/{c['requests']} "
            f"| {_fmt(c['audio_s_mean'], 2)} | {_fmt(c['ttfa_p50'])} | {_fmt(c['ttfa_p90'])} "
            f"| {_fmt(c['rtf_p50'])} | {_fmt(c['rtf_p90'])} | {_fmt(c['latency_p50'])} "
            f"| {_fmt(c['latency_p90'])} | {_fmt(c['rps'])} |")
    return "\n".join(lines) + "\n"


def steps_table(by_steps: list[dict]) -> str:
    head = "| mode | conc. | server | flow_steps | ok/req | audio s | TTFA p50 s | TTFA p90 s | RTF p50 | RTF p90 |"
    lines = [head, "|" + "---|" * 10]
    for c in by_steps:
        steps = "default" if c["flow_steps"] is None else c["flow_steps"]
        lines.append(f"| {c['mode']} | {c['concurrency']} | {c['server']} | {steps} | {c['ok']}/{c['requests']} "
                     f"| {_fmt(c['audio_s_mean'], 2)} | {_fmt(c['ttfa_p50'])} | {_fmt(c['ttfa_p90'])} "
                     f"| {_fmt(c['rtf_p50'])} | {_fmt(c['rtf_p90'])} |")
    return "\n".join(lines) + "\n"


def pick_server(result: dict, name: str | None) -> str:
    names = list(result["config"]["servers"])
    if name is None:
        if len(names) != 1:
            raise ValueError(f"this result has servers {names}: say which one with --a/--b")
        return names[0]
    if name not in names:
        raise ValueError(f"no server {name!r} in this result (it has {names})")
    return name


def compare(a: dict, b: dict, a_name: str | None = None, b_name: str | None = None) -> list[dict]:
    """Ratios b/a for each (mode, concurrency) both have. Also says whether audio lengths matched."""
    an, bn = pick_server(a, a_name), pick_server(b, b_name)
    cells_a = {(c["mode"], c["concurrency"]): c for c in a["summary"] if c["server"] == an}
    cells_b = {(c["mode"], c["concurrency"]): c for c in b["summary"] if c["server"] == bn}
    rows = []
    for key in sorted(set(cells_a) & set(cells_b)):
        ca, cb = cells_a[key], cells_b[key]
        row = {"mode": key[0], "concurrency": key[1], "a": an, "b": bn, "ok_a": ca["ok"], "ok_b": cb["ok"]}
        for m in METRICS:
            va, vb = ca.get(m), cb.get(m)
            row[m] = (vb / va) if (va and vb is not None) else None
        ta, tb = ca.get("audio_s_by_text", {}), cb.get("audio_s_by_text", {})
        common = set(ta) & set(tb)
        row["same_audio_length"] = bool(common) and all(ta[t] == tb[t] for t in common) and all(
            len(ta[t]) == 1 for t in common)
        rows.append(row)
    return rows


def compare_markdown(rows: list[dict]) -> str:
    if not rows:
        return "(no cells in common)\n"
    lines = [f"ratios {rows[0]['b']} / {rows[0]['a']} (below 1: {rows[0]['b']} is lower; for req/s, above 1 is "
             f"better)", "",
             "| mode | conc. | TTFA p50 | TTFA p90 | RTF p50 | RTF p90 | latency p50 | latency p90 | req/s "
             "| audio s | same audio length |", "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['concurrency']} | " + " | ".join(_fmt(r[m]) for m in METRICS)
                     + f" | {'yes' if r['same_audio_length'] else 'NO'} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- liveness

def wait_live(servers: Sequence[Server], timeout: float, interval: float = 2.0, endpoint: str = "/liveness",
              log=print) -> bool:
    """Poll GET endpoint on every server until each answered 200 once, or the timeout passes."""
    pending = {s.name: s for s in servers}
    t_end = time.monotonic() + timeout
    t0 = time.monotonic()
    while pending and time.monotonic() < t_end:
        for name, s in list(pending.items()):
            try:
                conn = s.connection(5)
                conn.request("GET", s.path(endpoint))
                status = conn.getresponse().status
                conn.close()
            except OSError:
                status = None
            if status == 200:
                log(f"{name} live after {time.monotonic() - t0:.0f} s")
                del pending[name]
        if pending:
            time.sleep(interval)
    for name in pending:
        log(f"{name} not live after {timeout:.0f} s")
    return not pending


# --------------------------------------------------------------------------- invalid values

def check_invalid(server: Server, values: Sequence[str], text: str, prompt_text: str, prompt_wav: bytes,
                  good_steps: int | None, timeout: float, sample_rate: int = 24000, log=print) -> dict:
    """Bad flow_steps values, streaming and not, sent while a good streaming request is in flight; then one
    good non-streaming request. Passes when every bad one got HTTP 400 naming flow_steps and its range, and
    both good ones completed with audio (the server kept serving)."""
    in_flight: dict = {}

    def good_stream() -> None:
        in_flight.update(post_zero_shot(server, text, prompt_text, prompt_wav, True, timeout, sample_rate,
                                        flow_steps=good_steps))

    t0 = time.time()
    thread = threading.Thread(target=good_stream, daemon=True)
    thread.start()
    bad = []
    for value in values:
        for stream in (False, True):
            rec = post_zero_shot(server, text, prompt_text, prompt_wav, stream, timeout, sample_rate,
                                 flow_steps=value)
            message = rec["error"] or ""
            rec.update(value=value, stream=stream, refused=rec["status"] == 400 and "flow_steps" in message
                       and "50" in message)
            bad.append(rec)
            log(f"{server.name}: flow_steps={value!r} stream={stream}: HTTP {rec['status']} "
                f"{'refused' if rec['refused'] else 'NOT REFUSED'}: {message[:120]}")
    thread.join(timeout + 5)
    during = {**in_flight, "stream": True}
    after = post_zero_shot(server, text, prompt_text, prompt_wav, False, timeout, sample_rate, flow_steps=good_steps)
    for name, rec in (("during", during), ("after", after)):
        log(f"{server.name}: good request {name} (flow_steps={good_steps}): ok={rec.get('ok')} "
            f"audio={_fmt(rec.get('audio_s'))} s {rec.get('error') or ''}")
    overlapped = bool(during.get("latency_s")) and all(
        b["t_start"] < t0 + during["latency_s"] for b in bad)
    ok = all(b["refused"] for b in bad) and bool(during.get("ok")) and after["ok"]
    return {"server": server.name, "url": server.url, "ok": ok, "values": list(values), "good_steps": good_steps,
            "bad_sent_while_good_in_flight": overlapped, "bad": bad, "good_during": during, "good_after": after}


# --------------------------------------------------------------------------- CLI

def report(result: dict, md_path: str | None) -> None:
    """Print the table (and write it to md_path), then the first server against each other one."""
    table = markdown_table(result["summary"])
    if result.get("summary_by_steps"):
        table += "\n" + steps_table(result["summary_by_steps"])
    if md_path:
        with open(md_path, "w", encoding="utf-8") as f:
            f.write(table)
    print(table)
    names = list(result["config"]["servers"])
    for other in names[1:]:
        print(compare_markdown(compare(result, result, names[0], other)))


def _load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a tts_load result (schema {data.get('schema')!r})")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tts_load", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="measure one or more servers, interleaved")
    r.add_argument("--server", action="append", required=True, metavar="NAME=URL",
                   help="repeat for side by side; e.g. unpatched=http://127.0.0.1:18080")
    r.add_argument("--text", action="append", help="tts_text (repeatable); default: two short English lines")
    r.add_argument("--prompt-text", default=DEFAULT_PROMPT_TEXT)
    r.add_argument("--prompt-wav", help="16-bit WAV file; default: a seeded 3 s 16 kHz sine + noise")
    r.add_argument("--modes", default="nonstream,stream", help="comma list of stream, nonstream")
    r.add_argument("--concurrency", default="1,4,16", help="comma list")
    r.add_argument("--cells", help="instead of modes x concurrency: MODE:C[:N],... e.g. nonstream:1:4,stream:16 "
                                   "(N: requests per worker per batch for that cell)")
    r.add_argument("--per-worker", default=None, metavar="C:N,...",
                   help="requests each worker sends per batch, per concurrency (default 1)")
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--warmup", type=int, default=1, help="unrecorded requests per server and mode first")
    r.add_argument("--timeout", type=float, default=600.0, help="per request, seconds")
    r.add_argument("--timeout-nonstream", type=float, default=None,
                   help="per request with stream=false, seconds (default: --timeout)")
    r.add_argument("--deadline", type=float, default=None, help="start no round that would end after this many s")
    r.add_argument("--sample-rate", type=int, default=24000)
    r.add_argument("--flow-steps", metavar="N,...", help="per-request flow_steps form values, cycled by request "
                                                          "slot (e.g. 3,5,10; 'default' sends none)")
    r.add_argument("--out", help="JSON result file")
    r.add_argument("--md", help="markdown table file")

    t = sub.add_parser("table", help="markdown table of a result JSON")
    t.add_argument("result")

    c = sub.add_parser("compare", help="ratios B/A")
    c.add_argument("a")
    c.add_argument("b", nargs="?", help="second result file (default: the same file as A)")
    c.add_argument("--a", dest="a_name", help="server name in A")
    c.add_argument("--b", dest="b_name", help="server name in B")
    c.add_argument("--json", action="store_true", help="print the rows as JSON")

    g = sub.add_parser("merge", help="merge result files of runs against the same servers")
    g.add_argument("results", nargs="+")
    g.add_argument("--out", required=True)
    g.add_argument("--md", help="markdown table file")

    w = sub.add_parser("wait", help="poll /liveness until all servers answer 200")
    w.add_argument("--server", action="append", required=True, metavar="NAME=URL")
    w.add_argument("--timeout", type=float, default=300.0)
    w.add_argument("--endpoint", default="/liveness")

    ci = sub.add_parser("check-invalid", help="bad flow_steps values get HTTP 400 while the server keeps serving")
    ci.add_argument("--server", action="append", required=True, metavar="NAME=URL")
    ci.add_argument("--value", action="append", help="a bad flow_steps form value (repeatable); default: "
                                                     + " ".join(repr(v) for v in DEFAULT_INVALID_FLOW_STEPS))
    ci.add_argument("--good-steps", default="3", help="flow_steps of the good requests ('default': none)")
    ci.add_argument("--text", default=DEFAULT_TEXTS[0])
    ci.add_argument("--prompt-text", default=DEFAULT_PROMPT_TEXT)
    ci.add_argument("--prompt-wav", help="16-bit WAV file; default: a seeded 3 s 16 kHz sine + noise")
    ci.add_argument("--timeout", type=float, default=240.0, help="per request, seconds")
    ci.add_argument("--sample-rate", type=int, default=24000)
    ci.add_argument("--out", help="JSON result file")

    args = ap.parse_args(argv)
    try:
        if args.cmd == "run":
            servers = [parse_server(s) for s in args.server]
            cells = parse_cells(args.cells) if args.cells else None
            concs = [c[1] for c in cells] if cells else [int(x) for x in args.concurrency.split(",") if x]
            if any(x < 1 for x in concs):
                raise ValueError("concurrency must be >= 1")
            if args.rounds < 1:
                raise ValueError("--rounds must be >= 1")
            prompt = open(args.prompt_wav, "rb").read() if args.prompt_wav else make_prompt_wav()
            def save(result):
                if args.out:
                    tmp = args.out + ".tmp"
                    with open(tmp, "w", encoding="utf-8") as f:
                        json.dump(result, f, indent=1)
                    os.replace(tmp, args.out)

            result = run(servers, args.text or DEFAULT_TEXTS, args.prompt_text, prompt,
                         [m for m in args.modes.split(",") if m], concs, parse_per_worker(args.per_worker, concs),
                         args.rounds, args.timeout, args.sample_rate, args.warmup, args.deadline,
                         log=lambda s: print(s, file=sys.stderr, flush=True), cells=cells,
                         timeout_nonstream=args.timeout_nonstream, checkpoint=save,
                         flow_steps=parse_flow_steps(args.flow_steps) if args.flow_steps else None)
            save(result)
            report(result, args.md)
            failed = sum(c["failed"] for c in result["summary"])
            return 1 if failed else 0
        if args.cmd == "merge":
            result = merge([_load(p) for p in args.results])
            with open(args.out, "w", encoding="utf-8") as f:
                json.dump(result, f, indent=1)
            report(result, args.md)
            return 0
        if args.cmd == "table":
            data = _load(args.result)
            print(markdown_table(data["summary"]))
            if data.get("summary_by_steps"):
                print(steps_table(data["summary_by_steps"]))
            return 0
        if args.cmd == "check-invalid":
            servers = [parse_server(s) for s in args.server]
            good = parse_flow_steps(args.good_steps)
            if len(good) != 1:
                raise ValueError("--good-steps takes one value")
            prompt = open(args.prompt_wav, "rb").read() if args.prompt_wav else make_prompt_wav()
            checks = [check_invalid(s, args.value or DEFAULT_INVALID_FLOW_STEPS, args.text, args.prompt_text, prompt,
                                    good[0], args.timeout, args.sample_rate,
                                    log=lambda s: print(s, file=sys.stderr, flush=True)) for s in servers]
            if args.out:
                with open(args.out, "w", encoding="utf-8") as f:
                    json.dump({"schema": SCHEMA + "/check-invalid", "checks": checks}, f, indent=1)
            for c in checks:
                refused = sum(b["refused"] for b in c["bad"])
                print(f"{c['server']}: {'PASS' if c['ok'] else 'FAIL'}: {refused}/{len(c['bad'])} bad values refused "
                      f"with 400; good request during: {'ok' if c['good_during'].get('ok') else 'FAILED'}, "
                      f"after: {'ok' if c['good_after']['ok'] else 'FAILED'}; bad ones sent while the good one "
                      f"was in flight: {'yes' if c['bad_sent_while_good_in_flight'] else 'no'}")
            return 0 if all(c["ok"] for c in checks) else 1
        if args.cmd == "compare":
            a = _load(args.a)
            b = _load(args.b) if args.b else a
            rows = compare(a, b, args.a_name, args.b_name)
            print(json.dumps(rows, indent=1) if args.json else compare_markdown(rows))
            return 0
        if args.cmd == "wait":
            ok = wait_live([parse_server(s) for s in args.server], args.timeout, endpoint=args.endpoint,
                           log=lambda s: print(s, file=sys.stderr, flush=True))
            return 0 if ok else 1
    except (ValueError, OSError) as exc:
        print(f"tts_load: error: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
