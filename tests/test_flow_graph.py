"""The flow CUDA-graph patch (30bc57b 0006, ad1c76e 0004) on the CPU, with the real CosyVoice classes of the real checkouts (random weights).

What the patch claims, checked against the unpatched code of the same pin:
- add_optional_chunk_mask makes the same masks without a host sync (.item());
- padding a call to its 50-frame bucket with mask 0 leaves the real frames of the estimator's output
  unchanged (and padding without the mask does not: the check can fail);
- CausalConditionalCFM's graph path (buffers, padding, CFG and Euler arithmetic, any step count) gives
  the eager solver's mel; the CUDA graph itself is replaced by a stand-in that runs the estimator on
  the graph's static buffers, since there is no GPU here;
- the sync-free flow (mask, lengths, noise, encoder context mask) gives bit-identical mels to the
  unpatched flow, streaming chunk by chunk and not;
- capture fails cleanly on a CPU model (no graph kept), which is what the decode process logs and
  survives;
- the encoder's graphs (streaming calls with look-ahead context, exact lengths) give the eager encoder's
  output, and HiFT's (up to the iSTFT, exact shapes) the eager waveform and source with the same random
  draws; the sync-free HiFT (window on the device, harmonics made on the device) is bit-identical to
  the unpatched one; the source a graph returns survives the next replay (it goes to the chunk cache).

Needs LIGHTTTS_UPSTREAM / LIGHTTTS_UPSTREAM_V110 (as test_real_upstream.py) and the `flow-test` extra
(torch, diffusers, conformer, einops, omegaconf). Each tree is imported in its own subprocess, since both
define the `cosyvoice` package.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from conftest import run_tool
from test_real_upstream import Pin, SOURCES

TESTS_DIR = Path(__file__).resolve().parent
FLOW_TEST_PACKAGES = ("torch", "diffusers", "conformer", "einops", "omegaconf", "scipy")

# the CosyVoice2 estimator's structure (cosyvoice2.yaml: one channel level, static_chunk_size 50), made small
ESTIMATOR = dict(in_channels=320, out_channels=80, channels=[64], dropout=0.0, attention_head_dim=32, n_blocks=1,
                 num_mid_blocks=2, num_heads=2, act_fn="gelu", static_chunk_size=50, num_decoding_left_chunks=-1)
CFM_PARAMS = {"sigma_min": 1e-06, "solver": "euler", "t_scheduler": "cosine", "training_cfg_rate": 0.2,
              "inference_cfg_rate": 0.7, "reg_loss_type": "l1"}
# (real frames, streaming) of the estimator check: inside a bucket, on a bucket edge, one frame past it
ESTIMATOR_CASES = [(37, False), (37, True), (73, False), (73, True), (100, False), (100, True), (101, True), (149, False)]
PROMPT_TOKENS, GENERATED_TOKENS = 25, 80
STREAM_PREFIXES = [28, 53, 78]  # decode_req.py's chunks (hop 25 + look-ahead 3) before the final call


def require_flow_test_packages() -> None:
    missing = [name for name in FLOW_TEST_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        why = f"{', '.join(missing)} not installed: python3 -m pip install -e '.[flow-test]'"
        if os.environ.get("CI") == "true":  # CI installs the extra (.ci/run): a skip there would hide a regression
            pytest.fail(f"CI=true and {why}")
        pytest.skip(why)


@pytest.fixture(scope="module", params=sorted(SOURCES))
def trees(request, tmp_path_factory) -> tuple[Pin, Path, Path]:
    """(pin, unpatched clone, patched clone) of one real upstream."""
    require_flow_test_packages()
    pin = Pin(request.param)
    base = tmp_path_factory.mktemp(f"flow-{pin.name}")
    unpatched = pin.clone(base / "unpatched", "submodule")
    patched = pin.clone(base / "patched", "submodule")
    applied = run_tool("apply_patches.py", str(patched), env={"LIGHTTTS_A10_PATCHES_DIR": ""})
    assert applied.returncode == 0, applied.stderr
    return pin, unpatched, patched


def run_worker(tree: Path, task: str, out: Path) -> dict:
    code = f"import sys; sys.path.insert(0, {str(TESTS_DIR)!r}); import test_flow_graph as t; t.worker({str(tree)!r}, {task!r}, {str(out)!r})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, f"{task} in {tree} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    import torch
    return torch.load(out)


# --------------------------------------------------------------------------- the sync-free mask

def load_mask_module(tree: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, tree / "cosyvoice/cosyvoice/utils/mask.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports only torch
    return module


def test_sync_free_chunk_mask_is_the_same_mask_without_item(trees, monkeypatch):
    import torch

    pin, unpatched, patched = trees
    old = load_mask_module(unpatched, f"mask_unpatched_{pin.name}")
    new = load_mask_module(patched, f"mask_patched_{pin.name}")
    generator = torch.Generator().manual_seed(0)
    cases = 0
    for length in (1, 7, 50, 64, 120):
        xs = torch.zeros(3, length, 4)
        for kind in ("full", "padded", "empty rows", "random"):
            if kind == "full":
                masks = torch.ones(3, 1, length, dtype=torch.bool)
            elif kind == "padded":
                masks = (torch.arange(length) < torch.tensor([length, (length + 1) // 2, 1])[:, None]).unsqueeze(1)
            elif kind == "empty rows":
                masks = torch.ones(3, 1, length, dtype=torch.bool)
                masks[1] = False
            else:
                masks = torch.rand(3, 1, length, generator=generator) < 0.3
            for static_chunk_size in (0, 25, 50):
                expected = old.add_optional_chunk_mask(xs, masks.clone(), False, False, 0, static_chunk_size, -1)
                got = new.add_optional_chunk_mask(xs, masks.clone(), False, False, 0, static_chunk_size, -1)
                assert got.dtype == torch.bool and torch.equal(got, expected), (length, kind, static_chunk_size)
                cases += 1
    assert cases == 60

    def no_item(self):
        raise AssertionError("host sync: .item() called")

    monkeypatch.setattr(torch.Tensor, "item", no_item)
    masks = torch.ones(1, 1, 60, dtype=torch.bool)
    new.add_optional_chunk_mask(torch.zeros(1, 60, 4), masks, False, False, 0, 50, -1)
    with pytest.raises(AssertionError, match="host sync"):  # the unpatched check does sync
        old.add_optional_chunk_mask(torch.zeros(1, 60, 4), masks, False, False, 0, 50, -1)


# --------------------------------------------------------------------------- padding the estimator

def test_padding_to_the_bucket_leaves_the_real_frames_unchanged(trees, tmp_path):
    import torch

    _, unpatched, patched = trees
    outputs = {}
    for tree in (unpatched, patched):
        results = outputs[tree.name] = run_worker(tree, "estimator", tmp_path / f"{tree.name}-estimator.pt")
        for frames, streaming in ESTIMATOR_CASES:
            case = results[(frames, streaming)]
            exact, padded, unmasked = case["unpadded"], case["padded"], case["padded_unmasked"]
            scale = exact.abs().max().item()
            assert scale > 0.1  # a real output, not zeros
            assert (padded - exact).abs().max().item() <= 1e-5 * scale, (tree.name, frames, streaming)
            if frames % 50:  # padding that is not masked reaches the real frames: the check can fail
                assert (unmasked - exact).abs().max().item() > 1e-2 * scale, (tree.name, frames, streaming)
    # the estimator class is not patched, and the masks are the same: identical outputs on both trees
    for key in ESTIMATOR_CASES:
        assert torch.equal(outputs["unpatched"][key]["unpadded"], outputs["patched"][key]["unpadded"]), key
        assert torch.equal(outputs["unpatched"][key]["padded"], outputs["patched"][key]["padded"]), key


# --------------------------------------------------------------------------- the graph path of the solver

def test_graph_path_of_the_solver_gives_the_eager_mel(trees, tmp_path):
    _, _, patched = trees
    results = run_worker(patched, "cfm", tmp_path / "cfm.pt")
    for name, (graphed, eager, replays, steps) in results["calls"].items():
        scale = eager.abs().max().item()
        assert graphed.shape == eager.shape and scale > 0.1, name
        assert (graphed - eager).abs().max().item() <= 1e-5 * scale, name
        assert replays == steps, name  # every Euler step replayed a graph, none fell back to eager
    assert results["beyond_max_replays"] == 0  # longer than the largest bucket: eager
    assert results["other_dtype_replays"] == 0


def test_sync_free_flow_is_bit_identical_to_upstream_and_graphs_match_it(trees, tmp_path):
    import torch

    _, unpatched, patched = trees
    before = run_worker(unpatched, "flow", tmp_path / "flow-unpatched.pt")
    after = run_worker(patched, "flow", tmp_path / "flow-patched.pt")
    assert list(before["eager"]) == list(after["eager"]) == ["nonstream"] + [f"stream{i}" for i in range(4)]
    for name, mel in before["eager"].items():
        assert torch.equal(after["eager"][name], mel), name
    for name, mel in after["graphed"].items():
        eager = after["eager"][name]
        assert (mel - eager).abs().max().item() <= 1e-5 * eager.abs().max().item(), name
    assert after["graph_replays"] == 5 * 10  # 5 calls of 10 steps, all replayed
    # the streaming chunks before the last (look-ahead context, a multiple of 25 tokens) replayed the
    # encoder's graphs; the non-streaming call and the last chunk ran it eagerly
    assert after["encoder_replays"] == len(STREAM_PREFIXES)
    assert after["encoder_graphed"] == len(STREAM_PREFIXES)


def test_sync_free_hift_is_bit_identical_to_upstream_and_graphs_match_it(trees, tmp_path):
    import torch

    _, unpatched, patched = trees
    before = run_worker(unpatched, "hift", tmp_path / "hift-unpatched.pt")
    after = run_worker(patched, "hift", tmp_path / "hift-patched.pt")
    assert [name for name, *_ in HIFT_CALLS] == list(before["eager"]) == list(after["eager"])
    for name, (speech, source) in before["eager"].items():
        assert speech.abs().max().item() > 1e-3, name  # a real waveform, not zeros
        assert torch.equal(after["eager"][name][0], speech) and torch.equal(after["eager"][name][1], source), name
    for name, (speech, source) in after["graphed"].items():
        assert torch.equal(speech, after["eager"][name][0]) and torch.equal(source, after["eager"][name][1]), name
    assert after["replays"] == 2  # the first and a middle chunk; the last one's shape has no graph
    assert after["cache_intact"] is True


def test_encoder_and_hift_capture_builds_the_keys_their_calls_look_up(trees, tmp_path):
    """capture_cuda_graphs itself (examples, keys, warm-up, the per-graph eager check with the RNG state
    restored) on the CPU, the CUDA calls replaced by stand-ins that record the captured call; then the
    flow and HiFT on what it built, against eager."""
    import torch

    _, _, patched = trees
    results = run_worker(patched, "capture_parts", tmp_path / "capture-parts.pt")
    assert results["encoder_keys"] == [(length, 3, True, torch.float32) for length in (25, 50, 75, 100, 125)]
    assert results["hift_keys"] == sorted(HIFT_SHAPES)
    # largest first into the one pool; each graph captured once, then checked against an eager call
    assert results["encoder_order"] == [125, 100, 75, 50, 25] and results["hift_order"][0] == (98, 0)
    assert results["checks"] == {"encoder": (5 + 5, 5), "hift": (2 * len(HIFT_SHAPES), len(HIFT_SHAPES))}
    assert results["buffers_zero"] is True
    for name, (graphed, eager) in results["flow"].items():
        assert torch.equal(graphed, eager), name
    assert results["encoder_replays"] == len(STREAM_PREFIXES)
    for name, (graphed, eager) in results["hift"].items():
        assert torch.equal(graphed[0], eager[0]) and torch.equal(graphed[1], eager[1]), name
    assert results["hift_replays"] == 2  # the first and the middle chunk; the last one's shape has none
    # a capture that fails part way keeps no graph, restores the stream, and the module stays eager
    assert "injected" in results["failed_error"] and results["failed_graphs"] == 0
    assert results["stream_restored"] is True and results["eager_after_failure"] is True


def test_patched_encoder_still_scripts(trees, tmp_path):
    """cosyvoice/bin/export_jit.py scripts the flow encoder (--load_jit loads the result): the graph replay
    in its forward must stay out of TorchScript."""
    _, unpatched, patched = trees
    for tree in (unpatched, patched):
        assert run_worker(tree, "script", tmp_path / f"script-{tree.name}.pt") == {"scripted": True}, tree.name


def test_capture_on_a_cpu_model_fails_cleanly_and_the_flow_stays_eager(trees, tmp_path):
    import torch

    _, _, patched = trees
    results = run_worker(patched, "capture", tmp_path / "capture.pt")
    assert "CUDA" in results["cpu_error"] and results["graphs_after_cpu_error"] == 0
    assert "CausalConditionalDecoder" in results["type_error"] and results["graphs_after_type_error"] == 0
    assert results["eager_after_failure"] is True
    # capture_buckets with stand-ins for the CUDA calls: largest bucket first, both modes, one pool
    assert results["capture_order"] == [150, 150, 100, 100, 50, 50]
    assert results["capture_keys"] == sorted((f, s, torch.float32) for f in (50, 100, 150) for s in (True, False))
    # 6 warm-ups, 6 captured calls, then the check: 2 eager calls and 2 replays
    assert results["capture_calls"] == {"estimator calls": 6 + 6 + 2 + 2, "captured": 6}
    assert results["buffers_zero"] is True  # the check's random inputs are not left in the 50-frame buffers
    eager = results["captured_eager"]
    assert (results["captured_graphed"] - eager).abs().max().item() <= 1e-5 * eager.abs().max().item()
    assert results["captured_replays"] == 3


# --------------------------------------------------------------------------- the subprocess side

def worker(tree: str, task: str, out: str) -> None:
    """Runs in a subprocess with one tree's cosyvoice and matcha on sys.path; saves its results to `out`."""
    sys.path[:0] = [f"{tree}/third_party/Matcha-TTS", f"{tree}/cosyvoice"]
    # matcha/utils/__init__.py imports hydra, lightning and rich for training; the flow only needs its logger
    pylogger = types.ModuleType("matcha.utils.pylogger")
    pylogger.get_pylogger = logging.getLogger
    utils = types.ModuleType("matcha.utils")
    utils.__path__, utils.pylogger = [], pylogger
    sys.modules.update({"matcha.utils": utils, "matcha.utils.pylogger": pylogger})
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    results = {"estimator": estimator_task, "cfm": cfm_task, "flow": flow_task, "capture": capture_task,
               "hift": hift_task, "capture_parts": capture_parts_task, "script": script_task}[task]()
    torch.save(results, out)


