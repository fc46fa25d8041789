"""bench/build_model_dir.py: the pure parts always; the ONNX stand-ins where onnx and onnxruntime are
installed (the `bench` extra, which CI installs); the full build only with a real checkout and torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import build_model_dir as bmd  # noqa: E402
from conftest import upstream_checkout  # noqa: E402

# The lines of CosyVoice's cosyvoice2.yaml that the builder checks, in the same form (not a copy of it).
GOOD_YAML = """\
sample_rate: 24000
llm_input_size: 896
llm_output_size: 896
spk_embed_dim: 192
qwen_pretrain_path: ''
llm: !new:cosyvoice.llm.llm.Qwen2LM
    speech_token_size: 6561
flow: !new:cosyvoice.flow.flow.CausalMaskedDiffWithXvec
hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
get_tokenizer: !name:cosyvoice.tokenizer.tokenizer.get_qwen_tokenizer
feat_extractor: !name:matcha.utils.audio.mel_spectrogram
"""


def test_qwen_config_is_the_qwen2_05b_shape_and_a_fresh_copy():
    cfg = bmd.qwen_config()
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
            cfg["intermediate_size"], cfg["vocab_size"]) == (896, 24, 14, 2, 4864, 151936)
    assert cfg["hidden_size"] % cfg["num_attention_heads"] == 0  # head_dim 64
    assert cfg["rope_theta"] == 1e6 and "rope_scaling" not in cfg  # LightTTS reads the top-level key
    cfg["hidden_size"] = 1
    assert bmd.qwen_config()["hidden_size"] == 896


def test_yaml_check_accepts_the_cosyvoice2_shape():
    assert bmd.check_yaml_matches(GOOD_YAML) == []


@pytest.mark.parametrize("old,new,named", [
    ("llm_input_size: 896", "llm_input_size: 1024", "llm_input_size"),
    ("spk_embed_dim: 192", "spk_embed_dim: 80", "spk_embed_dim"),
    ("sample_rate: 24000", "sample_rate: 22050", "sample_rate"),
    ("flow: !new:cosyvoice.flow.flow.CausalMaskedDiffWithXvec", "flow: !new:cosyvoice.flow.flow.MaskedDiffWithXvec",
     "CausalMaskedDiffWithXvec"),
    ("speech_token_size: 6561", "speech_token_size: 4096", "speech_token_size"),
])
def test_yaml_check_names_what_differs(old, new, named):
    problems = bmd.check_yaml_matches(GOOD_YAML.replace(old, new))
    assert len(problems) == 1 and named in problems[0]


def test_not_a_checkout_is_a_usage_error_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="cosyvoice2.yaml not found"):
        bmd.yaml_path(tmp_path)
    p = subprocess.run([sys.executable, str(REPO / "bench" / "build_model_dir.py"), str(tmp_path), str(tmp_path / "m")],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert "CHECKOUT must be a LightTTS checkout" in p.stderr
    assert not (tmp_path / "m").exists()


def test_upstream_paths_follow_lighttts_layout(tmp_path):
    paths = bmd.upstream_paths(tmp_path)
    assert paths == [str(tmp_path.resolve()), str(tmp_path.resolve() / "cosyvoice"),
                     str(tmp_path.resolve() / "third_party" / "Matcha-TTS")]


def test_onnx_standins_have_the_real_names_shapes_and_types(tmp_path):
    np = pytest.importorskip("numpy", reason="numpy is in the `bench` extra (pip install -e '.[bench]')")
    pytest.importorskip("onnx", reason="onnx is in the `bench` extra (pip install -e '.[bench]')")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the `bench` extra")
    bmd.build_onnx(tmp_path, seed=1)

    camp = ort.InferenceSession(str(tmp_path / "campplus.onnx"), providers=["CPUExecutionProvider"])
    (inp,), (out,) = camp.get_inputs(), camp.get_outputs()
    assert (inp.name, inp.shape[2], out.name, out.shape) == ("input", 80, "output", [1, 192])
    emb = camp.run(None, {inp.name: np.random.default_rng(0).standard_normal((1, 150, 80)).astype(np.float32)})[0]
    assert emb.shape == (1, 192) and emb.dtype == np.float32 and np.isfinite(emb).all()

    tok = ort.InferenceSession(str(tmp_path / "speech_tokenizer_v2.onnx"), providers=["CPUExecutionProvider"])
    feats, length = tok.get_inputs()
    assert (feats.name, feats.shape[:2], length.name, tok.get_outputs()[0].name) == (
        "feats", [1, 128], "feats_length", "indices")
    mel = np.random.default_rng(0).standard_normal((1, 128, 300)).astype(np.float32) * 4
    ids = tok.run(None, {"feats": mel, "feats_length": np.array([300], dtype=np.int32)})[0]
    # 100 mel frames a second in, 25 speech tokens a second out, all inside the speech vocabulary
    assert ids.shape == (1, 75) and ids.dtype == np.int64
    assert ids.min() >= 0 and ids.max() < bmd.SPEECH_TOKEN_VOCAB and len(set(ids.ravel().tolist())) > 10


def test_real_checkout_yaml_is_the_one_the_builder_expects():
    checkout = upstream_checkout("LIGHTTTS_UPSTREAM")
    assert bmd.check_yaml_matches(bmd.yaml_path(checkout).read_text()) == []


def test_full_build_loads_strictly_into_the_checkouts_classes(tmp_path):
    """The whole builder on the CPU: every state dict loads strictly back into the yaml's modules."""
    if os.environ.get("LIGHTTTS_A10_FULL_BUILD") != "1":
        pytest.skip("set LIGHTTTS_A10_FULL_BUILD=1 to build a 1.6 GB model dir (needs torch, transformers, "
                    "hyperpyyaml and CosyVoice's requirements; about a minute on 2 cores)")
    checkout = upstream_checkout("LIGHTTTS_UPSTREAM")
    torch = pytest.importorskip("torch", reason="torch is not installed")
    out = tmp_path / "model"
    info = bmd.build(checkout, out, seed=7, self_check=True, log=lambda *_: None)
    for name in ("cosyvoice2.yaml", "llm.pt", "flow.pt", "hift.pt", "spk2info.pt", "campplus.onnx",
                 "speech_tokenizer_v2.onnx", "CosyVoice-BlankEN/config.json", "CosyVoice-BlankEN/model.safetensors",
                 "CosyVoice-BlankEN/tokenizer.json", "BUILD_INFO.json"):
        assert (out / name).is_file(), name
    assert (out / "cosyvoice2.yaml").read_bytes() == bmd.yaml_path(checkout).read_bytes()
    from hyperpyyaml import load_hyperpyyaml

    with open(out / "cosyvoice2.yaml") as f:
        configs = load_hyperpyyaml(f, overrides={"qwen_pretrain_path": str(out / bmd.QWEN_DIR)})
    for key in ("llm", "flow", "hift"):
        configs[key].load_state_dict(torch.load(out / f"{key}.pt", map_location="cpu"), strict=True)
    assert info["modules"]["llm"]["params"] > 400e6  # Qwen2-0.5B inside
    check = info["frontend_check"]
    assert check["speech_token"] == [1, 75] and check["embedding"] == [1, 192] and check["speech_feat"][2] == 80
