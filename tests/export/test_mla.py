"""Multi-head latent attention (DeepSeek-V3 / Kimi K2 layout) through the decoder graph builder, against
transformers' DeepseekV3ForCausalLM: full-sequence logits, a 64-step cached decode over the latent cache and 32
greedy tokens, the cache's size against the arithmetic and ModelSpec, and INT4 / FP8 weights against the torch
quantized model."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from retarget.compile import PARITY_ATOL
from retarget.errors import RetargetError
from retarget.eval.reference_cache import positions, reference_cache
from retarget.export.decoder import build_decoder
from retarget.export.onnx_export import export_quantized
from retarget.export.runtime import OrtCausalLM
from retarget.models.spec import ModelSpec
from retarget.quantize import Fp8WeightConfig, Int4WeightOnlyConfig, QuantLinear, quantize_
from retarget.quantize.api import untie_lm_head

VOCAB = 256
BASE = {"vocab_size": VOCAB, "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4,
        "intermediate_size": 128, "max_position_embeddings": 256, "tie_word_embeddings": False, "rms_norm_eps": 1e-6}
# DeepSeek-V3's layout scaled down: q LoRA, dense first layer, 8 experts in 4 groups (2 picked), shared expert
DEEPSEEK = {"num_hidden_layers": 3, "q_lora_rank": 32, "kv_lora_rank": 32, "qk_rope_head_dim": 8,
            "qk_nope_head_dim": 16, "v_head_dim": 16, "head_dim": 8, "first_k_dense_replace": 1,
            "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1, "moe_intermediate_size": 32,
            "n_group": 4, "topk_group": 2, "routed_scaling_factor": 2.5}
# no q LoRA (DeepSeek-V2-Lite), split-halves RoPE, one expert group (Kimi K2's routing)
VARIANT = DEEPSEEK | {"num_hidden_layers": 2, "q_lora_rank": None, "rope_interleave": False, "n_group": 1,
                      "topk_group": 1, "routed_scaling_factor": 2.827}


def build(model_type: str, config: dict, seed: int = 0) -> torch.nn.Module:
    """A small random transformers model, constant tensors (norms, biases) perturbed so a misread one shows."""
    cfg = AutoConfig.for_model(model_type, **(BASE | config))
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():
        tensors = list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers() if "correction" in n]
        for _, t in tensors:
            if t.numel() > 1 and t.min() == t.max():
                t.add_(torch.randn_like(t) * 0.1)
        model.lm_head.weight.mul_(4.0)  # greedy margins well above summation-order noise
    untie_lm_head(model)
    return model


def runtime(proto: onnx.ModelProto, tmp_path: Path) -> OrtCausalLM:
    onnx.checker.check_model(proto, full_check=True)
    onnx.save_model(proto, str(tmp_path / "model.onnx"))
    return OrtCausalLM(tmp_path / "model.onnx", spin=False)


def check_decode(rt: OrtCausalLM, model: torch.nn.Module, prompt: torch.Tensor, steps: int = 64,
                 greedy: int = 32) -> float:
    """Prefill PROMPT in both runtimes, then STEPS greedy steps through each one's cache (transformers' tokens
    fed to both); returns the max |logit diff|; ORT's own GREEDY tokens must equal transformers'."""
    cache = reference_cache(model)
    tokens: list[int] = []
    with torch.inference_mode():
        ref = model(input_ids=prompt, past_key_values=cache, use_cache=True,
                    cache_position=positions(0, prompt.shape[1])).logits[0, -1]
        got = rt.start(prompt.numpy(), prompt.shape[1] + steps + 1)
        worst = float(np.abs(got - ref.numpy()).max())
        for step in range(steps):
            tokens.append(int(ref.argmax()))
            token = torch.tensor([[tokens[-1]]])
            ref = model(input_ids=token, past_key_values=cache, use_cache=True,
                        cache_position=positions(prompt.shape[1] + step, 1)).logits[0, -1]
            got = rt.step(token.numpy())
            worst = max(worst, float(np.abs(got - ref.numpy()).max()))
    assert rt.generate(prompt[0].tolist(), greedy) == tokens[:greedy]
    return worst


def spec_of(model: torch.nn.Module) -> ModelSpec:
    return ModelSpec.from_hf_config(model.config.to_dict())


@pytest.mark.parametrize(("config", "steps"), [(DEEPSEEK, 64), (VARIANT, 16)],
                         ids=["deepseek-v3", "no-q-lora-halves-rope-one-group"])
def test_float_graph_matches_transformers(tmp_path: Path, config: dict, steps: int) -> None:
    """Full-sequence logits and a STEPS-step decode over the latent cache (absorbed attention) against
    transformers' decode over its decompressed per-head cache; 32 greedy tokens (at most STEPS) equal."""
    model = build("deepseek_v3", config)
    proto, _ = build_decoder(model)
    rt = runtime(proto, tmp_path)
    ids = torch.randint(0, VOCAB, (1, 24), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(ids).logits[0].numpy()
    assert np.abs(rt.logits(ids).numpy() - ref).max() < 1e-4
    assert check_decode(rt, model, ids[:, :12], steps, min(steps, 32)) < 1e-4
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("MoE") == config["num_hidden_layers"] - 1  # one node per MoE layer, first layer dense


def test_cache_holds_latent_and_rope_key(tmp_path: Path) -> None:
    """One cache tensor per layer of kv_lora_rank + qk_rope_head_dim values per token (not per-head K and V):
    the bytes ORT holds equal that arithmetic and ModelSpec's (inspect's) KV bytes per token."""
    model = build("deepseek_v3", DEEPSEEK)
    rt = runtime(build_decoder(model)[0], tmp_path)
    layers, width = DEEPSEEK["num_hidden_layers"], DEEPSEEK["kv_lora_rank"] + DEEPSEEK["qk_rope_head_dim"]
    assert [i.name for i in rt.past_inputs] == [f"past_key_values.{i}.latent" for i in range(layers)]
    assert [i.shape for i in rt.past_inputs] == [["batch_size", 1, "past_sequence_length", width]] * layers
    rt.generate(list(range(5, 15)), 6)
    assert rt.cache_bytes_per_token() == layers * width * 4 == spec_of(model).kv_cache_bytes_per_token(4)
    # transformers' cache holds the decompressed per-head keys (nope + rope) and values
    per_head_kv = layers * BASE["num_attention_heads"] * (DEEPSEEK["qk_nope_head_dim"] + DEEPSEEK["qk_rope_head_dim"]
                                                          + DEEPSEEK["v_head_dim"]) * 4
    assert rt.cache_bytes_per_token() * 3 < per_head_kv
    assert rt.state_bytes_per_sequence() == 0


@pytest.mark.parametrize(("config", "lowering"), [(Int4WeightOnlyConfig(group_size=32), "matmulnbits"),
                                                 (Fp8WeightConfig(granularity="channel"), "qdq-fp8")],
                         ids=["int4-g32-asym", "fp8-channel"])
def test_quantized_graph_matches_quantized_torch(tmp_path: Path, config: object, lowering: str) -> None:
    """Every projection and expert quantized: the graph (kv_b absorbed from its dequantized weight, experts in
    QMoE/MoE, the rest lowered) against the torch quantized model, within compile's parity tolerance."""
    model = build("deepseek_v3", DEEPSEEK)
    quantized = copy.deepcopy(model)
    quantize_(quantized, config)
    qweights = {n: m.qweight for n, m in quantized.named_modules() if isinstance(m, QuantLinear)}
    assert "model.layers.1.mlp.experts.7.down_proj" in qweights and "model.layers.0.self_attn.kv_b_proj" in qweights
    info = export_quantized(model, qweights, tmp_path, lowering=lowering)
    if lowering == "matmulnbits":  # float: the absorbed attention's 4 MatMuls a layer, routers (no nn.Linear)
        assert info["float_matmul_nodes"] == 4 * DEEPSEEK["num_hidden_layers"] + DEEPSEEK["num_hidden_layers"] - 1
    else:
        assert info["dequantize_linear_nodes"] >= info["lowered"] > 0
    rt = OrtCausalLM(tmp_path / "model.onnx", qdq_accuracy_level=0, spin=False)
    ids = torch.randint(0, VOCAB, (1, 20), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ref = quantized(ids).logits[0]
    assert (rt.logits(ids) - ref).abs().max().item() <= PARITY_ATOL
    assert check_decode(rt, quantized, ids[:, :8], steps=16, greedy=8) <= PARITY_ATOL


def test_quantized_kv_cache_is_refused_before_building() -> None:
    model = build("deepseek_v3", VARIANT)
    with pytest.raises(RetargetError, match="layer 0: a quantized KV cache .* latent attention"):
        build_decoder(model, kv_cache="int8")