def make_estimator():
    import torch
    from cosyvoice.flow.decoder import CausalConditionalDecoder

    torch.manual_seed(0)
    return CausalConditionalDecoder(**ESTIMATOR).eval()


def make_cfm(estimator):
    from cosyvoice.flow.flow_matching import CausalConditionalCFM
    from omegaconf import DictConfig

    return CausalConditionalCFM(240, DictConfig(CFM_PARAMS), n_spks=1, spk_emb_dim=80, estimator=estimator).eval()


def estimator_inputs(frames: int, padded_to: int, generator, masked: bool = True):
    import torch

    x, mu, cond = (torch.randn(2, 80, frames, generator=generator) for _ in range(3))
    spks, t = torch.randn(2, 80, generator=generator), torch.rand(2, generator=generator)
    mu[1], spks[1], cond[1] = 0, 0, 0  # the CFG row, as solve_euler builds it
    mask = torch.ones(2, 1, frames)

    def pad(tensor, value=0.0):
        return torch.nn.functional.pad(tensor, (0, padded_to - frames), value=value)

    return (x, mask, mu, t, spks, cond), (pad(x), pad(mask, 1.0 if not masked else 0.0), pad(mu), t, spks, pad(cond))


def estimator_task() -> dict:
    import torch

    estimator = make_estimator()
    results = {}
    with torch.inference_mode():
        for frames, streaming in ESTIMATOR_CASES:
            padded_to = -(-frames // 50) * 50
            generator = torch.Generator().manual_seed(frames)
            exact_in, padded_in = estimator_inputs(frames, padded_to, generator)
            generator = torch.Generator().manual_seed(frames)
            _, unmasked_in = estimator_inputs(frames, padded_to, generator, masked=False)
            results[(frames, streaming)] = {
                "unpadded": estimator(*exact_in, streaming=streaming),
                "padded": estimator(*padded_in, streaming=streaming)[:, :, :frames],
                "padded_unmasked": estimator(*unmasked_in, streaming=streaming)[:, :, :frames],
            }
    return results


class EagerStandIn:
    """Stands in for a captured torch.cuda.CUDAGraph: replay() runs the estimator on the static buffers."""

    def __init__(self, estimator, inputs, output, streaming):
        self.estimator, self.inputs, self.output, self.streaming = estimator, inputs, output, streaming

    def replay(self):
        self.output.copy_(self.estimator(*self.inputs, streaming=self.streaming))


def install_stand_in_graphs(cfm, max_frames: int, dtype):
    """What capture_cuda_graphs builds, with the stand-in instead of a CUDA graph."""
    import torch

    with torch.inference_mode():
        for frames in range(max_frames, 0, -cfm.graph_bucket):
            inputs = (torch.zeros(2, 80, frames, dtype=dtype), torch.ones(2, 1, frames, dtype=dtype),
                      torch.zeros(2, 80, frames, dtype=dtype), torch.zeros(2, dtype=dtype),
                      torch.zeros(2, 80, dtype=dtype), torch.zeros(2, 80, frames, dtype=dtype))
            for streaming in (True, False):
                output = torch.zeros(2, 80, frames, dtype=dtype)
                cfm.graphs[(frames, streaming, dtype)] = (EagerStandIn(cfm.estimator, inputs, output, streaming), inputs, output)


def cfm_task() -> dict:
    import torch

    cfm = make_cfm(make_estimator())
    install_stand_in_graphs(cfm, 150, torch.float32)
    graphs = cfm.graphs
    generator = torch.Generator().manual_seed(1)
    calls = {}
    # 95 then 60 frames share the 100 bucket: the second call must not see the first one's frames
    for name, frames, streaming, steps in [("95/stream/5", 95, True, 5), ("60/stream/5", 60, True, 5),
                                           ("95/nonstream/3", 95, False, 3), ("60/nonstream/1", 60, False, 1),
                                           ("150/stream/4", 150, True, 4), ("101/nonstream/4", 101, False, 4),
                                           ("37/stream/2", 37, True, 2)]:
        mu = torch.randn(1, 80, frames, generator=generator)
        spks = torch.randn(1, 80, generator=generator)
        cond = torch.zeros(1, 80, frames)
        cond[:, :, :frames // 3] = torch.randn(1, 80, frames // 3, generator=generator)
        mask = torch.ones(1, 1, frames)
        cfm.graphs, before = graphs, cfm.graph_replays
        graphed, _ = cfm(mu.clone(), mask, steps, spks=spks, cond=cond, streaming=streaming)
        replays = cfm.graph_replays - before
        cfm.graphs = {}
        eager, _ = cfm(mu.clone(), mask, steps, spks=spks, cond=cond, streaming=streaming)
        calls[name] = (graphed, eager, replays, steps)
    cfm.graphs, before = graphs, cfm.graph_replays
    cfm(torch.randn(1, 80, 151), torch.ones(1, 1, 151), 2, spks=torch.randn(1, 80), cond=torch.zeros(1, 80, 151))
    beyond = cfm.graph_replays - before
    # graphs of another dtype (as if captured in bf16) are not used for a float32 call
    cfm.graphs = {(frames, streaming, torch.bfloat16): entry for (frames, streaming, _), entry in graphs.items()}
    before = cfm.graph_replays
    cfm(torch.randn(1, 80, 60), torch.ones(1, 1, 60), 2, spks=torch.randn(1, 80), cond=torch.zeros(1, 80, 60))
    return {"calls": calls, "beyond_max_replays": beyond, "other_dtype_replays": cfm.graph_replays - before}


def stub_class_registry_imports() -> None:
    """upsample_encoder.py imports cosyvoice.utils.class_utils, a registry that also imports the LLM
    (transformers), HiFT and cli/model.py (torchaudio). The flow uses none of them: stand-in classes."""
    for module, names in (("cosyvoice.llm.llm", ("TransformerLM", "Qwen2LM", "CosyVoice3LM")),
                          ("cosyvoice.hifigan.generator", ("HiFTGenerator", "CausalHiFTGenerator")),
                          ("cosyvoice.cli.model", ("CosyVoiceModel", "CosyVoice2Model", "CosyVoice3Model"))):
        stub = types.ModuleType(module)
        for name in names:
            setattr(stub, name, type(name, (), {}))
        sys.modules[module] = stub


def make_flow():
    import torch

    stub_class_registry_imports()
    from cosyvoice.flow.flow import CausalMaskedDiffWithXvec
    from cosyvoice.transformer.upsample_encoder import UpsampleConformerEncoder

    torch.manual_seed(0)
    encoder = UpsampleConformerEncoder(input_size=512, output_size=512, attention_heads=8, linear_units=256, num_blocks=1,
                                       dropout_rate=0.1, positional_dropout_rate=0.1, attention_dropout_rate=0.1,
                                       normalize_before=True, input_layer="linear", pos_enc_layer_type="rel_pos_espnet",
                                       selfattention_layer_type="rel_selfattn", use_cnn_module=False, macaron_style=False,
                                       static_chunk_size=25)
    flow = CausalMaskedDiffWithXvec(input_size=512, output_size=80, spk_embed_dim=192, output_type="mel", vocab_size=6561,
                                    input_frame_rate=25, only_mask_loss=True, token_mel_ratio=2, pre_lookahead_len=3,
                                    encoder=encoder, decoder=make_cfm(make_estimator()))
    return flow.eval()


def flow_calls():
    """(name, prefix, streaming, finalize): a non-streaming call, then decode_req.py's streaming chunks."""
    return ([("nonstream", GENERATED_TOKENS, False, True)]
            + [(f"stream{i}", prefix, True, False) for i, prefix in enumerate(STREAM_PREFIXES)]
            + [(f"stream{len(STREAM_PREFIXES)}", GENERATED_TOKENS, True, True)])


def flow_runner(flow):
    """run(prefix, streaming, finalize) -> mel: flow.inference on fixed random tokens, prompt and speaker."""
    import torch

    generator = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, 6561, (1, GENERATED_TOKENS), generator=generator, dtype=torch.int32)
    prompt_token = torch.randint(0, 6561, (1, PROMPT_TOKENS), generator=generator, dtype=torch.int32)
    prompt_feat = torch.randn(1, 2 * PROMPT_TOKENS, 80, generator=generator)
    embedding = torch.randn(1, 192, generator=generator)

    def run(prefix, streaming, finalize):
        token = tokens[:, :prefix]
        mel, _ = flow.inference(token=token, token_len=torch.tensor([prefix], dtype=torch.int32),
                                prompt_token=prompt_token, prompt_token_len=torch.tensor([PROMPT_TOKENS], dtype=torch.int32),
                                prompt_feat=prompt_feat, prompt_feat_len=torch.tensor([2 * PROMPT_TOKENS], dtype=torch.int32),
                                embedding=embedding, streaming=streaming, finalize=finalize)
        return mel
    return run


def flow_task() -> dict:
    import torch

    flow = make_flow()
    run = flow_runner(flow)
    results = {"eager": {name: run(p, s, f) for name, p, s, f in flow_calls()}}
    if hasattr(flow.decoder, "graphs"):
        install_stand_in_graphs(flow.decoder, 250, torch.float32)
        # what CosyVoice2Model.load_cuda_graph asks of the encoder: every 25 tokens, 3 of context
        encoder, graphed_calls = flow.encoder, {"n": 0}
        install_function_stand_ins(
            encoder.cuda_graphs, lambda xs, xs_lens, context: encoder.forward(xs, xs_lens, context, streaming=True),
            {(length, 3, True, torch.float32): (torch.zeros(1, length, 512), torch.full([1], length + 3, dtype=torch.int32),
                                                torch.zeros(1, 3, 512)) for length in range(125, 0, -25)}, graphed_calls)
        results["graphed"] = {name: run(p, s, f) for name, p, s, f in flow_calls()}
        results["graph_replays"] = flow.decoder.graph_replays
        results["encoder_replays"], results["encoder_graphed"] = encoder.cuda_graphs.replays, graphed_calls["n"]
    return results


def replay_eagerly(owner, fn, args, kwargs, outputs) -> None:
    """What a CUDA graph of CudaGraphs does on replay, done eagerly: the captured function (its owner's
    graphs hidden, so it does not replay itself) on the graph's buffers, into the graph's outputs."""
    graphs, owner.graphs = owner.graphs, {}
    try:
        results = fn(*args, **kwargs)
    finally:
        owner.graphs = graphs
    for output, result in zip(outputs, results):
        output.copy_(result)


class FunctionStandIn:
    """Stands in for a CUDA graph installed directly into CudaGraphs (key -> graph, buffers, outputs)."""

    def __init__(self, owner, fn, buffers, outputs, counter):
        self.owner, self.fn, self.buffers, self.outputs, self.counter = owner, fn, buffers, outputs, counter

    def replay(self):
        replay_eagerly(self.owner, self.fn, self.buffers, {}, self.outputs)
        self.counter["n"] += 1


def install_function_stand_ins(cuda_graphs, fn, examples, counter) -> None:
    """What CudaGraphs.capture builds (key -> graph, buffers, outputs), with the stand-in as the graph."""
    import torch

    with torch.no_grad():
        for key, buffers in examples.items():
            outputs = tuple(t.clone() for t in fn(*buffers))
            cuda_graphs.graphs[key] = (FunctionStandIn(cuda_graphs, fn, buffers, outputs, counter), buffers, outputs)


# (name, mel frames, cached source samples): decode_req.py's first chunk (hop + a prompt pad of 2 tokens,
# no cache), a middle chunk (hop + the 8-frame mel cache, 3840 cached samples) and a last one
HIFT_CALLS = [("first", 54, 0), ("middle", 58, 3840), ("last", 37, 3840)]


def make_hift():
    import torch
    from cosyvoice.hifigan.f0_predictor import ConvRNNF0Predictor
    from cosyvoice.hifigan.generator import HiFTGenerator

    torch.manual_seed(0)
    # cosyvoice2.yaml's HiFT with fewer channels
    return HiFTGenerator(in_channels=80, base_channels=64, nb_harmonics=8, sampling_rate=24000, nsf_alpha=0.1, nsf_sigma=0.003,
                         nsf_voiced_threshold=10, upsample_rates=[8, 5, 3], upsample_kernel_sizes=[16, 11, 7],
                         istft_params={"n_fft": 16, "hop_len": 4}, resblock_kernel_sizes=[3, 7, 11],
                         resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]], source_resblock_kernel_sizes=[7, 7, 11],
                         source_resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]], lrelu_slope=0.1, audio_limit=0.99,
                         f0_predictor=ConvRNNF0Predictor(num_class=1, in_channels=80, cond_channels=64)).eval()


