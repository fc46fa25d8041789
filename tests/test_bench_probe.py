"""The benchmark-only start-up hook (bench/stubs) and the probe report, on fake modules (no torch, no upstream);
and, with LIGHTTTS_UPSTREAM / LIGHTTTS_UPSTREAM_V110, that every class the probe hooks exists at each pin.

The fakes mimic the names the probe hooks: cosyvoice.cli.model.CosyVoice2Model (token2wav, flow.decoder.
estimator), light_tts.models.cosyvoice2.model.CosyVoice2TpPartModel and the LLM backend's
ContinuesBatchBackend. Each scenario runs in a fresh interpreter with bench/stubs on PYTHONPATH, exactly as
the servers get it on the GPU machine.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STUBS = REPO / "bench" / "stubs"
sys.path.insert(0, str(REPO))

from bench import probe_report  # noqa: E402
from conftest import UPSTREAM_VARIABLES, upstream_checkout  # noqa: E402

# The decode side both fake models share: an estimator whose calls the probe counts.
FAKE_ESTIMATOR = '''
class Estimator:
    def forward(self, x):
        return x
    def __call__(self, x):
        return self.forward(x)

class Decoder:
    def __init__(self):
        self.estimator = Estimator()
'''

FAKE_COSYVOICE_MODEL = FAKE_ESTIMATOR + '''
class Flow:
    def __init__(self, steps):
        self.decoder = Decoder()
        if steps is not None:
            self.flow_steps = steps
    def inference(self):
        for _ in range(getattr(self, "flow_steps", 10)):
            self.decoder.estimator(1)

class Out:
    def __init__(self, n):
        self.shape = (1, n)

class CosyVoice2Model:
    def __init__(self, llm, flow, hift, fp16=False, **kw):
        self.fp16 = fp16
        self.flow = Flow(kw.get("flow_steps"))
    def token2wav(self, token, prompt_token, prompt_feat, embedding, token_offset, uuid, stream=False,
                  finalize=False, speed=1.0):
        self.flow.inference()
        return Out(960 * len(token))
'''

FAKE_LLM_MODEL = '''
class Tensor:
    def __init__(self, dtype, shape=(1,)):
        self.dtype, self.shape = dtype, shape

class LayerWeight:
    def __init__(self, dtype):
        self.q = Tensor(dtype)
        self.nested = {"k": Tensor(dtype), "v": [Tensor(dtype)]}

class Mem:
    kv_buffer = Tensor("torch.bfloat16", (24, 16384, 4, 64))

class CosyVoice2TpPartModel:
    def __init__(self, kvargs):
        self.data_type = kvargs["data_type"]
        self.trans_layers_weight = [LayerWeight(kvargs["data_type"]) for _ in range(3)]
        self.pre_post_weight = LayerWeight(kvargs["data_type"])
        self.mem_manager = Mem()
'''

FAKE_BACKEND = '''
import time
from light_tts.server.tts_llm.model_infer.infer_batch import g_infer_context

class ContinuesBatchBackend:
    def prefill(self, reqs):
        g_infer_context.infer_req_ids.extend(reqs)
        time.sleep(0.001)
    def decode(self):
        time.sleep(0.001)
        return "stepped"
'''

FAKE_INFER_BATCH = '''
class Ctx:
    infer_req_ids = []
g_infer_context = Ctx()
'''


def make_fake_tree(root: Path) -> Path:
    files = {
        "cosyvoice/__init__.py": "", "cosyvoice/cli/__init__.py": "", "cosyvoice/cli/model.py": FAKE_COSYVOICE_MODEL,
        "light_tts/__init__.py": "", "light_tts/models/__init__.py": "", "light_tts/models/cosyvoice2/__init__.py": "",
        "light_tts/models/cosyvoice2/model.py": FAKE_LLM_MODEL,
        "light_tts/server/__init__.py": "", "light_tts/server/tts_llm/__init__.py": "",
        "light_tts/server/tts_llm/model_infer/__init__.py": "",
        "light_tts/server/tts_llm/model_infer/infer_batch.py": FAKE_INFER_BATCH,
        "light_tts/server/tts_llm/model_infer/mode_backend/__init__.py": "",
        "light_tts/server/tts_llm/model_infer/mode_backend/continues_batch/__init__.py": "",
        "light_tts/server/tts_llm/model_infer/mode_backend/continues_batch/impl.py": FAKE_BACKEND,
    }
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def run_py(code: str, cwd: Path, env_extra: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTTTS_BENCH")}
    env.update({"PYTHONPATH": os.pathsep.join([str(STUBS), str(cwd)]), **env_extra})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


SCENARIO = '''
    import time
    from cosyvoice.cli.model import CosyVoice2Model
    from light_tts.models.cosyvoice2.model import CosyVoice2TpPartModel
    from light_tts.server.tts_llm.model_infer.mode_backend.continues_batch.impl import ContinuesBatchBackend
    import lighttts_bench_probe

    m = CosyVoice2Model(None, None, None, fp16=True, **({{"flow_steps": {steps}}} if {steps} else {{}}))
    assert m.token2wav([1] * 200, [0] * 75, None, None, 0, "u1") .shape == (1, 192000)
    m.token2wav([1] * 28, [0] * 75, None, None, 0, "u2", stream=True, finalize=False)
    m.token2wav([1] * 50, [0] * 75, None, None, 25, "u2", stream=True, finalize=True)
    CosyVoice2TpPartModel({{"data_type": "{dtype}"}})
    b = ContinuesBatchBackend()
    b.prefill(["r1", "r2"])
    assert b.decode() == "stepped"
    time.sleep(0.05)
    assert b.decode() == "stepped"
    lighttts_bench_probe.flush()
    print("scenario ok")
'''


def test_probe_records_what_proves_the_patches(tmp_path):
    tree = make_fake_tree(tmp_path / "tree")
    probe = tmp_path / "probe"
    for tag, steps, dtype in (("unpatched", 0, "torch.float16"), ("patched", 5, "torch.bfloat16")):
        p = run_py(SCENARIO.format(steps=steps, dtype=dtype), tree,
                   {"LIGHTTTS_BENCH_PROBE_DIR": str(probe), "LIGHTTTS_BENCH_TAG": tag})
        assert p.returncode == 0 and "scenario ok" in p.stdout, p.stderr
    files = sorted(probe.glob("probe-*.jsonl"))
    assert [f.name.split("-")[1] for f in files] == ["patched", "unpatched"]
    events = probe_report.read_events(map(str, files))
    t2w = [e for e in events if e["ev"] == "t2w"]
    assert [(e["tag"], e["est"], e["stream"], e["finalize"]) for e in t2w] == [
        ("patched", 5, False, False), ("patched", 5, True, False), ("patched", 5, True, True),
        ("unpatched", 10, False, False), ("unpatched", 10, True, False), ("unpatched", 10, True, True)]
    init = {e["tag"]: e for e in events if e["ev"] == "decode_init"}
    assert init["patched"]["flow_steps_arg"] == 5 and init["patched"]["flow_steps_attr"] == 5
    assert init["unpatched"]["flow_steps_attr"] is None and init["unpatched"]["fp16"] is True
    llm = {e["tag"]: e for e in events if e["ev"] == "llm_init"}
    assert llm["patched"]["data_type"] == "torch.bfloat16"
    assert llm["patched"]["layer_dtypes"] == {"torch.bfloat16": 9}
    assert llm["unpatched"]["layer_dtypes"] == {"torch.float16": 9}
    assert llm["patched"]["kv_dtype"] == "torch.bfloat16" and llm["patched"]["kv_shape"] == [24, 16384, 4, 64]
    steps = [(e["tag"], e["kind"], e["batch"]) for e in events if e["ev"] == "llm"]
    assert steps.count(("patched", "prefill", 2)) == 1 and steps.count(("patched", "decode", 2)) == 2

    s = probe_report.summarize(events)
    assert s["patched"]["estimator_calls_per_token2wav"] == {"nonstream": {"5": 1}, "stream": {"5": 1},
                                                             "stream/final": {"5": 1}}
    assert s["unpatched"]["flow_steps_attr"] == ["None"] and s["patched"]["flow_steps_attr"] == ["5"]
    assert s["patched"]["token2wav_nonstream"]["calls"] == 1
    assert s["patched"]["token2wav_nonstream"]["audio_s"] == pytest.approx(8.0)
    assert s["patched"]["llm_steps"]["decode"]["2"]["all"]["n"] == 2
    rows = probe_report.compare_llm(s, "unpatched", "patched")
    assert [r["batch"] for r in rows] == [2] and rows[0]["all_ratio"] is not None
    md = probe_report.markdown(s, "unpatched", "patched")
    assert "| patched | 5 |" in md and "LLM decode step" in md


def test_probe_is_off_without_the_variable_and_the_audio_shim_is_on(tmp_path):
    tree = make_fake_tree(tmp_path / "tree")
    code = '''
        import sys, types
        from cosyvoice.cli.model import CosyVoice2Model
        assert not getattr(CosyVoice2Model, "_lighttts_bench_patched", False)
        import lighttts_bench_hooks as h
        assert "torchaudio" in h._callbacks
        seen = []
        h.when_imported("os", lambda m: seen.append(m.__name__))  # already imported: runs at once
        assert seen == ["os"]
        print("ok")
    '''
    p = run_py(code, tree, {})
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr
    p = run_py("import lighttts_bench_hooks as h; assert 'torchaudio' not in h._callbacks; print('ok')", tree,
               {"LIGHTTTS_BENCH_NO_AUDIO_SHIM": "1"})
    assert p.returncode == 0, p.stderr


def test_post_import_hook_runs_after_the_module_and_survives_a_failing_callback(tmp_path):
    (tmp_path / "target_mod.py").write_text("VALUE = 1\n")
    code = '''
        import lighttts_bench_hooks as h
        order = []
        h.when_imported("target_mod", lambda m: order.append(("first", m.VALUE)))
        h.when_imported("target_mod", lambda m: 1 / 0)
        h.when_imported("target_mod", lambda m: order.append(("third", m.VALUE)))
        import target_mod
        assert order == [("first", 1), ("third", 1)], order
        assert target_mod.__spec__.loader.__class__.__name__ == "SourceFileLoader"
        import importlib; importlib.reload(target_mod)
        print("ok")
    '''
    p = run_py(code, tmp_path, {})
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr
    assert "callback for target_mod failed" in p.stderr and "ZeroDivisionError" in p.stderr


def test_torchaudio_shim_reads_wav_channels_first_through_soundfile(tmp_path):
    """The shim's own work, with a stand-in torch whose from_numpy hands the array back (CI has no torch)."""
    pytest.importorskip("soundfile", reason="soundfile is in the `bench` extra (pip install -e '.[bench]')")
    code = '''
        import io, types, sys
        import numpy as np
        sys.path.insert(0, %r)
        sys.modules["torch"] = types.SimpleNamespace(from_numpy=lambda array: ("tensor", array))
        from bench.tts_load import make_prompt_wav
        import lighttts_bench_hooks as h
        ta = types.ModuleType("torchaudio")
        h.replace_torchaudio_load(ta)
        (kind, wav), rate = ta.load(io.BytesIO(make_prompt_wav(1.0)), backend="soundfile")
        assert kind == "tensor" and rate == 16000 and wav.shape == (1, 16000) and wav.dtype == np.float32
        assert wav.flags["C_CONTIGUOUS"] and 0 < float(np.abs(wav).max()) <= 1.0
        (_, part), _ = ta.load(io.BytesIO(make_prompt_wav(1.0)), frame_offset=100, num_frames=50)
        assert part.shape == (1, 50) and np.array_equal(part, wav[:, 100:150])
        (_, frames_first), _ = ta.load(io.BytesIO(make_prompt_wav(1.0)), channels_first=False)
        assert frames_first.shape == (16000, 1)
        print("ok")
    ''' % str(REPO)
    p = run_py(code, tmp_path, {})
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr


