"""In-process evidence that the patches are in effect, from inside the running server processes.

Installed by sitecustomize.py when LIGHTTTS_BENCH_PROBE_DIR is set. No upstream file is edited: the
classes are wrapped right after their modules are imported (lighttts_bench_hooks.when_imported).
Each process appends JSON lines to DIR/probe-<tag>-<pid>.jsonl, tag = $LIGHTTTS_BENCH_TAG. Events:

- decode_init   CosyVoice2Model.__init__ (decode process): fp16, the flow_steps argument if any, the
                flow's flow_steps attribute after init (absent upstream)
- t2w           one token2wav call: start time, seconds (device synchronized at the end, as the caller's
                .cpu() would), estimator calls during the call, eager forwards plus CUDA-graph replays
                (`graphed`, the flow-cuda-graph patch) (= Euler steps; CFG is batch 2
                inside one call), tokens, prompt tokens, token offset, stream, finalize, samples out,
                flow parameter dtype, flow.flow_steps (fs), the request id (req: token2wav's uuid, which
                LightTTS sets to the request id) and the flow_steps keyword the call got (steps_req: the
                request's own value on a server with per-request steps; absent or 0 means the server's)
- llm_init      CosyVoice2TpPartModel.__init__ (LLM process): data_type, dtypes of every tensor in the
                transformer layers and pre/post weights, KV-cache buffer dtype and shape, device name
- llm           one LLM backend step (ContinuesBatchBackend.prefill / decode, which end with a .cpu()):
                kind, start, seconds, batch size

If a hooked module lacks its class or a method (upstream renamed it), the probe says so on stderr
("[bench probe] MISSING ...") and writes a probe_missing event, which probe_report.py puts at the top of
its report: the events that hook would have written are absent, not zero.

Overhead: one perf_counter pair per LLM step, a forward pre-hook counter and one synchronize per
token2wav call (the caller synchronizes right after anyway). Lines are buffered and flushed by a
daemon thread every second, so a killed process loses at most about a second of events.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time

import lighttts_bench_hooks as hooks

_state = {"file": None, "buf": [], "lock": threading.Lock(), "tag": "", "est_calls": 0}

MODEL_MOD = "cosyvoice.cli.model"
LLM_MODEL_MOD = "light_tts.models.cosyvoice2.model"
BACKEND_MOD = "light_tts.server.tts_llm.model_infer.mode_backend.continues_batch.impl"
INFER_BATCH_MOD = "light_tts.server.tts_llm.model_infer.infer_batch"

# Every class the probe wraps, and the methods it wraps: tests/test_bench_probe.py checks that each one
# exists at both supported pins.
HOOKED = {
    MODEL_MOD: ("CosyVoice2Model", ("__init__", "token2wav")),
    LLM_MODEL_MOD: ("CosyVoice2TpPartModel", ("__init__",)),
    BACKEND_MOD: ("ContinuesBatchBackend", ("prefill", "decode")),
}
# Read, not wrapped: INFER_BATCH_MOD.g_infer_context.infer_req_ids gives the running LLM batch size.
INFER_CONTEXT = ("g_infer_context", "infer_req_ids")


def emit(ev: str, **fields) -> None:
    line = json.dumps({"ev": ev, "tag": _state["tag"], "pid": os.getpid(), **fields}, default=str)
    with _state["lock"]:
        _state["buf"].append(line)


def flush() -> None:
    with _state["lock"]:
        lines, _state["buf"] = _state["buf"], []
    if lines and _state["file"] is not None:
        with open(_state["file"], "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


def _flusher() -> None:
    while True:
        time.sleep(1.0)
        try:
            flush()
        except Exception:  # noqa: BLE001
            pass


def install(directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    _state["tag"] = os.environ.get("LIGHTTTS_BENCH_TAG", "")
    _state["file"] = os.path.join(directory, f"probe-{_state['tag'] or 'untagged'}-{os.getpid()}.jsonl")
    threading.Thread(target=_flusher, name="bench-probe-flush", daemon=True).start()
    atexit.register(flush)
    hooks.when_imported(MODEL_MOD, patch_cosyvoice_model)
    hooks.when_imported(LLM_MODEL_MOD, patch_llm_model)
    hooks.when_imported(BACKEND_MOD, patch_backend)


def hooked_class(mod) -> type | None:
    """The class HOOKED names in `mod`, with every method the probe wraps; else say so loudly and give None."""
    name, methods = HOOKED[mod.__name__]
    cls = getattr(mod, name, None)
    missing = [name] if cls is None else [f"{name}.{m}" for m in methods if not callable(getattr(cls, m, None))]
    if missing:
        print(f"[bench probe] MISSING in {mod.__name__}: {', '.join(missing)} (upstream changed?); the probe "
              f"records nothing from it", file=sys.stderr, flush=True)
        emit("probe_missing", module=mod.__name__, missing=missing, t=time.time())
        flush()
        return None
    return cls


# --------------------------------------------------------------------------- decode process

def _sync() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()


def _count_estimator_calls(estimator) -> None:
    """Count forward calls of the flow estimator (an nn.Module unless TensorRT is loaded)."""
    if estimator is None or getattr(estimator, "_lighttts_bench_counted", False):
        return

    def bump(*_args, **_kwargs):
        _state["est_calls"] += 1

    if hasattr(estimator, "register_forward_pre_hook"):
        estimator.register_forward_pre_hook(lambda module, args: bump())
    else:  # a plain callable (tests, or a non-Module estimator)
        inner = estimator.forward

        def forward(*args, **kwargs):
            bump()
            return inner(*args, **kwargs)

        estimator.forward = forward
    try:
        estimator._lighttts_bench_counted = True
    except Exception:  # noqa: BLE001
        pass


def _param_dtype(module) -> str | None:
    try:
        return str(next(module.parameters()).dtype)
    except Exception:  # noqa: BLE001
        return None


def _shape(x) -> list | None:
    try:
        return list(x.shape)
    except Exception:  # noqa: BLE001
        return None


def patch_cosyvoice_model(mod) -> None:
    cls = hooked_class(mod)
    if cls is None or getattr(cls, "_lighttts_bench_patched", False):
        return
    init, token2wav = cls.__init__, cls.token2wav

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        emit("decode_init", fp16=getattr(self, "fp16", None), flow_steps_arg=kwargs.get("flow_steps"),
             flow_steps_attr=getattr(getattr(self, "flow", None), "flow_steps", None),
             flow_class=type(getattr(self, "flow", None)).__name__, t=time.time())

    def wrapped_token2wav(self, token, prompt_token, prompt_feat, embedding, token_offset, uuid, *args, **kwargs):
        flow = getattr(self, "flow", None)
        _count_estimator_calls(getattr(getattr(flow, "decoder", None), "estimator", None))
        _state["est_calls"] = 0
        # flow-cuda-graph patch: a replayed estimator step runs no forward hook; the CFM counts its replays
        replays = getattr(getattr(flow, "decoder", None), "graph_replays", 0)
        t_start = time.time()
        t0 = time.perf_counter()
        out = token2wav(self, token, prompt_token, prompt_feat, embedding, token_offset, uuid, *args, **kwargs)
        _sync()
        dur = time.perf_counter() - t0
        stream = kwargs.get("stream", args[0] if len(args) > 0 else False)
        finalize = kwargs.get("finalize", args[1] if len(args) > 1 else False)
        graphed = getattr(getattr(flow, "decoder", None), "graph_replays", 0) - replays
        emit("t2w", t=t_start, dur=dur, est=_state["est_calls"] + graphed, graphed=graphed, tokens=_shape(token), prompt=_shape(prompt_token),
             offset=int(token_offset), stream=bool(stream), finalize=bool(finalize), samples=_shape(out),
             flow_dtype=_param_dtype(flow), fs=getattr(flow, "flow_steps", None), req=uuid,
             steps_req=kwargs.get("flow_steps"))
        return out

    cls.__init__ = __init__
    cls.token2wav = wrapped_token2wav
    cls._lighttts_bench_patched = True


# --------------------------------------------------------------------------- LLM process

def tensor_dtypes(obj, depth: int = 3, seen=None) -> dict[str, int]:
    """Count dtypes of tensors reachable through attributes, lists and dicts (a few levels deep)."""
    seen = set() if seen is None else seen
    counts: dict[str, int] = {}
    if id(obj) in seen or depth < 0:
        return counts
    seen.add(id(obj))
    dtype = getattr(obj, "dtype", None)
    if dtype is not None and hasattr(obj, "shape"):
        counts[str(dtype)] = counts.get(str(dtype), 0) + 1
        return counts
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        children = list(obj)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        children = list(vars(obj).values())
    else:
        return counts
    for child in children:
        for k, v in tensor_dtypes(child, depth - 1, seen).items():
            counts[k] = counts.get(k, 0) + v
    return counts


def patch_llm_model(mod) -> None:
    cls = hooked_class(mod)
    if cls is None or getattr(cls, "_lighttts_bench_patched", False):
        return
    init = cls.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        kv = getattr(getattr(self, "mem_manager", None), "kv_buffer", None)
        device = None
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            device = torch.cuda.get_device_name()
        emit("llm_init", data_type=str(getattr(self, "data_type", None)),
             layer_dtypes=tensor_dtypes(getattr(self, "trans_layers_weight", None), depth=4),
             pre_post_dtypes=tensor_dtypes(getattr(self, "pre_post_weight", None), depth=3),
             kv_dtype=str(getattr(kv, "dtype", None)), kv_shape=_shape(kv), device=device, t=time.time())

    cls.__init__ = __init__
    cls._lighttts_bench_patched = True


def _running_batch() -> int | None:
    ib = sys.modules.get(INFER_BATCH_MOD)
    ctx = getattr(ib, INFER_CONTEXT[0], None)
    ids = getattr(ctx, INFER_CONTEXT[1], None)
    return len(ids) if ids is not None else None


def patch_backend(mod) -> None:
    cls = hooked_class(mod)
    if cls is None or getattr(cls, "_lighttts_bench_patched", False):
        return
    prefill, decode = cls.prefill, cls.decode

    def wrapped_prefill(self, reqs, *args, **kwargs):
        t_start, t0 = time.time(), time.perf_counter()
        try:
            return prefill(self, reqs, *args, **kwargs)
        finally:
            emit("llm", kind="prefill", t=t_start, dur=time.perf_counter() - t0, batch=len(reqs))

    def wrapped_decode(self, *args, **kwargs):
        batch = _running_batch()
        t_start, t0 = time.time(), time.perf_counter()
        try:
            return decode(self, *args, **kwargs)
        finally:
            emit("llm", kind="decode", t=t_start, dur=time.perf_counter() - t0, batch=batch)

    cls.prefill = wrapped_prefill
    cls.decode = wrapped_decode
    cls._lighttts_bench_patched = True
