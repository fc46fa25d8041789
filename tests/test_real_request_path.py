"""The request path of the real patched upstream, run on the CPU without LightTTS's dependencies.

Per-request flow_steps (30bc57b 0005, ad1c76e 0003): the form and websocket validation of the patched
api_http.py, the shared-memory field of req.py and its snapshot in decode_req.py, and the keyword's way
through model_rpc.py, cli/model.py and flow.py. The lost non-streaming response (30bc57b 0004): the
patched httpserver manager's handle_loop and recycle loop driven through the losing interleaving of
../shared/decode-path-notes.md section 4, against the pinned file too, which must lose the audio.

Functions and classes are taken from the real files with ast and run against small fakes of what they
call (no torch, no FastAPI, no zmq). Needs LIGHTTTS_UPSTREAM and/or LIGHTTTS_UPSTREAM_V110, like
test_real_upstream.py.
"""

from __future__ import annotations

import ast
import asyncio
import ctypes
import io
import json
import os
import subprocess
import sys
import time
import traceback
import typing
from http import HTTPStatus
from pathlib import Path

import pytest

from conftest import git, run_tool
from test_real_upstream import SOURCES, Pin, load_api_cli

BAD_FLOW_STEPS = [0, "0", 51, "51", -1, "-1", "x", "2.5", 2.5, 3.0, "", " 3", "3 ", "+3", "٣", True, False, [3]]
GOOD_FLOW_STEPS = [(1, 1), ("1", 1), (3, 3), ("3", 3), ("10", 10), (50, 50), ("50", 50), ("007", 7)]


@pytest.fixture(scope="module", params=sorted(SOURCES))
def patched(request, tmp_path_factory) -> tuple[Pin, Path]:
    """One patched clone per pin for the whole module (these tests only read it)."""
    saved = os.environ.pop("LIGHTTTS_A10_PATCHES_DIR", None)
    try:
        pin = Pin(request.param)
        root = pin.clone(tmp_path_factory.mktemp(f"request-path-{pin.name}") / "LightTTS", "submodule")
        applied = run_tool("apply_patches.py", str(root))
        assert applied.returncode == 0, applied.stderr
        yield pin, root
    finally:
        if saved is not None:
            os.environ["LIGHTTTS_A10_PATCHES_DIR"] = saved


def pinned_text(pin: Pin, root: Path, path: str) -> str:
    """The file as upstream ships it at the pin (LightTTS repository files only)."""
    return git(root, "show", f"{pin.lock['repos']['.']['commit']}:{path}")


def extract(source: str, names: dict[str, list[str] | None], namespace: dict) -> dict:
    """Run the named top-level definitions of `source` in `namespace`, without their decorators.

    names maps a function or class to None (take it whole) or, for a class, to the methods to keep."""
    body = []
    for node in ast.parse(source).body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name not in names:
            continue
        node.decorator_list = []
        keep = names[node.name]
        if keep is not None:
            node.body = [item for item in node.body if getattr(item, "name", None) in keep]
            assert {item.name for item in node.body} == set(keep), f"{node.name}: missing {keep}"
        body.append(node)
    assert {node.name for node in body} == set(names), f"not found: {set(names) - {n.name for n in body}}"
    exec(compile(ast.Module(body=body, type_ignores=[]), "<extracted>", "exec"), namespace)
    return namespace


# --------------------------------------------------------------------------- api_http.py: form and websocket

class Recorder:
    """The HttpServerManager and id generator as api_http sees them: records what would be queued."""

    def __init__(self) -> None:
        self.generated: list[dict] = []
        self.appended: list[dict] = []
        self.allocated = 0
        self.ids = 0

    def generate_id(self) -> int:
        self.ids += 1
        return self.ids

    def alloc_speech_mem(self, speech_md5, prompt_wav):
        self.allocated += 1
        return 0, False

    def generate(self, request_dict, request_id, sampling_params, request=None):
        self.generated.append(dict(request_dict))

        async def results():
            yield {"tts_speech": [0.0, 0.5]}

        return results()

    async def append_bistream(self, request_dict, request_id):
        self.appended.append(dict(request_dict))

    async def abort(self, request_id):
        pass


class JSONResponse:
    def __init__(self, content, status_code=200):
        self.content, self.status_code = content, status_code


class StreamingResponse:
    status_code = 200

    def __init__(self, content):
        self.content = content