def test_torchaudio_shim_reads_wav_like_torchaudio(tmp_path):
    pytest.importorskip("soundfile", reason="soundfile is in the `bench` extra (pip install -e '.[bench]')")
    pytest.importorskip("torch", reason="torch is not installed (the GPU machine has it)")
    code = '''
        import io, types, sys
        sys.path.insert(0, %r)
        from bench.tts_load import make_prompt_wav
        import lighttts_bench_hooks as h
        ta = types.ModuleType("torchaudio")
        h.replace_torchaudio_load(ta)
        wav, rate = ta.load(io.BytesIO(make_prompt_wav(1.0)), backend="soundfile")
        assert rate == 16000 and tuple(wav.shape) == (1, 16000) and str(wav.dtype) == "torch.float32"
        assert float(wav.abs().max()) <= 1.0
        print("ok")
    ''' % str(REPO)
    p = run_py(code, tmp_path, {})
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr


def test_stubs_for_tn_wetext_and_pyworld(tmp_path):
    code = '''
        from tn.chinese.normalizer import Normalizer as Zh
        from tn.english.normalizer import Normalizer as En
        assert Zh(remove_erhua=False, full_to_half=False, overwrite_cache=True).normalize("一 2") == "一 2"
        assert En().normalize("3 apples") == "3 apples"
        from wetext import Normalizer  # ad1c76e's frontend
        assert Normalizer(remove_erhua=False).normalize("一 2") == "一 2"
        import pyworld
        try:
            pyworld.harvest
        except AttributeError as e:
            assert "stand-in" in str(e)
        else:
            raise SystemExit("pyworld stub should refuse use")
        print("ok")
    '''
    p = run_py(code, tmp_path, {})
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr


