#!/usr/bin/env python3
"""Build a random-weight CosyVoice2-0.5B model directory that a LightTTS server can load.

    python3 bench/build_model_dir.py CHECKOUT OUT_DIR [--seed 1986] [--no-self-check]

CHECKOUT is a LightTTS checkout (30bc57b layout: cosyvoice/ and third_party/Matcha-TTS/ inside it).
Everything is built at run time from the checkout's own classes and its own CosyVoice2 yaml, which is
copied into OUT_DIR unchanged; nothing from upstream is stored in this repository.

OUT_DIR gets:
  cosyvoice2.yaml           the checkout's examples/libritts/cosyvoice2/conf/cosyvoice2.yaml, as is
  llm.pt flow.pt hift.pt    state dicts of the yaml-instantiated Qwen2LM, CausalMaskedDiffWithXvec and
                            HiFTGenerator (random init; the yaml seeds torch/numpy/random with 1986)
  spk2info.pt               an empty dict (the frontend treats it as optional)
  CosyVoice-BlankEN/        Qwen2-0.5B-shaped config.json, random bf16 weights (seeded), and a
                            byte-level tokenizer built here (256 byte symbols, no merges)
  campplus.onnx             stand-in speaker model: fbank [1,T,80] -> mean over T -> [1,192]
  speech_tokenizer_v2.onnx  stand-in speech tokenizer: log-mel [1,128,T] + length [1] -> ids [1,T/4]
  BUILD_INFO.json           what was built, from what, with which versions

The weights are random: the server runs at full cost, but the audio is noise. Use it for speed only.
A random LLM seldom stops on its own: past the minimum length, EOS is one of the 6,564 outputs of a
random head, so about 1 request in 40 ends early (seen on the GPU: 4 of 176 per server); the rest run
to the token cap, 20 speech tokens (0.8 s of audio) per text token.

The pure parts (configs, names, shapes) import nothing outside the standard library, so tests run
without torch; building needs torch, transformers, tokenizers, onnx, hyperpyyaml and the packages the
yaml names (see docs/PERFORMANCE.md for the device recipe).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

YAML_IN_CHECKOUT = "cosyvoice/examples/libritts/cosyvoice2/conf/cosyvoice2.yaml"
QWEN_DIR = "CosyVoice-BlankEN"
CAVEAT = ("NOTE: random weights. This model directory has the real CosyVoice2-0.5B shapes, so a server "
          "does the real amount of work, but what it says is noise: use it to measure speed, never quality.")

# Qwen2-0.5B, the shape of CosyVoice-BlankEN. rope_theta stays top level (transformers 4.x layout),
# which LightTTS's own loader reads (light_tts/models/llama/model.py).
QWEN2_05B_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
    "hidden_act": "silu",
    "hidden_size": 896,
    "initializer_range": 0.02,
    "intermediate_size": 4864,
    "max_position_embeddings": 32768,
    "max_window_layers": 24,
    "model_type": "qwen2",
    "num_attention_heads": 14,
    "num_hidden_layers": 24,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}

# Real input/output names and shapes of the two ONNX files the frontend reads
# (cosyvoice/cli/frontend.py uses get_inputs()[i].name, so the names are kept for fidelity only).
CAMPPLUS_IO = {"inputs": [("input", "float32", [1, "T", 80])], "outputs": [("output", "float32", [1, 192])]}
SPEECH_TOKENIZER_IO = {"inputs": [("feats", "float32", [1, 128, "T"]), ("feats_length", "int32", [1])],
                       "outputs": [("indices", "int64", [1, "T/4"])]}
SPEECH_TOKEN_VOCAB = 6561
EOS_TEXT_TOKEN = "<|endoftext|>"


def qwen_config() -> dict:
    return json.loads(json.dumps(QWEN2_05B_CONFIG))


def yaml_path(checkout: Path) -> Path:
    """The checkout's CosyVoice2 yaml; a clear error if the checkout is not a LightTTS one."""
    p = Path(checkout) / YAML_IN_CHECKOUT
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found: CHECKOUT must be a LightTTS checkout with its cosyvoice "
                                f"submodule checked out")
    return p


def yaml_scalar(text: str, key: str) -> str | None:
    """A top-level `key: value` of the yaml, as text (enough for the checks here; no yaml library)."""
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            return line.split(":", 1)[1].split("#", 1)[0].strip()
    return None