class FakeRequest:
    def __init__(self, form: dict) -> None:
        self._form = form

    async def form(self) -> dict:
        return self._form


class FakeUpload:
    file = io.BytesIO(b"RIFF-not-read")


class FakeWav:
    shape = (1, 16000)


class FakeWebSocket:
    def __init__(self, messages: list) -> None:
        self.incoming, self.sent, self.closed_with, self.bytes_read = list(messages), [], None, 0

    async def accept(self):
        pass

    async def receive_json(self):
        return self.incoming.pop(0)

    async def receive_bytes(self):
        self.bytes_read += 1
        return self.incoming.pop(0)

    async def send_json(self, data):
        self.sent.append(data)

    async def close(self, code=1000, reason=None):
        self.closed_with = code


class Anything:
    """Stands for objects the endpoints only pass along (frontend, sampling params, counters)."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: (args[0] if name == "text_normalize" and not kwargs.get("split")
                                        else [args[0]] if name == "text_normalize" else None)


def api_http(root: Path) -> tuple[dict, Recorder]:
    recorder = Recorder()
    g_objs = Anything()
    g_objs.__dict__.update(httpserver_manager=recorder, frontend=Anything(), lora_styles=["CosyVoice2"])

    async def send_wav(websocket, generator):
        async for result in generator:
            websocket.sent.append(result)

    namespace = {
        "FLOW_STEPS_RANGE": load_api_cli(root).FLOW_STEPS_RANGE, "HTTPStatus": HTTPStatus,
        "JSONResponse": JSONResponse, "StreamingResponse": StreamingResponse,
        "Form": lambda *a, **k: None, "File": lambda *a, **k: None, "Request": FakeRequest, "UploadFile": FakeUpload,
        "WebSocket": FakeWebSocket, "WebSocketDisconnect": ConnectionError, "SamplingParams": Anything,
        "all_request_counter": Anything(), "calculate_md5": lambda f: "md5", "load_wav": lambda f, rate: FakeWav(),
        "g_objs": g_objs, "g_id_gen": recorder, "lora_styles": ["CosyVoice2"], "logger": Anything(),
        "generate_data": list, "generate_data_stream": list, "send_wav": send_wav,
        "asyncio": asyncio, "BytesIO": io.BytesIO, "traceback": traceback,
    }
    names = {"parse_flow_steps": None, "create_error_response": None, "inference_zero_shot": None,
             "inference_zero_shot_bistream": None}
    return extract((root / "light_tts/server/api_http.py").read_text(), names, namespace), recorder


def post(api: dict, form: dict, stream: bool = False):
    return asyncio.run(api["inference_zero_shot"](
        request=FakeRequest(form), tts_text="hello", prompt_text="prompt", prompt_wav=FakeUpload(), stream=stream,
        tts_model_name="default", speed=1.0))


def test_the_validator_takes_1_to_50_and_names_field_and_range(patched):
    api, _ = api_http(patched[1])
    parse = api["parse_flow_steps"]
    assert parse(None) is None
    for given, expected in GOOD_FLOW_STEPS:
        assert parse(given) == expected and type(parse(given)) is int, given
    for bad in BAD_FLOW_STEPS:
        with pytest.raises(ValueError) as caught:
            parse(bad)
        assert "flow_steps" in str(caught.value) and "from 1 to 50" in str(caught.value), bad


@pytest.mark.parametrize("bad", ["0", "51", "x", "2.5", "", "-3"])
def test_a_bad_form_value_gets_400_and_nothing_is_queued(patched, bad):
    api, recorder = api_http(patched[1])
    for stream in (False, True):
        response = post(api, {"tts_text": "hello", "flow_steps": bad}, stream)
        assert response.status_code == 400, (bad, stream)
        assert "flow_steps" in response.content["message"] and "1 to 50" in response.content["message"]
    assert (recorder.generated, recorder.allocated, recorder.ids) == ([], 0, 0)


def test_a_good_form_value_reaches_the_request_dict_and_absent_means_none(patched):
    api, recorder = api_http(patched[1])
    for form, stream in (({"flow_steps": "3"}, False), ({"flow_steps": "10"}, True), ({}, False)):
        response = post(api, {"tts_text": "hello", **form}, stream)
        assert response.status_code == 200 and isinstance(response, StreamingResponse)
    assert [d["flow_steps"] for d in recorder.generated] == [3, 10, None]
    assert [d["stream"] for d in recorder.generated] == [False, True, False]


@pytest.mark.parametrize("bad", [0, 51, "x", 2.5, ""])
def test_a_bad_websocket_init_value_is_refused_before_the_audio_is_read(patched, bad):
    api, recorder = api_http(patched[1])
    socket = FakeWebSocket([{"prompt_text": "p", "flow_steps": bad}, b"wav", {"tts_text": "hi"}])
    asyncio.run(api["inference_zero_shot_bistream"](socket))
    assert len(socket.sent) == 1 and "flow_steps" in socket.sent[0]["error"] and "1 to 50" in socket.sent[0]["error"]
    assert socket.closed_with == 1003 and socket.bytes_read == 0
    assert (recorder.generated, recorder.appended, recorder.allocated) == ([], [], 0)


def test_websocket_init_flow_steps_reach_every_request_dict(patched):
    api, recorder = api_http(patched[1])
    for init, expected in (({"flow_steps": 7}, 7), ({"flow_steps": "4"}, 4), ({}, None)):
        socket = FakeWebSocket([{"prompt_text": "p", **init}, b"wav", {"tts_text": "hi"}, {"tts_text": "there"},
                                {"finish": True}])
        asyncio.run(api["inference_zero_shot_bistream"](socket))
        assert socket.sent == [{"tts_speech": [0.0, 0.5]}]
        assert recorder.generated[-1]["flow_steps"] == expected and recorder.generated[-1]["bistream"] is True
        assert [d["flow_steps"] for d in recorder.appended[-2:]] == [expected, expected]


# --------------------------------------------------------------------------- req.py, decode_req.py, decode and flow

REQ_SCRIPT = '''
import ctypes, json, sys, types
root = sys.argv[1]
# Only the modules req.py and decode_req.py import, without the light_tts package __init__s (they start zmq, torch).
for name, sub in (("light_tts", ""), ("light_tts.server", "/server"), ("light_tts.server.core", "/server/core"),
                  ("light_tts.server.core.objs", "/server/core/objs"),
                  ("light_tts.server.tts_decode", "/server/tts_decode"), ("light_tts.utils", "/utils")):
    module = types.ModuleType(name)
    module.__path__ = [root + "/light_tts" + sub]
    sys.modules[name] = module
sys.modules["easydict"] = types.SimpleNamespace(EasyDict=dict)
from light_tts.server.core.objs.req import Req
sys.modules["light_tts.server.core.objs"].Req = Req
from light_tts.server.tts_decode.decode_req import DecodeReq
req = Req()  # one slot, reused as the shared-memory manager reuses it
seen = []
for request_dict in ({"flow_steps": 7, "stream": True}, {"stream": False}, {"flow_steps": None}, {"flow_steps": 50}):
    req.init(1, [1, 2, 3], {"semantic_len": 3, **request_dict}, {})
    after_init = req.flow_steps
    snapshot = DecodeReq(req, 25, 3)
    req.flow_steps = 9  # the next init must reset it; the snapshot must not see it
    seen.append([after_init, snapshot.flow_steps])
print(json.dumps({"field": dict(Req._fields_)["flow_steps"].__name__, "seen": seen}))
'''


def test_the_shared_memory_field_is_set_by_init_and_read_once_by_decode(patched):
    pytest.importorskip("numpy", reason="req.py needs numpy: install the bench extra (pip install -e '.[bench]')")
    result = subprocess.run([sys.executable, "-c", REQ_SCRIPT, str(patched[1])], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"field": "c_int", "seen": [[7, 7], [0, 0], [0, 0], [50, 50]]}


def calls_with_keyword(tree: ast.AST, function: str, keyword: str) -> list[str]:
    """Source of `keyword=...` in every call made inside every function named `function`."""
    return [ast.unparse(k.value) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function
            for call in ast.walk(node) if isinstance(call, ast.Call) for k in call.keywords if k.arg == keyword]


def test_the_request_value_travels_decode_rpc_to_model_to_flow(patched):
    pin, root = patched
    req = ast.parse((root / "light_tts/server/core/objs/req.py").read_text())
    fields = next(node.value for node in ast.walk(req) if isinstance(node, ast.Assign)
                  and getattr(node.targets[0], "id", None) == "_fields_" and "flow_steps" in ast.unparse(node.value))
    assert "('flow_steps', ctypes.c_int)" in ast.unparse(fields)
    rpc = ast.parse((root / "light_tts/server/tts_decode/model_infer/model_rpc.py").read_text())
    assert calls_with_keyword(rpc, "forward", "flow_steps") == ["decode_req.flow_steps"]
    model = ast.parse((root / "cosyvoice/cosyvoice/cli/model.py").read_text())
    versions = ["CosyVoice2Model", "CosyVoice3Model"] if pin.name == "ad1c76e" else ["CosyVoice2Model"]
    for cls in (node for node in model.body if isinstance(node, ast.ClassDef) and node.name in versions):
        token2wav = next(item for item in cls.body if getattr(item, "name", None) == "token2wav")
        assert token2wav.args.args[-1].arg == "flow_steps" and ast.unparse(token2wav.args.defaults[-1]) == "None"
        assert calls_with_keyword(token2wav, "token2wav", "flow_steps") == ["flow_steps"], cls.name
    flow = ast.parse((root / "cosyvoice/cosyvoice/flow/flow.py").read_text())
    causal = ["CausalMaskedDiffWithXvec", "CausalMaskedDiffWithDiT"] if pin.name == "ad1c76e" else [
        "CausalMaskedDiffWithXvec"]
    for cls in (node for node in flow.body if isinstance(node, ast.ClassDef) and node.name in causal):
        inference = next(item for item in cls.body if getattr(item, "name", None) == "inference")
        assert inference.args.args[-1].arg == "flow_steps" and ast.unparse(inference.args.defaults[-1]) == "None"
        assert calls_with_keyword(inference, "inference", "n_timesteps") == ["flow_steps or self.flow_steps"]


def test_the_tensorrt_monkey_patch_has_no_step_count(patched):
    """--load_trt true: each Euler step is one forward_estimator call; the patch must not fix a count."""
    text = (patched[1] / "light_tts/server/tts_decode/model_infer/patch_conditional_cfm.py").read_text()
    assert "def patched_forward_estimator(self, x, mask, mu, t, spks, cond, streaming=False)" in text
    assert "n_timesteps" not in text and "flow_steps" not in text and "t_span" not in text


# --------------------------------------------------------------------------- httpserver/manager.py: lost responses

class Audio(list):
    """A stand-in for the float32 array the decode process hands over (the manager logs its shape)."""

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    def copy(self) -> "Audio":
        return Audio(self)


class FinishStatus:
    def __init__(self, status: int = 0) -> None:
        self.status = status

    def is_finished(self) -> bool:
        return 1 <= self.status <= 2


class OutQueue:
    def __init__(self) -> None:
        self.items: list = []

    def is_empty(self) -> bool:
        return not self.items

    def peek(self):
        return self.items[0]

    def pop_no_ret(self) -> None:
        self.items.pop(0)


class GroupReqObjs:
    def __init__(self, group_req_id, shm_req_objs, time_mark, style_name=None) -> None:
        self.group_req_id, self.shm_req_objs, self.time_mark = group_req_id, shm_req_objs, time_mark


class ShmReq:
    """The shared-memory request as the HTTP process sees it; can_release is upstream's own (req.py)."""

    def __init__(self, request_id: int, stream: bool) -> None:
        self.request_id = self.index_in_shm_mem = request_id
        self.stream, self.gen_finished, self.is_aborted, self.can_released_mark = stream, False, False, False
        self.ref_count = 2  # the HTTP process and the pipeline
        self.finish_status, self.out_tokens_queue, self.audio = FinishStatus(), OutQueue(), None

    def get_gen_audios(self):
        return self.audio

    def decode_finishes(self, audio: list) -> None:
        """What the LLM and decode processes do at the end of a non-streaming request, in their order."""
        self.finish_status.status = 1
        self.audio, self.gen_finished = audio, True  # model_rpc: set_gen_audios
        self.can_released_mark, self.ref_count = True, 1  # tts_decode/manager.py: remove_finished_reqs