def test_overlap_and_isolated_llm_steps():
    starts, ends = [1.0, 5.0], [2.0, 6.0]
    assert probe_report.overlaps(starts, ends, 1.5, 1.6)
    assert probe_report.overlaps(starts, ends, 0.5, 1.1)
    assert not probe_report.overlaps(starts, ends, 2.1, 4.9)
    assert not probe_report.overlaps(starts, ends, 6.1, 7.0)
    assert not probe_report.overlaps([], [], 0, 1)
    events = [
        {"ev": "t2w", "tag": "a", "t": 10.0, "dur": 1.0, "est": 10, "stream": False, "finalize": True,
         "samples": [1, 24000]},
        {"ev": "llm", "tag": "a", "kind": "decode", "t": 10.5, "dur": 0.01, "batch": 1},
        {"ev": "llm", "tag": "a", "kind": "decode", "t": 12.0, "dur": 0.02, "batch": 1},
        {"ev": "llm", "tag": "b", "kind": "decode", "t": 10.5, "dur": 0.03, "batch": 1},
    ]
    s = probe_report.summarize(events)
    a = s["a"]["llm_steps"]["decode"]["1"]
    assert a["all"]["n"] == 2 and a["isolated"]["n"] == 1 and a["isolated"]["p50_ms"] == pytest.approx(20.0)
    assert s["b"]["llm_steps"]["decode"]["1"]["isolated"]["n"] == 1  # other servers' decode doesn't count
    assert s["a"]["token2wav_nonstream"]["s_per_audio_s"] == pytest.approx(1.0)
    rows = probe_report.compare_llm(s, "a", "b")
    assert rows[0]["isolated_ratio"] == pytest.approx(1.5)


