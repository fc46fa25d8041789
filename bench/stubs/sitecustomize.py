"""Benchmark-only start-up hook for LightTTS processes (put bench/stubs on PYTHONPATH; never installed).

Python imports `sitecustomize` in every process at start-up, spawned children included, so this reaches
the gunicorn worker and LightTTS's encode, LLM and decode processes without editing any upstream file.

1. Always: after `torchaudio` is imported, `torchaudio.load` is replaced by a soundfile reader.
   torchaudio 2.9+ sends every load to TorchCodec, which needs FFmpeg libraries the benchmark machine
   lacks; cosyvoice/utils/file_utils.py:load_wav would fail on every request. Same result shape:
   (channels, frames) float32 in [-1, 1], and the sample rate. Set LIGHTTTS_BENCH_NO_AUDIO_SHIM=1 to skip.
2. Only when LIGHTTTS_BENCH_PROBE_DIR is set: lighttts_bench_probe records, per process, what proves
   the patches are in effect (estimator calls per token2wav call, LLM weight and KV-cache dtypes, LLM
   step times). See lighttts_bench_probe.py.

This module shadows any other sitecustomize on the path; the benchmark environment has none it needs.
"""

import os
import sys

try:
    import lighttts_bench_hooks as _hooks
except Exception as _exc:  # noqa: BLE001 - never break interpreter start-up
    print(f"[bench sitecustomize] hooks unavailable: {_exc!r}", file=sys.stderr)
else:
    if os.environ.get("LIGHTTTS_BENCH_NO_AUDIO_SHIM") != "1":
        _hooks.when_imported("torchaudio", _hooks.replace_torchaudio_load)
    if os.environ.get("LIGHTTTS_BENCH_PROBE_DIR"):
        try:
            import lighttts_bench_probe

            lighttts_bench_probe.install(os.environ["LIGHTTTS_BENCH_PROBE_DIR"])
        except Exception as _exc:  # noqa: BLE001
            print(f"[bench sitecustomize] probe not installed: {_exc!r}", file=sys.stderr)