class SilentDecode:
    """recv_from_tts_decode: no message comes, so handle_loop scans every 50 ms on its timeout."""

    async def recv_pyobj(self):
        await asyncio.Event().wait()


class Gate:
    """A request's lock held by its handler (which sends audio while holding it): the scan waits here."""

    def __init__(self) -> None:
        self.reached, self.opened = asyncio.Event(), asyncio.Event()

    async def __aenter__(self):
        self.reached.set()
        await self.opened.wait()

    async def __aexit__(self, *exc) -> bool:
        return False


class Quiet:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def httpserver(manager_py: str, req_py: str) -> dict:
    namespace = {"asyncio": asyncio, "time": time, "ctypes": ctypes, "logger": Quiet(), "FinishStatus": FinishStatus,
                 "GroupReqObjs": GroupReqObjs, "Request": object, "List": typing.List, "Dict": typing.Dict,
                 "Optional": typing.Optional, "Union": typing.Union, "Tuple": typing.Tuple}
    extract(req_py, {"Req": ["can_release"]}, namespace)
    ShmReq.can_release = namespace.pop("Req").can_release
    namespace["Req"] = ShmReq
    methods = ["handle_loop", "recycle_resource_loop", "_wait_to_token_package"]
    return extract(manager_py, {"HttpServerManager": methods, "ReqStatus": None}, namespace)


