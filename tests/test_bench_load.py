"""bench/tts_load.py against small fake LightTTS servers on loopback (no GPU, no upstream, stdlib only)."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
import wave
import io
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import tts_load  # noqa: E402

RATE = 24000


def parse_form(body: bytes, ctype: str) -> dict[str, bytes]:
    """A small multipart/form-data parser for the fake server (field name -> raw value)."""
    boundary = ctype.split("boundary=", 1)[1].encode()
    fields = {}
    for part in body.split(b"--" + boundary):
        part = part.strip(b"\r\n")
        if not part or part == b"--":
            continue
        head, _, value = part.partition(b"\r\n\r\n")
        name = head.split(b'name="', 1)[1].split(b'"', 1)[0].decode()
        fields[name] = value
    return fields


class FakeTTS:
    """A fake LightTTS: int16 PCM at 24 kHz, 1 s of audio per character of tts_text.

    stream=true: one chunk of audio per second of audio, `chunk_delay` apart (first after `first_delay`).
    stream=false: the whole body after `first_delay + n * chunk_delay`. Records every request's fields.
    check_flow_steps: answer a flow_steps form value outside 1..50 with HTTP 400, as the patched server does;
    break_on_bad: and answer 500 to everything after that (a server that stops serving)."""

    def __init__(self, first_delay=0.05, chunk_delay=0.01, fail_text=None, check_flow_steps=False,
                 break_on_bad=False):
        self.first_delay, self.chunk_delay, self.fail_text = first_delay, chunk_delay, fail_text
        self.check_flow_steps, self.break_on_bad, self.broken = check_flow_steps, break_on_bad, False
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                code = 200 if self.path == "/liveness" else 404
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                form = parse_form(body, self.headers["Content-Type"])
                with fake.lock:
                    fake.requests.append({k: (v if k == "prompt_wav" else v.decode()) for k, v in form.items()})
                text = form["tts_text"].decode()
                steps = form["flow_steps"].decode() if "flow_steps" in form else None
                if fake.check_flow_steps and steps is not None and not (steps.isdigit() and 1 <= int(steps) <= 50):
                    fake.broken = fake.break_on_bad
                    msg = json.dumps({"message": f"flow_steps must be an integer from 1 to 50; got {steps!r}"}).encode()
                    self.send_response(400)
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                if self.path != "/inference_zero_shot" or text == fake.fail_text or fake.broken:
                    msg = b'{"detail":"nope"}'
                    self.send_response(500)
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                n = len(text)
                chunk = b"\x01\x00" * RATE
                if form["stream"].decode() == "true":
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    time.sleep(fake.first_delay)
                    for i in range(n):
                        if i:
                            time.sleep(fake.chunk_delay)
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    time.sleep(fake.first_delay + n * fake.chunk_delay)
                    data = chunk * n
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fakes():
    made = []

    def make(**kw):
        f = FakeTTS(**kw)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


def test_percentile_matches_numpy_linear():
    xs = [3.0, 1.0, 4.0, 1.5, 9.0]
    # numpy.percentile(xs, [0, 50, 90, 100]) -> 1.0, 3.0, 7.0, 9.0
    assert tts_load.percentile(xs, 0) == 1.0
    assert tts_load.percentile(xs, 50) == 3.0
    assert tts_load.percentile(xs, 90) == pytest.approx(7.0)
    assert tts_load.percentile(xs, 100) == 9.0
    assert tts_load.percentile([2.0], 90) == 2.0
    assert tts_load.percentile([], 50) is None
    with pytest.raises(ValueError):
        tts_load.percentile(xs, 101)


def test_prompt_wav_is_seeded_16k_mono():
    a, b = tts_load.make_prompt_wav(), tts_load.make_prompt_wav()
    assert a == b and a != tts_load.make_prompt_wav(seed=1)
    with wave.open(io.BytesIO(a)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 16000, 48000)


def test_parse_server_and_per_worker():
    assert tts_load.parse_server("u=http://127.0.0.1:18080") == tts_load.Server("u", "http://127.0.0.1:18080")
    assert tts_load.parse_server("http://h:9/x").name == "h:9"
    with pytest.raises(ValueError):
        tts_load.parse_server("u=ftp://h")
    assert tts_load.parse_per_worker("1:3,16:2", [1, 4, 16]) == {1: 3, 4: 1, 16: 2}
    with pytest.raises(ValueError):
        tts_load.parse_per_worker("1:0", [1])
    assert tts_load.parse_cells("nonstream:1,stream:16") == [("nonstream", 1), ("stream", 16)]
    with pytest.raises(ValueError):
        tts_load.parse_cells("fast:1")


def test_multipart_round_trip():
    body, ctype = tts_load.encode_multipart({"tts_text": "héllo", "stream": "true"},
                                            {"prompt_wav": ("sample.wav", b"RIFF\x00\r\n--x", "audio/wav")})
    form = parse_form(body, ctype)
    assert form["tts_text"].decode() == "héllo" and form["stream"] == b"true"
    assert form["prompt_wav"] == b"RIFF\x00\r\n--x"


def test_one_request_stream_and_not(fakes):
    f = fakes(first_delay=0.2, chunk_delay=0.05)
    s = tts_load.Server("f", f.url)
    wav = tts_load.make_prompt_wav(0.1)
    st = tts_load.post_zero_shot(s, "abcd", "p", wav, True, timeout=10)
    ns = tts_load.post_zero_shot(s, "abcd", "p", wav, False, timeout=10)
    for rec in (st, ns):
        assert rec["ok"] and rec["status"] == 200 and rec["error"] is None
        assert rec["bytes"] == 4 * RATE * 2 and rec["audio_s"] == pytest.approx(4.0)
        assert rec["rtf"] == pytest.approx(rec["latency_s"] / 4.0)
    # streaming: first audio comes well before the end; non-streaming: only at the end
    assert st["ttfa_s"] < st["latency_s"] - 0.1
    assert ns["ttfa_s"] >= 0.2 and ns["latency_s"] - ns["ttfa_s"] < ns["latency_s"] / 2
    sent = f.requests[0]
    assert sent["tts_text"] == "abcd" and sent["prompt_text"] == "p" and sent["stream"] == "true"
    assert sent["prompt_wav"] == wav and f.requests[1]["stream"] == "false"


def test_failures_are_recorded_not_raised(fakes):
    f = fakes(fail_text="bad")
    rec = tts_load.post_zero_shot(tts_load.Server("f", f.url), "bad", "p", b"x", False, timeout=5)
    assert not rec["ok"] and rec["status"] == 500 and "nope" in rec["error"]
    dead = tts_load.post_zero_shot(tts_load.Server("d", "http://127.0.0.1:9"), "a", "p", b"x", False, timeout=2)
    assert not dead["ok"] and dead["status"] is None and dead["error"]


def test_interleaved_run_summary_table_and_compare(fakes):
    slow, fast = fakes(chunk_delay=0.02), fakes(chunk_delay=0.005)
    servers = [tts_load.Server("slow", slow.url), tts_load.Server("fast", fast.url)]
    log = []
    t_before = time.time()
    res = tts_load.run(servers, ["ab", "abc"], "p", b"wav", ["nonstream", "stream"], [1, 2], {1: 2, 2: 1},
                       rounds=2, timeout=10, warmup=1, log=log.append)
    # request start times are relative to the first one, anchored by t0_epoch (for server-side logs)
    assert t_before <= res["t0_epoch"] <= time.time() and min(r["t_start"] for r in res["records"]) == 0.0
    # every batch of a round ran on both servers, first server rotating each round
    order = [(b["round"], b["mode"], b["concurrency"], b["server"]) for b in res["batches"]]
    assert order[:2] == [(0, "nonstream", 1, "slow"), (0, "nonstream", 1, "fast")]
    assert (1, "nonstream", 1, "fast") == order[len(order) // 2]
    assert len(res["batches"]) == 2 * 2 * 2 * 2
    # both servers got the same texts for the same (round, cell, worker, request) slots
    def slots(name):
        return sorted((r["round"], r["mode"], r["concurrency"], r["worker"], r["text_index"])
                      for r in res["records"] if r["server"] == name)
    assert slots("slow") == slots("fast") and len(slots("slow")) == 2 * 2 * (2 * 1 + 1 * 2)
    assert sorted(r["tts_text"] for r in slow.requests) == sorted(r["tts_text"] for r in fast.requests)
    assert len(slow.requests) == 2 + 2 * 2 * (2 * 1 + 1 * 2)
    cells = {(c["server"], c["mode"], c["concurrency"]): c for c in res["summary"]}
    assert len(cells) == 8
    c = cells[("slow", "stream", 2)]
    assert c["requests"] == 4 and c["ok"] == 4 and c["failed"] == 0
    assert c["audio_s_by_text"] == {"0": [2.0], "1": [3.0]}
    assert c["ttfa_p50"] <= c["ttfa_p90"] and c["rtf_p50"] <= c["rtf_p90"]
    # A batch's wall time holds each worker's requests back to back, so throughput can never beat
    # ok requests / the slowest worker's summed latency, batch by batch.
    busiest = {}
    for r in res["records"]:
        if (r["server"], r["mode"], r["concurrency"]) == ("slow", "stream", 2):
            key = (r["batch"], r["worker"])
            busiest[key] = busiest.get(key, 0.0) + r["latency_s"]
    floor_s = sum(max(v for (b, _), v in busiest.items() if b == batch) for batch in {b for b, _ in busiest})
    assert 0 < c["rps"] <= 4 / floor_s
    table = tts_load.markdown_table(res["summary"])
    assert table.count("\n") == 2 + 8 and "| stream | 2 | slow | 4/4 |" in table
    rows = tts_load.compare(res, res, "slow", "fast")
    assert len(rows) == 4 and all(r["same_audio_length"] for r in rows)
    nonstream1 = next(r for r in rows if r["mode"] == "nonstream" and r["concurrency"] == 1)
    assert nonstream1["audio_s_mean"] == pytest.approx(1.0)
    md = tts_load.compare_markdown(rows)
    assert "ratios fast / slow" in md and "| nonstream | 1 |" in md
    assert json.loads(json.dumps(res, allow_nan=False)) == res  # JSON-ready: nothing lost or changed on the way


def test_throughput_counts_only_batches_where_every_request_completed():
    def record(batch, ok, latency):
        return {"server": "a", "mode": "stream", "concurrency": 2, "batch": batch, "ok": ok, "ttfa_s": 0.1,
                "latency_s": latency, "rtf": latency / 2.0, "audio_s": 2.0 if ok else None, "text_index": 0,
                "error": None if ok else "HTTP 500"}

    result = {"config": {"servers": {"a": "http://a"}},
              "batches": [{"server": "a", "mode": "stream", "concurrency": 2, "requests": 2, "ok": 2, "wall_s": 1.0},
                          {"server": "a", "mode": "stream", "concurrency": 2, "requests": 2, "ok": 2, "wall_s": 3.0},
                          {"server": "a", "mode": "stream", "concurrency": 2, "requests": 2, "ok": 1, "wall_s": 0.1}],
              "records": [record(0, True, 0.9), record(0, True, 1.0), record(1, True, 2.0), record(1, True, 3.0),
                          record(2, True, 0.1), record(2, False, 0.1)]}
    (cell,) = tts_load.summarize(result)
    assert cell["rps"] == 4 / 4.0  # 4 requests in 1 s + 3 s; the batch with a failure is left out
    assert (cell["batches"], cell["failed_batches"], cell["requests"], cell["ok"], cell["failed"]) == (3, 1, 6, 5, 1)
    assert cell["errors"] == ["HTTP 500"] and cell["latency_p50"] == 1.0


def test_compare_flags_different_audio_lengths_and_picks_servers(fakes):
    f = fakes()
    s = [tts_load.Server("a", f.url)]
    r1 = tts_load.run(s, ["ab"], "p", b"w", ["nonstream"], [1], {1: 1}, rounds=1, warmup=0, log=lambda _: None)
    r2 = tts_load.run(s, ["abc"], "p", b"w", ["nonstream"], [1], {1: 1}, rounds=1, warmup=0, log=lambda _: None)
    rows = tts_load.compare(r1, r2)
    assert rows[0]["same_audio_length"] is False and rows[0]["audio_s_mean"] == pytest.approx(1.5)
    with pytest.raises(ValueError):
        tts_load.compare(r1, r2, "nope")


def test_merge_keeps_everything_and_refuses_mismatches(fakes):
    f = fakes()
    s = [tts_load.Server("a", f.url)]
    r1 = tts_load.run(s, ["ab"], "p", b"w", [], [], {1: 1}, rounds=1, warmup=0, log=lambda _: None,
                      cells=[("nonstream", 1)])
    r2 = tts_load.run(s, ["ab"], "p", b"w", [], [], {2: 1}, rounds=2, warmup=0, log=lambda _: None,
                      cells=[("stream", 2)])
    m = tts_load.merge([r1, r2])
    assert [b["batch"] for b in m["batches"]] == [0, 1, 2]
    assert {r["part"] for r in m["records"]} == {0, 1} and len(m["records"]) == 1 + 4
    assert {(c["mode"], c["concurrency"]) for c in m["summary"]} == {("nonstream", 1), ("stream", 2)}
    assert m["rounds_done"] == 3
    r3 = tts_load.run(s, ["xyz"], "p", b"w", [], [], {1: 1}, rounds=1, warmup=0, log=lambda _: None,
                      cells=[("nonstream", 1)])
    with pytest.raises(ValueError, match="texts"):
        tts_load.merge([r1, r3])


def test_deadline_stops_between_rounds(fakes):
    f = fakes(first_delay=0.2)
    res = tts_load.run([tts_load.Server("a", f.url)], ["a"], "p", b"w", ["nonstream"], [1], {1: 1}, rounds=50,
                       warmup=0, deadline_s=0.5, log=lambda _: None)
    assert res["stopped_early"] and 1 <= res["rounds_done"] < 50
    assert len(res["batches"]) == res["rounds_done"]


def test_cli_run_table_compare_and_wait(fakes, tmp_path):
    a, b = fakes(chunk_delay=0.01), fakes(chunk_delay=0.0)
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    cmd = [sys.executable, str(REPO / "bench" / "tts_load.py")]
    p = subprocess.run(cmd + ["run", "--server", f"base={a.url}", "--server", f"new={b.url}", "--text", "abc",
                              "--cells", "nonstream:1,stream:2", "--rounds", "1", "--warmup", "0",
                              "--out", str(out), "--md", str(md)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "ratios new / base" in p.stdout and md.read_text() in p.stdout
    data = json.loads(out.read_text())
    assert data["schema"] == tts_load.SCHEMA and data["config"]["cells"] == [["nonstream", 1], ["stream", 2]]
    p = subprocess.run(cmd + ["compare", str(out), "--a", "base", "--b", "new", "--json"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0 and len(json.loads(p.stdout)) == 2
    p = subprocess.run(cmd + ["compare", str(out)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "say which one" in p.stderr
    p = subprocess.run(cmd + ["table", str(out)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "| stream | 2 | new |" in p.stdout
    merged, merged_md = tmp_path / "m.json", tmp_path / "m.md"
    p = subprocess.run(cmd + ["merge", str(out), str(out), "--out", str(merged), "--md", str(merged_md)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "ratios new / base" in p.stdout and merged_md.read_text() in p.stdout
    assert len(json.loads(merged.read_text())["records"]) == 2 * len(data["records"])
    p = subprocess.run(cmd + ["wait", "--server", f"a={a.url}", "--timeout", "5"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0 and "live after" in p.stderr
    p = subprocess.run(cmd + ["wait", "--server", "x=http://127.0.0.1:9", "--timeout", "1"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 1 and "not live" in p.stderr


def test_cli_run_exits_1_when_requests_fail(fakes, tmp_path):
    f = fakes(fail_text="bad")
    p = subprocess.run([sys.executable, str(REPO / "bench" / "tts_load.py"), "run", "--server", f.url, "--text",
                        "bad", "--cells", "nonstream:1", "--rounds", "1", "--warmup", "0"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "| nonstream | 1 |" in p.stdout and "0/1" in p.stdout


def test_mixed_cell_streams_on_odd_workers_at_the_same_time(fakes):
    fake = fakes(chunk_delay=0.01)
    res = tts_load.run([tts_load.Server("s", fake.url)], ["ab"], "p", b"wav", [], [], {}, rounds=2,
                       timeout=10, warmup=0, log=lambda *_: None, cells=tts_load.parse_cells("mixed:4:2"))
    recs = res["records"]
    assert len(recs) == 2 * 4 * 2 and all(r["ok"] and r["mode"] == "mixed" for r in recs)
    assert {(r["worker"], r["stream"]) for r in recs} == {(0, False), (1, True), (2, False), (3, True)}
    # what the server saw: the same split, request by request
    assert sorted(r["stream"] for r in fake.requests) == ["false"] * 8 + ["true"] * 8
    with pytest.raises(ValueError, match="stream, nonstream or mixed"):
        tts_load.parse_cells("both:4")


def test_parse_flow_steps():
    assert tts_load.parse_flow_steps("3,5,10") == [3, 5, 10]
    assert tts_load.parse_flow_steps("default, 10") == [None, 10]
    for bad in ("0", "x", "3,,5", "2.5", "-1"):
        with pytest.raises(ValueError, match="--flow-steps"):
            tts_load.parse_flow_steps(bad)


def test_flow_steps_cycle_by_slot_alike_on_every_server_and_are_recorded(fakes):
    a, b = fakes(), fakes()
    servers = [tts_load.Server("a", a.url), tts_load.Server("b", b.url)]
    res = tts_load.run(servers, ["ab", "abc"], "p", b"w", [], [], {}, rounds=2, warmup=1, log=lambda _: None,
                       cells=[("nonstream", 2, 2), ("stream", 1, 3)], flow_steps=[3, 5, 10, None])
    assert res["config"]["flow_steps"] == [3, 5, 10, None]
    sent = {f: [r.get("flow_steps") for r in f.requests] for f in (a, b)}
    assert sorted(sent[a], key=str) == sorted(sent[b], key=str)
    assert set(sent[a]) == {"3", "5", "10", None} and sent[a][0] == "3"  # warmup takes the first value
    for rec in res["records"]:  # slot k of a batch: text k and flow_steps k, both cycled
        assert rec["flow_steps"] == [3, 5, 10, None][rec["slot"] % 4] and rec["text_index"] == rec["slot"] % 2
    slots = sorted((r["round"], r["mode"], r["slot"], r["flow_steps"] or 0) for r in res["records"] if r["server"] == "a")
    assert slots == sorted((r["round"], r["mode"], r["slot"], r["flow_steps"] or 0)
                           for r in res["records"] if r["server"] == "b")
    by = {(c["server"], c["mode"], c["flow_steps"]): c for c in res["summary_by_steps"]}
    assert {k[2] for k in by} == {3, 5, 10, None}
    assert sum(c["requests"] for c in res["summary_by_steps"]) == len(res["records"])
    assert all(c["ok"] == c["requests"] and c["rtf_p50"] is not None for c in res["summary_by_steps"])
    assert "| nonstream | 2 | a | default |" in tts_load.steps_table(res["summary_by_steps"])
    merged = tts_load.merge([res, res])
    assert sum(c["requests"] for c in merged["summary_by_steps"]) == 2 * len(res["records"])
    json.dumps(res)
    plain = tts_load.run(servers, ["ab", "abc"], "p", b"w", [], [], {}, rounds=1, warmup=0, log=lambda _: None,
                         cells=[("nonstream", 1)])
    assert plain["summary_by_steps"] == [] and "flow_steps" not in a.requests[-1]
    with pytest.raises(ValueError, match="flow_steps"):
        tts_load.merge([res, plain])


def test_check_invalid_passes_only_when_bad_values_get_400_and_the_server_keeps_serving(fakes):
    wav = tts_load.make_prompt_wav(0.1)
    good = fakes(first_delay=0.3, check_flow_steps=True)
    res = tts_load.check_invalid(tts_load.Server("good", good.url), ["0", "51", "x", "2.5", ""], "abc", "p", wav,
                                 3, timeout=10, log=lambda _: None)
    assert res["ok"] and res["bad_sent_while_good_in_flight"]
    assert [(b["value"], b["stream"], b["status"], b["refused"]) for b in res["bad"]][:2] == [
        ("0", False, 400, True), ("0", True, 400, True)]
    assert len(res["bad"]) == 10 and res["good_during"]["ok"] and res["good_after"]["ok"]
    assert [r.get("flow_steps") for r in good.requests].count("3") == 2  # both good requests asked for 3 steps
    unchecked = fakes()  # an unpatched server takes any value (FastAPI ignores an unknown field)
    res = tts_load.check_invalid(tts_load.Server("u", unchecked.url), ["0"], "abc", "p", wav, 3, timeout=10,
                                 log=lambda _: None)
    assert not res["ok"] and res["bad"][0]["status"] == 200 and not res["bad"][0]["refused"]
    broken = fakes(check_flow_steps=True, break_on_bad=True)
    res = tts_load.check_invalid(tts_load.Server("b", broken.url), ["0"], "abc", "p", wav, 3, timeout=10,
                                 log=lambda _: None)
    assert not res["ok"] and all(b["refused"] for b in res["bad"]) and not res["good_after"]["ok"]


def test_cli_check_invalid_and_run_with_flow_steps(fakes, tmp_path):
    good, unchecked = fakes(check_flow_steps=True), fakes()
    cmd = [sys.executable, str(REPO / "bench" / "tts_load.py")]
    out = tmp_path / "invalid.json"
    p = subprocess.run(cmd + ["check-invalid", "--server", f"patched={good.url}", "--text", "ab", "--timeout", "10",
                              "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "patched: PASS: 12/12 bad values refused with 400" in p.stdout
    assert json.loads(out.read_text())["checks"][0]["values"] == tts_load.DEFAULT_INVALID_FLOW_STEPS
    p = subprocess.run(cmd + ["check-invalid", "--server", f"u={unchecked.url}", "--value", "0", "--text", "ab",
                              "--timeout", "10"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "u: FAIL: 0/2" in p.stdout and "NOT REFUSED" in p.stderr
    p = subprocess.run(cmd + ["check-invalid", "--server", f"u={unchecked.url}", "--good-steps", "3,5"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "one value" in p.stderr
    res = tmp_path / "r.json"
    p = subprocess.run(cmd + ["run", "--server", f"patched={good.url}", "--text", "ab", "--cells", "nonstream:3",
                              "--rounds", "1", "--warmup", "0", "--flow-steps", "3,5,10", "--out", str(res)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "| flow_steps |" in p.stdout and "| nonstream | 3 | patched | 10 | 1/1 |" in p.stdout
    assert sorted(r["flow_steps"] for r in json.loads(res.read_text())["records"]) == [3, 5, 10]
    p = subprocess.run(cmd + ["table", str(res)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "| nonstream | 3 | patched | 5 | 1/1 |" in p.stdout
    p = subprocess.run(cmd + ["run", "--server", good.url, "--flow-steps", "0"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 2 and "--flow-steps" in p.stderr