def check_yaml_matches(text: str) -> list[str]:
    """Problems if the yaml does not describe the model this builder makes (empty list: fine)."""
    problems = []
    for key, want in (("llm_input_size", QWEN2_05B_CONFIG["hidden_size"]),
                      ("llm_output_size", QWEN2_05B_CONFIG["hidden_size"]), ("sample_rate", 24000),
                      ("spk_embed_dim", CAMPPLUS_IO["outputs"][0][2][1])):
        got = yaml_scalar(text, key)
        if got is None or int(got) != want:
            problems.append(f"{key}: expected {want}, yaml has {got!r}")
    for needed in ("llm: !new:cosyvoice.llm.llm.Qwen2LM", "flow: !new:cosyvoice.flow.flow.CausalMaskedDiffWithXvec",
                   "hift: !new:cosyvoice.hifigan.generator.HiFTGenerator", "qwen_pretrain_path:", "get_tokenizer:",
                   "feat_extractor:"):
        if needed not in text:
            problems.append(f"yaml lacks {needed!r}")
    if f"speech_token_size: {SPEECH_TOKEN_VOCAB}" not in text:
        problems.append(f"yaml lacks speech_token_size: {SPEECH_TOKEN_VOCAB}")
    return problems


def upstream_paths(checkout: Path) -> list[str]:
    """What goes on sys.path, in the order LightTTS itself arranges it."""
    c = Path(checkout).resolve()
    return [str(c), str(c / "cosyvoice"), str(c / "third_party" / "Matcha-TTS")]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- the parts that need torch

