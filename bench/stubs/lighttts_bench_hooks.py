"""Run a callback right after a named module is imported, without editing that module.

`when_imported(name, callback)` puts one finder at the front of sys.meta_path. When `name` is imported,
the finder asks the other finders for the real spec and wraps its loader so that `callback(module)` runs
after the module's code. If the module is already imported, the callback runs at once. Callbacks that
raise are reported on stderr and otherwise ignored: a benchmark hook must never break the server.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from typing import Callable

_lock = threading.RLock()
_callbacks: dict[str, list[Callable]] = {}


def _run(name: str, module) -> None:
    for cb in list(_callbacks.get(name, [])):
        try:
            cb(module)
        except Exception as exc:  # noqa: BLE001
            print(f"[bench hooks] callback for {name} failed: {exc!r}", file=sys.stderr)


class _Loader(importlib.abc.Loader):
    def __init__(self, name: str, inner):
        self._name, self._inner = name, inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        # The real loader runs the module; put it back on the spec so reloads and tools see it.
        module.__spec__.loader = self._inner
        module.__loader__ = self._inner
        self._inner.exec_module(module)
        _run(self._name, module)

    def __getattr__(self, item):  # get_resource_reader, get_filename, is_package, ...
        return getattr(self._inner, item)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in _callbacks:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _Loader(fullname, spec.loader)
        return spec


_finder = _Finder()


def when_imported(name: str, callback: Callable) -> None:
    with _lock:
        _callbacks.setdefault(name, []).append(callback)
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
    if name in sys.modules:
        try:
            callback(sys.modules[name])
        except Exception as exc:  # noqa: BLE001
            print(f"[bench hooks] callback for {name} failed: {exc!r}", file=sys.stderr)


def replace_torchaudio_load(torchaudio) -> None:
    """torchaudio.load through soundfile: (channels, frames) float32 and the sample rate."""

    def load(uri, frame_offset=0, num_frames=-1, normalize=True, channels_first=True, format=None,
             buffer_size=4096, backend=None):
        import soundfile
        import torch

        data, rate = soundfile.read(uri, start=frame_offset, frames=num_frames, dtype="float32", always_2d=True)
        wav = torch.from_numpy(data.T.copy() if channels_first else data.copy())
        return wav, rate

    load.__lighttts_bench__ = True
    torchaudio.load = load