def hift_mels() -> dict:
    import torch

    generator = torch.Generator().manual_seed(4)
    return {name: torch.randn(1, 80, frames, generator=generator) * 2 - 4 for name, frames, _ in HIFT_CALLS}


def hift_request(hift, mels) -> dict:
    """token2wav's HiFT calls of one streaming request (HIFT_CALLS), the RNG seeded per call:
    name -> (waveform, source)."""
    import torch

    out, cache = {}, torch.zeros(1, 1, 0)
    for i, (name, _, cached) in enumerate(HIFT_CALLS):
        torch.manual_seed(100 + i)
        speech, source = hift.inference(speech_feat=mels[name], cache_source=cache[:, :, -cached:] if cached else torch.zeros(1, 1, 0))
        out[name] = (speech.clone(), source)
        cache = source[:, :, -3840:]  # a view, as token2wav keeps it
    return out


def hift_task() -> dict:
    """HiFT's calls of one streaming request: eagerly, then (patched) with stand-in graphs of the first
    two shapes."""
    import torch

    hift, mels = make_hift(), hift_mels()

    def request():
        return hift_request(hift, mels)

    results = {"eager": request()}
    if hasattr(hift, "cuda_graphs"):
        counter = {"n": 0}
        install_function_stand_ins(hift.cuda_graphs, hift.spectrum,
                                   {(frames, cached): (torch.zeros(1, 80, frames), torch.zeros(1, 1, cached))
                                    for _, frames, cached in HIFT_CALLS[:2]}, counter)
        graphed = request()
        results["graphed"], results["replays"] = graphed, hift.cuda_graphs.replays
        # the middle chunk's source came from a replay: a later replay must not have overwritten it
        kept = graphed["middle"][1].clone()
        torch.manual_seed(7)
        hift.inference(speech_feat=mels["middle"], cache_source=kept[:, :, -3840:] * 0)
        results["cache_intact"] = bool(torch.equal(graphed["middle"][1], kept)) and counter["n"] == 3
    return results