class Server:
    """HttpServerManager with its two loops running and a log of releases."""

    def __init__(self, namespace: dict) -> None:
        self.ns = namespace
        self.manager = namespace["HttpServerManager"]()
        self.manager.req_id_to_out_inf = {}
        self.manager.recv_from_tts_decode = SilentDecode()
        self.manager.shm_req_manager = self
        self.released: list[tuple[int, int]] = []  # (request id, audio items handed over when it was released)
        self.statuses: dict = {}

    def add(self, request_id: int, stream: bool):
        req = ShmReq(request_id, stream)
        status_class = self.ns["ReqStatus"]
        optional = {"style_name": "CosyVoice2", "stream": stream}
        names = status_class.__init__.__code__.co_varnames[:status_class.__init__.__code__.co_argcount]
        status = status_class(request_id, [req], time.time(), **{k: v for k, v in optional.items() if k in names})
        self.manager.req_id_to_out_inf[request_id] = self.statuses[request_id] = status
        return req, status

    async def async_put_back_req_obj(self, req) -> None:
        self.released.append((req.request_id, len(self.statuses[req.request_id].out_data_info_list)))

    async def async_release_req_index(self, index) -> None:
        pass

    async def run(self, scenario) -> None:
        loop_task = asyncio.create_task(self.manager.handle_loop())
        try:
            await scenario(loop_task)
        finally:
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()


