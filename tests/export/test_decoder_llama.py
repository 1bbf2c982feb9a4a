"""The directly built Llama graph (GroupQueryAttention, fused norms and projections) against transformers'
own LlamaForCausalLM and our quantized torch model, on small random models; the bundled SmolLM2 is slow."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from retarget.errors import RetargetError
from retarget.eval.verify import PARITY_ATOL
from retarget.export.decoder import build_decoder, unsupported_reason
from retarget.export.decoder.fusion import fuse_rows
from retarget.export.matmulnbits import lower_matmuls, lower_tied_embedding
from retarget.export.onnx_export import write_accuracy_variant
from retarget.export.runtime import OrtCausalLM
from retarget.quantize import Int4WeightOnlyConfig, Int8WeightOnlyConfig, QuantLinear, quantize_
from retarget.quantize.api import untie_lm_head
from retarget.quantize.weight import quantize_rtn

PROMPT = 10


def tiny_llama(**overrides) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=64, rope_theta=100000.0, tie_word_embeddings=True)
    model = LlamaForCausalLM(LlamaConfig(**(cfg | overrides))).eval()
    untie_lm_head(model)
    return model


def save(proto: onnx.ModelProto, tmp_path: Path) -> OrtCausalLM:
    onnx.checker.check_model(proto, full_check=True)
    onnx.save_model(proto, str(tmp_path / "model.onnx"))
    return OrtCausalLM(tmp_path / "model.onnx")


def torch_logits(model: torch.nn.Module, ids: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model(ids).logits[0].numpy()


def incremental_logits(rt: OrtCausalLM, ids: np.ndarray, prompt: int) -> np.ndarray:
    """Prefill PROMPT tokens, then the rest one at a time through the shared KV buffer: logits per step."""
    rows = [rt.start(ids[:, :prompt], ids.shape[1])]
    rows += [rt.step(ids[:, t:t + 1]) for t in range(prompt, ids.shape[1] - 1)]
    return np.stack(rows)


@pytest.mark.parametrize("overrides", [{}, {"rope_scaling": {"rope_type": "linear", "factor": 2.0}},
                                       {"num_key_value_heads": 4, "head_dim": 32}])
def test_float_graph_matches_transformers(tmp_path: Path, overrides: dict) -> None:
    """Full sequence, and prefill + decode through the cache, against transformers' forward."""
    model = tiny_llama(**overrides)
    proto, renamed = build_decoder(model)
    assert renamed == {}
    assert "GroupQueryAttention" in {n.op_type for n in proto.graph.node}
    rt = save(proto, tmp_path)
    assert rt.shares_buffer
    ids = torch.randint(0, 256, (1, 16), generator=torch.Generator().manual_seed(1))
    ref = torch_logits(model, ids)
    np.testing.assert_allclose(rt.logits(ids).numpy(), ref, atol=1e-4)
    np.testing.assert_allclose(incremental_logits(rt, ids.numpy(), PROMPT), ref[PROMPT - 1:-1], atol=1e-4)


def test_logits_to_keep_runs_lm_head_on_the_last_rows(tmp_path: Path) -> None:
    """logits_to_keep is a graph input: 0 gives every position, k the last k (what a prompt in `start` asks
    for); a step past start's max_length is refused rather than written beyond the cache."""
    import onnxruntime as ort

    model = tiny_llama()
    rt = save(build_decoder(model)[0], tmp_path)
    assert "logits_to_keep" in rt.input_names
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(2)).numpy()
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {**rt._feeds(ids, 0), **rt.empty_past()}
    full, last2 = (session.run(["logits"], {**feeds, "logits_to_keep": np.array([k], np.int64)})[0] for k in (0, 2))
    assert full.shape == (1, 12, 256) and last2.shape == (1, 2, 256)
    np.testing.assert_allclose(last2[0], full[0, -2:], atol=1e-5)
    np.testing.assert_allclose(rt.start(ids, 13), full[0, -1], atol=1e-5)
    rt.step(ids[:, :1])
    with pytest.raises(RetargetError, match="max_length"):
        rt.step(ids[:, :1])


def test_quantized_graph_matches_quantized_torch(tmp_path: Path) -> None:
    """INT4 g32 asymmetric body, 8-bit lm_head read by the embedding too: within compile's parity tolerance."""
    model = tiny_llama()
    quantized = copy.deepcopy(model)
    quantize_(quantized, Int4WeightOnlyConfig(group_size=32))
    qweights = {n: m.qweight for n, m in quantized.named_modules() if isinstance(m, QuantLinear)}
    proto, renamed = build_decoder(model, qweights)
    assert "model.layers.0.self_attn.qkv_proj" in renamed and "model.layers.0.mlp.gate_up_proj" in renamed
    lower_matmuls(proto, renamed)
    assert lower_tied_embedding(proto)
    ops = [n.op_type for n in proto.graph.node]
    assert "MatMul" not in ops and "GatherBlockQuantized" in ops
    rt = save(proto, tmp_path)
    ids = torch.randint(0, 256, (1, 16), generator=torch.Generator().manual_seed(2))
    quantized.get_input_embeddings().weight.data = quantized.lm_head.qweight.dequantize()
    ref = torch_logits(quantized, ids)
    assert np.abs(rt.logits(ids).numpy() - ref).max() <= PARITY_ATOL
    assert np.abs(incremental_logits(rt, ids.numpy(), PROMPT) - ref[PROMPT - 1:-1]).max() <= PARITY_ATOL