# what CosyVoice2Model.load_cuda_graph asks of HiFT: the first chunk (hop 25 + a prompt pad of 0-24
# tokens, no cache) and the middle chunks (hop after the 8 cached frames, 3840 cached samples)
HIFT_SHAPES = [(50 + 2 * pad, 0) for pad in range(25)] + [(58, 3840)]


class RecordedCapture:
    """Stand-ins for the CUDA calls CudaGraphs.capture makes. `record(owner, fn)` wraps the captured
    function so that a call inside `with torch.cuda.graph(graph)` becomes that graph's replay: the
    function run again eagerly (its owner's graphs hidden) on the same inputs, into the same outputs."""

    def __init__(self, fail_at=None):
        import torch

        self.current, self.order, self.fail_at, self.captures, self.stream = None, [], fail_at, 0, "default"
        self.eager_calls = self.replays = 0
        recorder = self

        class Graph:
            def __init__(self):
                self.call = None

            def replay(self):
                recorder.replays += 1
                replay_eagerly(*self.call)

        class GraphContext:
            def __init__(self, graph, pool=None):
                self.graph = graph

            def __enter__(self):
                recorder.captures += 1
                if recorder.captures == recorder.fail_at:
                    raise RuntimeError("injected capture failure")
                recorder.current, recorder.stream = self.graph, "capture"

            def __exit__(self, *exc):
                recorder.current = None

        def set_stream(stream):
            recorder.stream = "default" if stream is None else stream

        self.stand_ins = {"CUDAGraph": Graph, "graph": GraphContext, "synchronize": lambda *a, **k: None,
                          "memory_reserved": lambda *a, **k: 0, "graph_pool_handle": lambda: None,
                          "current_stream": lambda *a, **k: None, "set_stream": set_stream,
                          "get_rng_state": lambda *a, **k: torch.get_rng_state(),
                          "set_rng_state": lambda state, *a, **k: torch.set_rng_state(state)}

    def record(self, owner, fn):
        def recorded(*args, **kwargs):
            results = fn(*args, **kwargs)
            self.eager_calls += self.current is None
            if self.current is not None:
                self.current.call = (owner, fn, args, kwargs, results)
                self.order.append(tuple(args[0].shape[1:2]) if len(args) == 3 else (args[0].shape[2], args[1].shape[2]))
            return results
        return recorded

    def __enter__(self):
        import torch

        self.saved = {name: getattr(torch.cuda, name) for name in self.stand_ins}
        for name, value in self.stand_ins.items():
            setattr(torch.cuda, name, value)
        return self

    def __exit__(self, *exc):
        import torch

        for name, value in self.saved.items():
            setattr(torch.cuda, name, value)