def test_report_cli(tmp_path):
    (tmp_path / "probe-x-1.jsonl").write_text(
        json.dumps({"ev": "llm", "tag": "x", "kind": "decode", "t": 1, "dur": 0.01, "batch": 1}) + "\n{cut")
    p = subprocess.run([sys.executable, str(REPO / "bench" / "probe_report.py"), str(tmp_path), "--json",
                        str(tmp_path / "s.json")], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "s.json").read_text())["summary"]["x"]["llm_steps"]["decode"]["1"]["all"]["n"] == 1
    p = subprocess.run([sys.executable, str(REPO / "bench" / "probe_report.py"), str(tmp_path / "none")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "no probe" in p.stderr


def test_memory_report_per_server_process_and_soak_growth(tmp_path):
    from bench import probe_report
    # server "p" is process group 100 (llm pid 101, decode pid 102); 900 is someone else (the budget holder)
    mem = tmp_path / "mem.csv"
    rows = []
    for i, t in enumerate(range(1000, 1100, 10)):
        rows += [f"{t},gpu,101,100,{5000 + i}", f"{t},gpu,102,100,{2000 + 10 * i}", f"{t},gpu,901,900,50000",
                 f"{t},host,-,100,{8000 + 60 * i}", f"{t},host,-,900,300"]
    mem.write_text("\n".join(rows) + "\n1100,gpu,10")  # last line cut short by a kill
    events = tmp_path / "events.log"
    events.write_text("990 launch p pgid 100\n1020 live p\n1040 soak-start p\n1080 soak-end p\n")
    probe = [{"ev": "llm_init", "pid": 101}, {"ev": "decode_init", "pid": 102}]
    got = probe_report.summarize_memory(probe_report.read_mem(str(mem)), probe_report.read_marks(str(events)),
                                        probe)
    assert list(got) == ["p"]
    p = got["p"]
    # first sample at or after live (t=1020, i=2); peaks at i=9
    assert p["processes"] == {"llm 101": {"at_live_mib": 5002.0, "peak_mib": 5009.0, "last_mib": 5009.0},
                              "decode 102": {"at_live_mib": 2020.0, "peak_mib": 2090.0, "last_mib": 2090.0}}
    assert (p["gpu_total_at_live_mib"], p["gpu_total_peak_mib"]) == (7022.0, 7099.0)
    assert (p["host_rss_at_live_mib"], p["host_rss_peak_mib"]) == (8120.0, 8540.0)
    soak = p["soak"]
    # samples t=1040..1080 (i=4..8): GPU grows 11 MiB per 10 s, host 60 MiB per 10 s
    assert soak["samples"] == 5 and soak["seconds"] == 40
    assert (soak["gpu_first_mib"], soak["gpu_last_mib"]) == (7044.0, 7088.0)
    assert soak["gpu_mib_per_min"] == pytest.approx(66.0) and soak["host_mib_per_min"] == pytest.approx(360.0)
    md = probe_report.memory_markdown(got)
    assert "| p | llm 101 | 5002.0 | 5009.0 |" in md and "soak p: 40 s, 5 samples" in md


def test_soak_last_half_slope_tells_a_step_from_growth(tmp_path):
    """One step up early in the soak (a heavier load joins) is in the whole-soak slope, not in the last half's;
    a steady host growth is in both."""
    from bench import probe_report
    mem = tmp_path / "mem.csv"
    rows = []
    for i, t in enumerate(range(1000, 1200, 10)):
        rows += [f"{t},gpu,101,100,{7000 if t < 1040 else 7700}", f"{t},host,-,100,{9000 + 6 * i}"]
    mem.write_text("\n".join(rows) + "\n")
    events = tmp_path / "events.log"
    events.write_text("990 launch p pgid 100\n1000 live p\n1000 soak-start p\n1190 soak-end p\n")
    got = probe_report.summarize_memory(probe_report.read_mem(str(mem)), probe_report.read_marks(str(events)), [])
    soak = got["p"]["soak"]
    assert soak["gpu_mib_per_min"] > 100 and soak["gpu_mib_per_min_last_half"] == 0
    assert soak["host_mib_per_min"] == pytest.approx(36.0) and soak["host_mib_per_min_last_half"] == pytest.approx(36.0)
    assert "last half 0.0" in probe_report.memory_markdown(got)


def test_probe_says_loudly_when_a_hooked_class_or_method_is_missing(tmp_path):
    tree = make_fake_tree(tmp_path / "tree")
    model = tree / "cosyvoice/cli/model.py"
    model.write_text(model.read_text().replace("class CosyVoice2Model:", "class CosyVoice2ModelRenamed:"))
    backend = tree / "light_tts/server/tts_llm/model_infer/mode_backend/continues_batch/impl.py"
    backend.write_text(backend.read_text().replace("def decode(self):", "def decode_step(self):"))
    probe = tmp_path / "probe"
    code = '''
        import cosyvoice.cli.model
        import light_tts.models.cosyvoice2.model
        import light_tts.server.tts_llm.model_infer.mode_backend.continues_batch.impl as impl
        impl.ContinuesBatchBackend().prefill(["r1"])  # the class is found, only decode is missing
        import lighttts_bench_probe
        lighttts_bench_probe.flush()
        print("imported")
    '''
    p = run_py(code, tree, {"LIGHTTTS_BENCH_PROBE_DIR": str(probe), "LIGHTTTS_BENCH_TAG": "renamed"})
    assert p.returncode == 0 and "imported" in p.stdout, p.stderr
    assert "[bench probe] MISSING in cosyvoice.cli.model: CosyVoice2Model (upstream changed?)" in p.stderr
    assert ("[bench probe] MISSING in light_tts.server.tts_llm.model_infer.mode_backend.continues_batch.impl: "
            "ContinuesBatchBackend.decode") in p.stderr
    assert "CosyVoice2TpPartModel" not in p.stderr  # found, so not reported
    events = probe_report.read_events(map(str, probe.glob("probe-*.jsonl")))
    assert sorted(m for e in events if e["ev"] == "probe_missing" for m in e["missing"]) == [
        "ContinuesBatchBackend.decode", "CosyVoice2Model"]
    report = subprocess.run([sys.executable, str(REPO / "bench" / "probe_report.py"), str(probe)],
                            capture_output=True, text=True, timeout=30)
    assert report.returncode == 0, report.stderr
    assert report.stdout.startswith("**PROBE INCOMPLETE**") and "renamed: ContinuesBatchBackend.decode, " \
        "CosyVoice2Model" in report.stdout
    assert "WARNING: server 'renamed': the probe found no ContinuesBatchBackend.decode, CosyVoice2Model" in report.stderr


def probe_targets() -> tuple[dict, str, tuple]:
    """The probe's own list of what it hooks (imported from bench/stubs, then taken off sys.path)."""
    sys.path.insert(0, str(STUBS))
    try:
        import lighttts_bench_probe as probe
    finally:
        sys.path.remove(str(STUBS))
    return probe.HOOKED, probe.INFER_BATCH_MOD, probe.INFER_CONTEXT


def module_source(checkout: Path, module: str) -> Path:
    """Where `module` comes from with the PYTHONPATH launch_a10.sh gives the server (checkout, then cosyvoice)."""
    for root in (checkout, checkout / "cosyvoice"):
        for candidate in (root / (module.replace(".", "/") + ".py"), root / module.replace(".", "/") / "__init__.py"):
            if candidate.is_file():
                return candidate
    pytest.fail(f"{module} is not in {checkout} (nor its cosyvoice folder): the probe can never hook it")


@pytest.mark.parametrize("variable", sorted(UPSTREAM_VARIABLES))
def test_every_class_the_probe_hooks_exists_in_the_real_upstream(variable):
    checkout = upstream_checkout(variable)
    hooked, infer_batch_module, (context_name, ids_name) = probe_targets()
    assert len(hooked) == 3  # decode model, LLM model, LLM backend: all the probe's wrappers
    for module, (class_name, methods) in hooked.items():
        tree = ast.parse(module_source(checkout, module).read_text())
        classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
        assert class_name in classes, f"{module} has no class {class_name} at {UPSTREAM_VARIABLES[variable]}"
        defined = {item.name for item in classes[class_name].body if isinstance(item, ast.FunctionDef)}
        assert set(methods) <= defined, f"{module}.{class_name} lacks {set(methods) - defined}"
    tree = ast.parse(module_source(checkout, infer_batch_module).read_text())
    assert context_name in {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                            if isinstance(t, ast.Name)}
    assert ids_name in {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}


FAKE_PER_REQUEST_MODEL = 'import os\n' + FAKE_ESTIMATOR + '''
class Flow:
    def __init__(self, steps):
        self.decoder = Decoder()
        self.flow_steps = steps
    def inference(self, flow_steps=None):  # the patched flow: a request's own steps, else the server's
        if os.environ.get("FAKE_IGNORES_REQUEST_STEPS"):
            flow_steps = None
        for _ in range(flow_steps or self.flow_steps):
            self.decoder.estimator(1)

class Out:
    def __init__(self, n):
        self.shape = (1, n)

class CosyVoice2Model:
    def __init__(self, llm, flow, hift, fp16=False, flow_steps=10):
        self.fp16 = fp16
        self.flow = Flow(flow_steps)
    def token2wav(self, token, prompt_token, prompt_feat, embedding, token_offset, uuid, stream=False,
                  finalize=False, speed=1.0, flow_steps=None):
        self.flow.inference(flow_steps=flow_steps)
        return Out(960 * (len(token) - token_offset))
'''

PER_REQUEST_SCENARIO = '''
    from cosyvoice.cli.model import CosyVoice2Model
    import lighttts_bench_probe

    m = CosyVoice2Model(None, None, None, fp16=True, flow_steps=5)
    # as model_rpc calls it: request id as uuid, the request's flow_steps (0: none asked) on every chunk
    m.token2wav([1] * 100, [0] * 75, None, None, 0, 11, stream=False, finalize=True, speed=1.0, flow_steps=3)
    for offset, final in ((0, False), (28, False), (53, True)):
        m.token2wav([1] * (offset + 31), [0] * 75, None, None, offset, 12, stream=True, finalize=final,
                    speed=1.0, flow_steps=10)
    m.token2wav([1] * 100, [0] * 75, None, None, 0, 13, stream=False, finalize=True, speed=1.0, flow_steps=0)
    m.token2wav([1] * 50, [0] * 75, None, None, 0, 14, stream=True, finalize=True, speed=1.0, flow_steps=3)
    m.token2wav([1] * 200, [0] * 75, None, None, 0, 15, stream=False, finalize=True, speed=1.0, flow_steps=10)
    lighttts_bench_probe.flush()
    print("scenario ok")
'''


def per_request_run(tmp_path, tag: str, env: dict) -> dict:
    tree = make_fake_tree(tmp_path / f"tree-{tag}")
    (tree / "cosyvoice/cli/model.py").write_text(FAKE_PER_REQUEST_MODEL)
    probe = tmp_path / "probe"
    p = run_py(PER_REQUEST_SCENARIO, tree, {"LIGHTTTS_BENCH_PROBE_DIR": str(probe), "LIGHTTTS_BENCH_TAG": tag, **env})
    assert p.returncode == 0 and "scenario ok" in p.stdout, p.stderr
    events = probe_report.read_events(map(str, sorted(probe.glob(f"probe-{tag}-*.jsonl"))))
    return {"events": events, "summary": probe_report.summarize(events)}


def test_probe_records_request_and_requested_steps_and_report_groups_by_them(tmp_path):
    run = per_request_run(tmp_path, "patched", {})
    t2w = [e for e in run["events"] if e["ev"] == "t2w"]
    assert [(e["req"], e["steps_req"], e["est"], e["fs"]) for e in t2w] == [
        (11, 3, 3, 5), (12, 10, 10, 5), (12, 10, 10, 5), (12, 10, 10, 5), (13, 0, 5, 5), (14, 3, 3, 5), (15, 10, 10, 5)]
    by = run["summary"]["patched"]["by_requested_steps"]
    assert list(by) == ["3", "10", "default"]
    assert by["3"] == {"effective_steps": [3], "calls": 2, "requests": 2, "estimator_calls_per_call": {"3": 2},
                       "requests_exact": 2, "requests_not_exact": [],
                       "s_per_audio_s_nonstream": by["3"]["s_per_audio_s_nonstream"],
                       "s_per_audio_s_stream": by["3"]["s_per_audio_s_stream"]}
    assert by["10"]["calls"] == 4 and by["10"]["requests"] == 2 and by["10"]["requests_exact"] == 2
    assert by["default"]["effective_steps"] == [5] and by["default"]["estimator_calls_per_call"] == {"5": 1}
    assert by["3"]["s_per_audio_s_nonstream"] is not None and by["10"]["s_per_audio_s_stream"] is not None
    assert by["default"]["s_per_audio_s_stream"] is None
    md = probe_report.markdown(run["summary"])
    assert "| patched | 3 | 3 | 2 | 2 | 2 | 3x2 |" in md and "| patched | default | 5 | 1 | 1 | 1 | 5x1 |" in md


def test_report_flags_requests_whose_calls_ignore_their_steps(tmp_path):
    """A server that takes the field but decodes with its own steps: no request of 3 or 10 steps is exact."""
    by = per_request_run(tmp_path, "ignoring", {"FAKE_IGNORES_REQUEST_STEPS": "1"})["summary"]["ignoring"][
        "by_requested_steps"]
    assert by["3"]["requests_exact"] == 0 and by["3"]["requests_not_exact"] == ["11", "14"]
    assert by["3"]["estimator_calls_per_call"] == {"5": 2} and by["10"]["requests_exact"] == 0
    assert by["default"]["requests_exact"] == 1


def test_report_leaves_out_the_breakdown_for_probes_without_request_steps():
    events = [{"ev": "t2w", "tag": "old", "t": 1.0, "dur": 0.5, "est": 10, "stream": False, "finalize": True,
               "samples": [1, 24000], "fs": None}]
    s = probe_report.summarize(events)
    assert s["old"]["by_requested_steps"] == {} and "Per requested flow_steps" not in probe_report.markdown(s)
