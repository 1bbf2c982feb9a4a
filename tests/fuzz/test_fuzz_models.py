"""Model files: a safetensors folder and a GGUF either load complete or fail in one line naming the file and
the first missing or broken tensor, never a random-initialised weight; byte-identical compiles."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from retarget.errors import RetargetError
from retarget.models.checks import check_gguf, check_hf_folder, safetensors_header
from retarget.models.load import PICKLE_SUFFIXES, check_model_ref

HIDDEN, HEADS, KV, LAYERS, VOCAB, FFN = 32, 4, 2, 2, 64, 48


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-layer Llama saved by transformers itself (random weights, safetensors)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("hf") / "tiny"
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS,
                      num_attention_heads=HEADS, num_key_value_heads=KV, max_position_embeddings=64,
                      tie_word_embeddings=False, eos_token_id=1, bos_token_id=0)
    LlamaForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst


def _fails_naming(fn, path: Path, *names: str) -> None:  # noqa: ANN001
    with pytest.raises(RetargetError) as err:
        fn(path)
    text = str(err.value)
    assert "\n" not in text and str(path) in text and all(n in text for n in names), text


def test_complete_folder_passes(hf_folder: Path) -> None:
    check_hf_folder(hf_folder)


@pytest.mark.parametrize("drop", ["model.layers.1.self_attn.q_proj.weight", "model.embed_tokens.weight",
                                  "model.norm.weight", "lm_head.weight"])
def test_missing_tensor_is_named(hf_folder: Path, tmp_path: Path, drop: str) -> None:
    from safetensors.torch import load_file, save_file

    folder = _copy(hf_folder, tmp_path / "m")
    weights = load_file(folder / "model.safetensors")
    del weights[drop]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    _fails_naming(check_hf_folder, folder, drop)


@given(key=st.sampled_from(["num_hidden_layers", "hidden_size", "vocab_size", "num_attention_heads",
                            "max_position_embeddings", "eos_token_id", "intermediate_size", "rms_norm_eps"]),
       value=st.one_of(st.integers(-(2**72), 2**72), st.floats(), st.booleans(), st.none(), st.text(max_size=6),
                       st.sampled_from([1000, 10**9, VOCAB, 0, -1, 1e30, 2**70, 3])))
def test_config_edits_pass_only_when_they_match_the_weights(hf_folder: Path, tmp_path_factory: pytest.TempPathFactory,
                                                            key: str, value: object) -> None:
    folder = _copy(hf_folder, tmp_path_factory.mktemp("cfg") / "m")
    config = json.loads((folder / "config.json").read_text())
    original = config.get(key)
    config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    try:
        check_hf_folder(folder)
    except RetargetError as err:
        assert "\n" not in str(err) and str(folder) in str(err)
        return
    # accepted: only values that describe the same weights (or do not size them)
    assert value is None or value == original or key in ("max_position_embeddings", "rms_norm_eps", "eos_token_id")


@given(cut=st.integers(0, 4000), flip=st.integers(0, 4000), byte=st.integers(0, 255))
def test_damaged_safetensors_header(hf_folder: Path, tmp_path_factory: pytest.TempPathFactory, cut: int, flip: int,
                                    byte: int) -> None:
    data = bytearray((hf_folder / "model.safetensors").read_bytes())
    header_end = 8 + struct.unpack("<Q", bytes(data[:8]))[0]
    data[flip % header_end] = byte
    path = tmp_path_factory.mktemp("st") / "model.safetensors"
    path.write_bytes(bytes(data[: len(data) - cut]))
    try:
        header = safetensors_header(path)
    except RetargetError as err:
        assert "\n" not in str(err) and str(path) in str(err)
        return
    assert header  # a sound header: every entry lies inside the file


def _write_gguf(path: Path, blocks: int = LAYERS, skip: str = "", block_count: int | None = None,
                nan_in: str = "") -> Path:
    """A llama-architecture GGUF written by gguf-py's own writer: F32 tensors in GGUF (fastest-first) order."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(block_count if block_count is not None else blocks)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV)
    writer.add_context_length(64)
    writer.add_vocab_size(VOCAB)
    head_dim = HIDDEN // HEADS
    shapes = {"token_embd.weight": (VOCAB, HIDDEN), "output_norm.weight": (HIDDEN,), "output.weight": (VOCAB, HIDDEN)}
    for i in range(blocks):
        shapes |= {f"blk.{i}.attn_norm.weight": (HIDDEN,), f"blk.{i}.ffn_norm.weight": (HIDDEN,),
                   f"blk.{i}.attn_q.weight": (HEADS * head_dim, HIDDEN),
                   f"blk.{i}.attn_k.weight": (KV * head_dim, HIDDEN),
                   f"blk.{i}.attn_v.weight": (KV * head_dim, HIDDEN), f"blk.{i}.attn_output.weight": (HIDDEN, HIDDEN),
                   f"blk.{i}.ffn_gate.weight": (FFN, HIDDEN), f"blk.{i}.ffn_up.weight": (FFN, HIDDEN),
                   f"blk.{i}.ffn_down.weight": (HIDDEN, FFN)}
    rng = np.random.default_rng(0)
    for name, shape in shapes.items():
        if name != skip:
            values = rng.standard_normal(shape).astype(np.float32)
            if name == nan_in:
                values.flat[0] = np.nan
            writer.add_tensor(name, values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_complete_gguf_passes(tmp_path: Path) -> None:
    check_gguf(_write_gguf(tmp_path / "ok.gguf"))


@pytest.mark.parametrize("kwargs, names", [
    ({"skip": "blk.1.attn_q.weight"}, ["blk.1.attn_q.weight", "missing"]),
    ({"skip": "token_embd.weight"}, ["token_embd.weight"]),
    ({"skip": "blk.0.ffn_down.weight"}, ["blk.0.ffn_down.weight"]),
    ({"block_count": 1000}, ["block_count", "1000"]),
    ({"blocks": 0, "block_count": 0}, ["num_hidden_layers"]),
    ({"nan_in": "output_norm.weight"}, ["output_norm.weight", "NaN"]),
])
def test_incomplete_gguf_is_named(tmp_path: Path, kwargs: dict, names: list[str]) -> None:
    path = _write_gguf(tmp_path / "bad.gguf", **kwargs)
    _fails_naming(check_gguf, path, *names)


@given(cut=st.integers(0, 200_000), flip=st.integers(0, 3000), byte=st.integers(0, 255))
def test_damaged_gguf(tmp_path_factory: pytest.TempPathFactory, cut: int, flip: int, byte: int) -> None:
    folder = tmp_path_factory.mktemp("gguf")
    data = bytearray(_write_gguf(folder / "ok.gguf").read_bytes())
    data[flip % len(data)] = byte
    path = folder / "bad.gguf"
    path.write_bytes(bytes(data[: max(0, len(data) - cut)]))
    try:
        check_gguf(path)
    except RetargetError as err:
        assert "\n" not in str(err) and str(path) in str(err)


@given(suffix=st.sampled_from(sorted(PICKLE_SUFFIXES)), payload=st.binary(max_size=64))
def test_pickles_are_never_opened(tmp_path_factory: pytest.TempPathFactory, suffix: str, payload: bytes) -> None:
    path = tmp_path_factory.mktemp("pkl") / f"model{suffix}"
    path.write_bytes(b"\x80\x04cos\nsystem\n" + payload)
    _fails_naming(check_model_ref, path, "pickle")


@pytest.mark.slow
def test_two_compiles_are_byte_identical(tmp_path: Path) -> None:
    """The same input compiled twice gives the same bytes in every file but the timing-bearing report."""
    from retarget.compile import compile_model

    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        compile_model("default", target="cpu-x86", recipe="keep", out=out, eval_tokens=1024)
    files = sorted(p.name for p in outs[0].iterdir())
    assert files == sorted(p.name for p in outs[1].iterdir())
    for name in ("model.onnx", "model.onnx.data", "tokenizer.json", "recipe.json"):
        if name in files:
            assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