def capture_parts_task() -> dict:
    import torch

    hift, other, flow = make_hift(), make_hift(), make_flow()  # make_flow stubs the generator module: HiFT first
    encoder, results = flow.encoder, {"checks": {}}
    for part, module, name in (("encoder", encoder, "forward"), ("hift", hift, "spectrum")):
        recorder = RecordedCapture()
        setattr(module, name, recorder.record(module.cuda_graphs, getattr(module, name)))
        with recorder:
            if part == "encoder":
                encoder.capture_cuda_graphs(512, range(25, 126, 25), 3, torch.float32)
            else:
                hift.capture_cuda_graphs(HIFT_SHAPES)
        graphs = module.cuda_graphs.graphs
        results[f"{part}_keys"] = sorted(graphs)
        results[f"{part}_order"] = [o[0] for o in recorder.order] if part == "encoder" else recorder.order
        # a warm-up per graph, then each graph's check: an eager call and a replay
        results["checks"][part] = (recorder.eager_calls, recorder.replays)
    results["buffers_zero"] = all(bool((b == 0).all()) for module in (encoder, hift)
                                  for _, buffers, _ in module.cuda_graphs.graphs.values() for b in buffers
                                  if b.is_floating_point())
    # the flow with the encoder's graphs against eager (the estimator eager in both)
    run = flow_runner(flow)
    graphed = {name: run(p, s, f) for name, p, s, f in flow_calls()}
    results["encoder_replays"] = encoder.cuda_graphs.replays
    encoder.cuda_graphs.graphs = {}
    results["flow"] = {name: (graphed[name], run(p, s, f)) for name, p, s, f in flow_calls()}
    # HiFT's calls of one request, graphed and eager, the RNG seeded per call
    mels = hift_mels()
    graphed = hift_request(hift, mels)
    results["hift_replays"] = hift.cuda_graphs.replays
    hift.cuda_graphs.graphs = {}
    eager = hift_request(hift, mels)
    results["hift"] = {name: (graphed[name], eager[name]) for name in graphed}
    # a capture that fails at its third graph
    recorder = RecordedCapture(fail_at=3)
    other.spectrum = recorder.record(other.cuda_graphs, other.spectrum)
    with recorder:
        try:
            other.capture_cuda_graphs(HIFT_SHAPES)
            results["failed_error"] = ""
        except RuntimeError as error:
            results["failed_error"] = str(error)
    results["failed_graphs"] = len(other.cuda_graphs.graphs)
    results["stream_restored"] = recorder.stream == "default"
    speech, _ = other.inference(speech_feat=torch.randn(1, 80, 58), cache_source=torch.zeros(1, 1, 3840))
    results["eager_after_failure"] = bool(speech.shape == (1, 58 * 480) and other.cuda_graphs.replays == 0)
    return results