def losing_interleaving(namespace: dict) -> tuple[list, list, bool]:
    """decode-path-notes.md section 4: the scan passes non-streaming request 1 before its audio exists, waits
    on streaming request 2's lock, request 1 finishes meanwhile, the scan ends with recycle_event.set()."""
    server = Server(namespace)
    req1, status1 = server.add(1, stream=False)
    req2, status2 = server.add(2, stream=True)
    req2.out_tokens_queue.items.append((Audio([0.1]), 0, False))
    status2.lock = gate = Gate()
    received: list = []

    async def handler():  # the HTTP handler of request 1, as generate() runs it
        async for speech, _status, _finalize in server.manager._wait_to_token_package(1, status1, None):
            received.append(speech)

    async def scenario(loop_task):
        handler_task = asyncio.create_task(handler())
        await asyncio.wait_for(gate.reached.wait(), 5)
        req1.decode_finishes(Audio([0.25, 0.5]))
        gate.opened.set()
        await asyncio.wait([handler_task], timeout=1.5)

    asyncio.run(server.run(scenario))
    return received, server.released, 1 in server.manager.req_id_to_out_inf


def test_the_losing_interleaving_loses_the_audio_at_the_pin_and_not_when_patched(patched):
    pin, root = patched
    req_py = (root / "light_tts/server/core/objs/req.py").read_text()
    path = "light_tts/server/httpserver/manager.py"
    received, released, still_there = losing_interleaving(httpserver((root / path).read_text(), req_py))
    assert received == [[0.25, 0.5]], "the handler did not get the audio"
    assert released == [(1, 1)], "request 1 must be released once, after its audio was handed over"
    assert not still_there
    if pin.name == "30bc57b":  # the same drive on the file as upstream ships it must lose the audio
        received, released, still_there = losing_interleaving(httpserver(pinned_text(pin, root, path), req_py))
        assert received == [] and released == [(1, 0)] and not still_there
    else:  # ad1c76e has upstream's fix (074aabb) and no patch of ours
        assert path not in pin.lock["files"]