def build_tokenizer(qdir: Path) -> None:
    """Byte-level BPE with the 256 byte symbols and no merges; <|endoftext|> as eos and pad."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {sym: i for i, sym in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TEXT_TOKEN, pad_token=EOS_TEXT_TOKEN)
    fast.save_pretrained(str(qdir))


def build_qwen(qdir: Path, seed: int) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = qwen_config()
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(Qwen2Config(**cfg)).to(torch.bfloat16)
    model.save_pretrained(str(qdir), safe_serialization=True)
    # save_pretrained may write a newer config layout; put the 4.x one (top-level rope_theta) back.
    (qdir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def build_onnx(out: Path, seed: int) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def save(graph, path: Path) -> None:
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="lighttts-a10")
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, str(path))

    # campplus: [1,T,80] -> ReduceMean over T -> [1,80] @ W[80,192] -> [1,192]
    w = numpy_helper.from_array((rng.standard_normal((80, 192)) * 0.1).astype(np.float32), "W")
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    g = helper.make_graph(
        [helper.make_node("ReduceMean", ["input", "axes"], ["m"], keepdims=0),
         helper.make_node("MatMul", ["m", "W"], ["output"])],
        "campplus_standin",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, "T", 80])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 192])],
        [w, axes])
    save(g, out / "campplus.onnx")

    # speech tokenizer: every 4th frame of [1,128,T] -> sum over mel -> |x|*100 (+0*length) -> mod 6561 -> int64
    c = {name: numpy_helper.from_array(np.array(v, dtype=dt), name) for name, v, dt in (
        ("starts", [0], np.int64), ("ends", [2 ** 62], np.int64), ("ax2", [2], np.int64), ("steps", [4], np.int64),
        ("ax1", [1], np.int64), ("hundred", 100.0, np.float32), ("zero", 0.0, np.float32),
        ("vocab", float(SPEECH_TOKEN_VOCAB), np.float32))}
    nodes = [
        helper.make_node("Slice", ["feats", "starts", "ends", "ax2", "steps"], ["sl"]),
        helper.make_node("ReduceSum", ["sl", "ax1"], ["s"], keepdims=0),
        helper.make_node("Abs", ["s"], ["a"]),
        helper.make_node("Mul", ["a", "hundred"], ["x"]),
        helper.make_node("Cast", ["feats_length"], ["lenf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["lenf", "zero"], ["len0"]),
        helper.make_node("Add", ["x", "len0"], ["x1"]),
        helper.make_node("Div", ["x1", "vocab"], ["q"]),
        helper.make_node("Floor", ["q"], ["qf"]),
        helper.make_node("Mul", ["qf", "vocab"], ["qv"]),
        helper.make_node("Sub", ["x1", "qv"], ["r"]),
        helper.make_node("Floor", ["r"], ["rf"]),
        helper.make_node("Cast", ["rf"], ["indices"], to=TensorProto.INT64),
    ]
    g = helper.make_graph(
        nodes, "speech_tokenizer_standin",
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, 128, "T"]),
         helper.make_tensor_value_info("feats_length", TensorProto.INT32, [1])],
        [helper.make_tensor_value_info("indices", TensorProto.INT64, [1, "T4"])],
        list(c.values()))
    save(g, out / "speech_tokenizer_v2.onnx")


def build(checkout: Path, out: Path, seed: int = 1986, self_check: bool = True, log=print) -> dict:
    t0 = time.time()
    checkout = Path(checkout).resolve()
    src_yaml = yaml_path(checkout)
    problems = check_yaml_matches(src_yaml.read_text())
    if problems:
        raise ValueError("the checkout's yaml is not the CosyVoice2-0.5B one this builder expects:\n  "
                         + "\n  ".join(problems))
    for p in reversed(upstream_paths(checkout)):
        if p not in sys.path:
            sys.path.insert(0, p)
    out = Path(out)
    qdir = out / QWEN_DIR
    qdir.mkdir(parents=True, exist_ok=True)

    import torch

    log(f"[build] tokenizer + Qwen2-0.5B-shaped random weights -> {qdir}")
    build_tokenizer(qdir)
    build_qwen(qdir, seed)
    shutil.copyfile(src_yaml, out / "cosyvoice2.yaml")

    log("[build] instantiating the checkout's cosyvoice2.yaml (hyperpyyaml)")
    from hyperpyyaml import load_hyperpyyaml
    with open(out / "cosyvoice2.yaml") as f:
        configs = load_hyperpyyaml(f, overrides={"qwen_pretrain_path": str(qdir)})
    sizes = {}
    for key in ("llm", "flow", "hift"):
        path = out / f"{key}.pt"
        torch.save(configs[key].state_dict(), path)
        sizes[key] = {"bytes": path.stat().st_size,
                      "params": sum(p.numel() for p in configs[key].parameters())}
        log(f"[build] {path.name}: {sizes[key]['params'] / 1e6:.1f} M parameters, {sizes[key]['bytes']:,} bytes")
    torch.save({}, out / "spk2info.pt")
    build_onnx(out, seed)

    check = None
    if self_check:
        check = frontend_self_check(out, configs)
        log(f"[build] frontend self-check: {check}")
    info = {
        "checkout": str(checkout), "yaml": YAML_IN_CHECKOUT, "yaml_sha256": sha256_file(src_yaml),
        "seed": seed, "qwen_config": qwen_config(), "modules": sizes, "frontend_check": check,
        "versions": _versions(), "seconds": round(time.time() - t0, 1), "caveat": CAVEAT,
    }
    (out / "BUILD_INFO.json").write_text(json.dumps(info, indent=1) + "\n")
    log(CAVEAT)
    return info


def frontend_self_check(out: Path, configs: dict) -> dict:
    """Run the same CosyVoiceFrontEnd the server uses on a 3 s synthetic prompt; return shapes."""
    import io

    import soundfile
    import torch
    from cosyvoice.cli.frontend import CosyVoiceFrontEnd

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from tts_load import make_prompt_wav  # same prompt the load client sends

    fe = CosyVoiceFrontEnd(configs["get_tokenizer"], configs["feat_extractor"], str(out / "campplus.onnx"),
                           str(out / "speech_tokenizer_v2.onnx"), str(out / "spk2info.pt"),
                           configs["allowed_special"])
    data, sr = soundfile.read(io.BytesIO(make_prompt_wav()), dtype="float32", always_2d=True)
    speech = torch.from_numpy(data.T.copy())
    text = fe.text_normalize("Hello world, this is a test.", split=True)
    mi = fe.frontend_zero_shot(text[0], "This is the prompt text.", speech, configs["sample_rate"], "")
    return {"normalized": text, "text_tokens": list(mi["text"].shape),
            "speech_token": list(mi["flow_prompt_speech_token"].shape),
            "speech_feat": list(mi["prompt_speech_feat"].shape), "embedding": list(mi["flow_embedding"].shape)}


def _versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "tokenizers", "onnx", "onnxruntime", "numpy", "hyperpyyaml"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "?")
        except Exception:  # noqa: BLE001
            out[name] = None
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkout", type=Path, help="LightTTS checkout (read only)")
    ap.add_argument("out", type=Path, help="model directory to create")
    ap.add_argument("--seed", type=int, default=1986)
    ap.add_argument("--no-self-check", action="store_true", help="skip the frontend check at the end")
    args = ap.parse_args(argv)
    try:
        yaml_path(args.checkout)
    except FileNotFoundError as exc:
        print(f"build_model_dir: error: {exc}", file=sys.stderr)
        return 2
    try:
        import torch  # noqa: F401
    except ImportError:
        print("build_model_dir: error: torch is not installed; build on the GPU machine "
              "(see docs/PERFORMANCE.md)", file=sys.stderr)
        return 2
    build(args.checkout, args.out, args.seed, not args.no_self_check)
    return 0


if __name__ == "__main__":
    sys.exit(main())