def script_task() -> dict:
    import torch

    torch.jit.script(make_flow().encoder)
    return {"scripted": True}


def capture_task() -> dict:
    import torch

    cfm = make_cfm(make_estimator())
    results = {}
    try:
        cfm.capture_cuda_graphs(100, torch.float16)
    except RuntimeError as error:
        results["cpu_error"] = str(error)
    results["graphs_after_cpu_error"] = len(cfm.graphs)
    other = make_cfm(torch.nn.Conv1d(80, 80, 1))
    try:
        other.capture_cuda_graphs(100, torch.float16)
    except TypeError as error:
        results["type_error"] = str(error)
    results["graphs_after_type_error"] = len(other.graphs)
    mel, _ = cfm(torch.randn(1, 80, 60), torch.ones(1, 1, 60), 2, spks=torch.randn(1, 80), cond=torch.zeros(1, 80, 60))
    results["eager_after_failure"] = bool(mel.shape == (1, 80, 60) and cfm.graph_replays == 0)
    results.update(recorded_capture(cfm))
    return results


class RecordingGraph:
    """Stands in for torch.cuda.CUDAGraph in capture_buckets: remembers the estimator call made inside
    `with torch.cuda.graph(...)` and replays it into the same output tensor."""

    def __init__(self):
        self.call = None

    def replay(self):
        module, args, kwargs, output = self.call
        output.copy_(module(*args, **kwargs))