def a_request_arrives_during_the_scan(namespace: dict) -> BaseException | None:
    """generate() adds a request while handle_loop waits on a lock in the middle of its walk of the dict."""
    server = Server(namespace)
    req2, status2 = server.add(2, stream=True)
    req2.out_tokens_queue.items.append((Audio([0.1]), 0, False))
    status2.lock = gate = Gate()
    outcome: list = []

    async def scenario(loop_task):
        await asyncio.wait_for(gate.reached.wait(), 5)
        req3, status3 = server.add(3, stream=False)
        gate.opened.set()
        await asyncio.sleep(0.2)
        req3.decode_finishes(Audio([0.75]))
        await asyncio.sleep(0.2)
        outcome.extend([loop_task.exception() if loop_task.done() else None, status3])

    asyncio.run(server.run(scenario))
    error, status3 = outcome
    if error is None:  # handle_loop went on serving: the new request got its audio
        assert [item[0] for item in status3.out_data_info_list[:1]] == [[0.75]]
    return error


def test_a_request_added_during_the_scan_does_not_end_handle_loop(patched):
    pin, root = patched
    req_py = (root / "light_tts/server/core/objs/req.py").read_text()
    path = "light_tts/server/httpserver/manager.py"
    assert a_request_arrives_during_the_scan(httpserver((root / path).read_text(), req_py)) is None
    if pin.name == "30bc57b":
        error = a_request_arrives_during_the_scan(httpserver(pinned_text(pin, root, path), req_py))
        assert isinstance(error, RuntimeError) and "changed size during iteration" in str(error)


class OneSlotQueue(OutQueue):
    """The shared-memory chunk queue when it is full: peek() gives a view of the head slot, and once
    pop_no_ret() frees that slot the decode process may write its next chunk into it."""

    def __init__(self, chunk: "Audio") -> None:
        super().__init__()
        self.items.append((chunk, 0, False))
        self.freed = False

    def pop_no_ret(self) -> None:
        super().pop_no_ret()
        self.freed = True


def streamed_chunk_when_the_slot_is_reused(namespace: dict) -> list:
    """handle_loop takes a chunk, then waits on the request's lock (its handler is sending); meanwhile
    the decode process writes the next chunk into the slot the scan freed. What did the client get?"""
    server = Server(namespace)
    req, status = server.add(2, stream=True)
    slot = Audio([0.1, 0.2])
    req.out_tokens_queue = queue = OneSlotQueue(slot)
    status.lock = gate = Gate()

    async def scenario(loop_task):
        await asyncio.wait_for(gate.reached.wait(), 5)
        if queue.freed:
            slot[:] = [9.0, 9.0]  # the decode process: the next chunk, into the freed slot
        gate.opened.set()
        await asyncio.sleep(0.2)

    asyncio.run(server.run(scenario))
    return [list(item[0]) for item in status.out_data_info_list]


def test_a_streamed_chunk_is_copied_before_its_slot_is_freed(patched):
    pin, root = patched
    req_py = (root / "light_tts/server/core/objs/req.py").read_text()
    path = "light_tts/server/httpserver/manager.py"
    assert streamed_chunk_when_the_slot_is_reused(httpserver((root / path).read_text(), req_py)) == [[0.1, 0.2]]
    if pin.name == "30bc57b":  # as upstream ships it, the client gets the next chunk in this one's place
        pinned = httpserver(pinned_text(pin, root, path), req_py)
        assert streamed_chunk_when_the_slot_is_reused(pinned) == [[9.0, 9.0]]


def released_after_abort(manager_py: str, req_py: str) -> list:
    """A non-streaming request aborted before decoding (tts_encode/manager.py:95-99 marks it releasable)."""
    server = Server(httpserver(manager_py, req_py))
    req, _ = server.add(1, stream=False)
    req.is_aborted, req.can_released_mark, req.ref_count = True, True, 1

    async def scenario(loop_task):
        await asyncio.sleep(0.2)

    asyncio.run(server.run(scenario))
    return server.released


def test_an_aborted_non_streaming_request_is_still_released(patched):
    """Nobody waits for an aborted request's audio. 0004 releases it as the pin did; ad1c76e's own fix
    (074aabb, which 0004 otherwise follows) keeps it for good: upstream behaviour, recorded here, not patched."""
    pin, root = patched
    req_py = (root / "light_tts/server/core/objs/req.py").read_text()
    path = "light_tts/server/httpserver/manager.py"
    if pin.name == "30bc57b":
        assert released_after_abort(pinned_text(pin, root, path), req_py) == [(1, 0)]
        assert released_after_abort((root / path).read_text(), req_py) == [(1, 0)]
    else:
        assert released_after_abort((root / path).read_text(), req_py) == []
