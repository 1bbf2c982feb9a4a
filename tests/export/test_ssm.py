"""State-space hybrids through the decoder graph builder, against transformers: Falcon-H1 (Mamba-2 beside
attention, muP multipliers) and Jamba (Mamba and attention layers, MoE layers). A prompt of more than 4 SSD
chunks checks ORT's scan against transformers' chunked scan; the cached decode checks it against transformers'
single-step recurrence; the cache is fixed-size conv and SSM states beside the attention layers' K/V."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from test_mla import VOCAB, build, check_decode, runtime, spec_of

from retarget.compile import PARITY_ATOL
from retarget.export.decoder import build_decoder
from retarget.export.decoder.registry import Unsupported
from retarget.export.onnx_export import export_quantized
from retarget.export.runtime import OrtCausalLM
from retarget.quantize import Fp8WeightConfig, Int4WeightOnlyConfig, QuantLinear, quantize_

CHUNK = 16
FALCON_H1 = {"num_hidden_layers": 2, "num_key_value_heads": 2, "head_dim": 16, "mamba_d_ssm": 64,
             "mamba_n_heads": 8, "mamba_d_head": 8, "mamba_d_state": 16, "mamba_chunk_size": CHUNK,
             "mamba_expand": 1, "pad_token_id": 0, "embedding_multiplier": 1.5, "lm_head_multiplier": 0.7,
             "key_multiplier": 0.8, "attention_in_multiplier": 1.2, "attention_out_multiplier": 0.9,
             "ssm_in_multiplier": 1.1, "ssm_out_multiplier": 0.6, "ssm_multipliers": [0.9, 1.1, 1.2, 0.8, 1.3],
             "mlp_multipliers": [1.3, 0.7]}
JAMBA = {"num_hidden_layers": 4, "num_key_value_heads": 2, "attn_layer_period": 2, "attn_layer_offset": 1,
         "expert_layer_period": 2, "expert_layer_offset": 1, "num_experts": 4, "num_experts_per_tok": 2,
         "use_mamba_kernels": False, "mamba_d_state": 8, "mamba_dt_rank": 8, "pad_token_id": 0}
FAMILIES = {"falcon-h1": ("falcon_h1", FALCON_H1),
            "falcon-h1-2groups": ("falcon_h1", FALCON_H1 | {"mamba_n_groups": 2}),
            "falcon-h1-gated-norm": ("falcon_h1", FALCON_H1 | {"mamba_rms_norm": True}),
            "falcon-h1-norm-after-gate": ("falcon_h1", FALCON_H1 | {"mamba_rms_norm": True,
                                                                    "mamba_norm_before_gate": False}),
            "jamba": ("jamba", JAMBA)}


def ids(length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, VOCAB, (1, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_long_prompt_matches_chunked_scan(tmp_path: Path, name: str) -> None:
    """A 5-chunk prompt in one pass (transformers: the chunked SSD scan for Mamba-2, the sequential scan for
    Mamba) and, through the cache, prefill + one token at a time (transformers' recurrence)."""
    model_type, config = FAMILIES[name]
    model = build(model_type, config)
    rt = runtime(build_decoder(model)[0], tmp_path)
    prompt = ids(5 * CHUNK)
    with torch.inference_mode():
        ref = model(prompt).logits[0].numpy()
    assert np.abs(rt.logits(prompt).numpy() - ref).max() < 1e-4
    rows = [rt.start(prompt[:, :CHUNK + 3].numpy(), prompt.shape[1])]
    rows += [rt.step(prompt[:, t:t + 1].numpy()) for t in range(CHUNK + 3, prompt.shape[1] - 1)]
    assert np.abs(np.stack(rows) - ref[CHUNK + 2:-1]).max() < 1e-4


@pytest.mark.parametrize("name", ["falcon-h1", pytest.param("jamba", marks=pytest.mark.slow)])
def test_cached_decode_matches_transformers(tmp_path: Path, name: str) -> None:
    """64 steps through the conv/SSM states and K/V against transformers' hybrid cache; 32 greedy tokens."""
    model_type, config = FAMILIES[name]
    model = build(model_type, config)
    rt = runtime(build_decoder(model)[0], tmp_path)
    assert check_decode(rt, model, ids(2 * CHUNK + 5)) < 1e-4


def _state_bytes(model_type: str, config: dict) -> tuple[int, int]:
    """(K/V bytes per token, conv + SSM state bytes per sequence) of a float32 cache, by hand: attention layers
    hold 2 * kv_heads * head_dim per token; an SSM layer (d_conv - 1) inputs of the conv and its state."""
    heads, hidden, layers = 4, 64, config["num_hidden_layers"]
    if model_type == "falcon_h1":
        inner, state, groups = config["mamba_d_ssm"], config["mamba_d_state"], config.get("mamba_n_groups", 1)
        conv_channels, attention, ssm = inner + 2 * groups * state, layers, layers
        head_dim = config["head_dim"]
    else:
        inner, state = 2 * hidden, config["mamba_d_state"]
        conv_channels, attention = inner, layers // config["attn_layer_period"]
        ssm, head_dim = layers - attention, hidden // heads
    kv = attention * 2 * config["num_key_value_heads"] * head_dim * 4
    return kv, ssm * (3 * conv_channels + inner * state) * 4


@pytest.mark.parametrize("name", ["falcon-h1", "jamba"])
def test_cache_is_kv_plus_fixed_states(tmp_path: Path, name: str) -> None:
    """The states don't grow with the sequence; the bytes ORT holds equal the arithmetic, and the per-token
    K/V bytes equal ModelSpec's (predict's) assumption."""
    model_type, config = FAMILIES[name]
    model = build(model_type, config)
    rt = runtime(build_decoder(model)[0], tmp_path)
    kv, states = _state_bytes(model_type, config)
    rt.generate(ids(10)[0].tolist(), 4)
    first = [v.shape() for v in rt._cache]
    rt.generate(ids(30)[0].tolist(), 4)
    fixed = [a == b for a, b in zip(first, [v.shape() for v in rt._cache], strict=True)]
    assert fixed == [axis is None for axis in rt.seq_axis] and not all(fixed)
    assert rt.cache_bytes_per_token() == kv == spec_of(model).kv_cache_bytes_per_token(4)
    assert rt.state_bytes_per_sequence() == states


@pytest.mark.parametrize("name", ["falcon-h1", "jamba"])
def test_perf_model_state_bytes_match_the_graph(tmp_path: Path, name: str) -> None:
    model_type, config = FAMILIES[name]
    model = build(model_type, config)
    rt = runtime(build_decoder(model)[0], tmp_path)
    assert rt.state_bytes_per_sequence() == spec_of(model).state_bytes_per_sequence(4)


@pytest.mark.parametrize(("name", "config", "lowering"),
                         [("falcon-h1", Int4WeightOnlyConfig(group_size=32), "matmulnbits"),
                          ("jamba", Int4WeightOnlyConfig(group_size=32), "matmulnbits"),
                          ("jamba", Fp8WeightConfig(granularity="channel"), "qdq-fp8")],
                         ids=["falcon-h1-int4", "jamba-int4", "jamba-fp8"])
def test_quantized_graph_matches_quantized_torch(tmp_path: Path, name: str, config: object, lowering: str) -> None:
    """in/x/dt/out projections, attention and experts quantized; the conv kernel, A, D and norms stay float."""
    model_type, hf_config = FAMILIES[name]
    model = build(model_type, hf_config)
    quantized = copy.deepcopy(model)
    quantize_(quantized, config)
    qweights = {n: m.qweight for n, m in quantized.named_modules() if isinstance(m, QuantLinear)}
    assert any(n.endswith("mamba.in_proj") for n in qweights) and any(n.endswith("mamba.out_proj") for n in qweights)
    info = export_quantized(model, qweights, tmp_path, lowering=lowering)
    assert info["lowered"] > 0
    rt = OrtCausalLM(tmp_path / "model.onnx", qdq_accuracy_level=0, spin=False)
    prompt = ids(3 * CHUNK, seed=2)
    with torch.inference_mode():
        ref = quantized(prompt).logits[0]
    assert (rt.logits(prompt) - ref).abs().max().item() <= PARITY_ATOL


def test_unsupported_gated_norm_over_groups_is_refused() -> None:
    model = build("falcon_h1", FALCON_H1 | {"mamba_rms_norm": True, "mamba_n_groups": 2})
    with pytest.raises(Unsupported, match=r"layer 0: Mamba-2 gated RMSNorm over 2 groups"):
        build_decoder(model)