def recorded_capture(cfm) -> dict:
    """capture_buckets itself (bucket order, buffers, warm-up, the eager self-check) on the CPU, with the
    CUDA calls it makes replaced by stand-ins; then the solver on what it built."""
    import contextlib

    import torch

    calls = {"estimator calls": 0, "captured": 0}
    order = []

    @contextlib.contextmanager
    def graph_context(graph, pool=None):
        def record(module, args, kwargs, output):
            graph.call = (module, args, kwargs, output)
            calls["captured"] += 1
        handle = cfm.estimator.register_forward_hook(record, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()
        order.append(graph.call[1][0].shape[-1])

    counting = cfm.estimator.register_forward_pre_hook(lambda module, args: calls.__setitem__("estimator calls", calls["estimator calls"] + 1))
    saved = {name: getattr(torch.cuda, name) for name in ("CUDAGraph", "graph", "synchronize")}
    torch.cuda.CUDAGraph, torch.cuda.graph, torch.cuda.synchronize = RecordingGraph, graph_context, lambda *a, **k: None
    graphs = {}
    try:
        with torch.inference_mode():
            cfm.capture_buckets(graphs, None, 170, torch.float32, torch.device("cpu"))
    finally:
        for name, value in saved.items():
            setattr(torch.cuda, name, value)
        counting.remove()
    buffers_zero = all(bool((b == 0).all()) for (frames, _, _), (_, inputs, _) in graphs.items() if frames == 50
                       for b in inputs)
    cfm.graphs = graphs
    generator = torch.Generator().manual_seed(3)
    mu, spks = torch.randn(1, 80, 130, generator=generator), torch.randn(1, 80, generator=generator)
    cond = torch.zeros(1, 80, 130)
    graphed, _ = cfm(mu, torch.ones(1, 1, 130), 3, spks=spks, cond=cond, streaming=True)
    replays = cfm.graph_replays
    cfm.graphs = {}
    eager, _ = cfm(mu, torch.ones(1, 1, 130), 3, spks=spks, cond=cond, streaming=True)
    return {"capture_keys": sorted(graphs), "capture_order": order, "capture_calls": calls,
            "buffers_zero": buffers_zero,
            "captured_graphed": graphed, "captured_eager": eager, "captured_replays": replays}