def test_per_channel_int8_head_feeds_the_embedding(tmp_path: Path) -> None:
    """A per-channel INT8 lm_head whose K is no multiple of 128 (hidden 96, as SmolLM2's 576) is re-blocked at
    the largest block that tiles K, so the tied embedding reads its blocks (GatherBlockQuantized) instead of
    keeping a float table; logits still match the torch quantized model."""
    model = tiny_llama(hidden_size=96, num_attention_heads=3, num_key_value_heads=1)
    quantized = copy.deepcopy(model)
    quantize_(quantized, Int8WeightOnlyConfig())
    qweights = {n: m.qweight for n, m in quantized.named_modules() if isinstance(m, QuantLinear)}
    proto, renamed = build_decoder(model, qweights)
    lower_matmuls(proto, renamed)
    assert lower_tied_embedding(proto)
    head = next(n for n in proto.graph.node if n.name == "lm_head/MatMulNBits")
    assert {a.name: a.i for a in head.attribute}["block_size"] == 32  # 96 = 3 x 32
    assert "model.embed_tokens.weight" not in {t.name for t in proto.graph.initializer}
    rt = save(proto, tmp_path)
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(5))
    quantized.get_input_embeddings().weight.data = quantized.lm_head.qweight.dequantize()
    assert np.abs(rt.logits(ids).numpy() - torch_logits(quantized, ids)).max() <= PARITY_ATOL


def test_level4_variant_decodes_close_to_exact(tmp_path: Path) -> None:
    """The accuracy-level-4 copy (int8 activations: what the CPU target runs) through prefill and decode, against
    the level-0 graph it was written from."""
    model = tiny_llama()
    quantized = copy.deepcopy(model)
    quantize_(quantized, Int4WeightOnlyConfig(group_size=32))
    qweights = {n: m.qweight for n, m in quantized.named_modules() if isinstance(m, QuantLinear)}
    proto, renamed = build_decoder(model, qweights)
    lower_matmuls(proto, renamed)
    exact = save(proto, tmp_path)
    level4 = OrtCausalLM(write_accuracy_variant(tmp_path / "model.onnx", 4, tmp_path / "level4.onnx"))
    ids = torch.randint(0, 256, (1, 16), generator=torch.Generator().manual_seed(4)).numpy()
    reference = incremental_logits(exact, ids, PROMPT)
    difference = np.abs(incremental_logits(level4, ids, PROMPT) - reference).max()
    assert 0 < difference < 0.05  # int8 activations: close, and not the same graph


def test_mixed_formats_stay_unfused(tmp_path: Path) -> None:
    """A v_proj in another format (llama.cpp mixes Q4_1 and Q8_0) keeps q, k, v as three lowered matmuls."""
    model = tiny_llama(num_hidden_layers=1)
    qweights = {n: quantize_rtn(m.weight.detach(), 8 if n.endswith("v_proj") else 4, 32, symmetric=False)
                for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "self_attn" in n}
    proto, renamed = build_decoder(model, qweights)
    assert set(renamed) == set(qweights)
    lower_matmuls(proto, renamed)
    gqa = next(n for n in proto.graph.node if n.op_type == "GroupQueryAttention")
    assert all(gqa.input[:3])
    reference = copy.deepcopy(model)
    for name, qw in qweights.items():
        reference.get_submodule(name).weight.data = qw.dequantize()
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(save(proto, tmp_path).logits(ids).numpy(), torch_logits(reference, ids),
                               atol=PARITY_ATOL)


def test_generate_matches_torch_greedy(tmp_path: Path) -> None:
    model = tiny_llama()
    rt = save(build_decoder(model)[0], tmp_path)
    prompt = [5, 17, 42, 7]
    with torch.inference_mode():
        expected = model.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False)[0, len(prompt):]
    assert rt.generate(prompt, 8) == expected.tolist()


def test_fuse_rows_refuses_mixed_formats() -> None:
    w = torch.randn(8, 64)
    assert fuse_rows([quantize_rtn(w, 4, 32, False), quantize_rtn(w, 8, 32, False)]) is None
    stacked = fuse_rows([quantize_rtn(w, 4, 32, False), quantize_rtn(2 * w, 4, 32, False)])
    torch.testing.assert_close(stacked.dequantize(), torch.cat([quantize_rtn(w, 4, 32, False).dequantize(),
                                                                quantize_rtn(2 * w, 4, 32, False).dequantize()]))


def test_unsupported_models_are_named() -> None:
    assert unsupported_reason(tiny_llama()) is None
    assert "'dynamic'" in unsupported_reason(tiny_llama(rope_scaling={"rope_type": "dynamic", "factor": 2.0}))
