"""Every weight matrix of an MoE model is quantized: fused 3-D experts (gpt-oss, Llama 4) and ModuleList experts,
routers stay float, and calibrated recipes see each expert's own tokens (RTN for experts no token reaches)."""

from __future__ import annotations

import copy
from collections import Counter
from functools import cache

import pytest
import torch
from torch import nn

from retarget.models.tiny import build_tiny, tiny_tokenizer
from retarget.quantize import (
    QuantLinear,
    calibration_tokens,
    collect_stats,
    config_from_name,
    quantization_report,
    quantize_,
    quantized_weights,
)
from retarget.quantize.api import linear_layers
from retarget.quantize.experts import expert_matrix, fused_experts
from retarget.quantize.float_formats import decode
from retarget.quantize.weight import quantize_rtn

TEXT = "The quick brown fox jumps over the lazy dog, and the experts route every token somewhere. " * 3


@cache
def _float(name: str) -> nn.Module:
    return build_tiny(name)


@cache
def _quantized(name: str, recipe: str) -> nn.Module:
    model = copy.deepcopy(_float(name))
    calibration = calibration_tokens(tiny_tokenizer(), sequences=1) if "gptq" in recipe else None
    quantize_(model, config_from_name(recipe), calibration=calibration)
    return model


def _ids() -> torch.Tensor:
    return tiny_tokenizer()(TEXT, return_tensors="pt")["input_ids"]


def _fused_float(name: str) -> dict[str, torch.Tensor]:
    """The float [out, in] matrix of every expert of every fused module, keyed like quantized_weights."""
    return {f"{path}.{matrix}.{e}": expert_matrix(module, matrix, e)
            for path, (module, layout) in fused_experts(_float(name)).items()
            for matrix in layout.matrices for e in range(getattr(module, matrix).shape[0])}


def _error_bound(qw, w: torch.Tensor) -> torch.Tensor:
    """Largest |dequantized - float| rounding allows per element, from the format's grid (hand-derived)."""
    scale = qw.expand(qw.scale)
    if qw.element == "int":  # round to nearest on a uniform grid: half a step
        return 0.5 * scale * (1 + 1e-5)
    if qw.element == "e4m3":  # 3 mantissa bits: half an ulp is 2^-4 of the value; subnormal step 2^-9
        return w.abs() * 2**-4 + scale * 2**-10
    # e2m1 on 0, .5, 1, 1.5, 2, 3, 4, 6: at most a quarter of the value or of the scale, plus what exceeds 6 * scale
    return 0.25 * w.abs() + 0.25 * scale + (w.abs() - 6 * scale).clamp(min=0) + 1e-6


@pytest.mark.parametrize("name", ["gpt-oss", "llama-4"])
@pytest.mark.parametrize("recipe", ["int4-g32-asym", "fp8-channel", "mxfp4"])
def test_fused_experts_quantized_within_format_bound(name: str, recipe: str) -> None:
    model = _quantized(name, recipe)
    weights = quantized_weights(model)
    float_experts = _fused_float(name)
    assert set(float_experts) <= set(weights)  # every expert of every fused module, one key each
    for key, w in float_experts.items():
        qw = weights[key]
        assert qw.shape == tuple(w.shape)
        dq = qw.dequantize()
        assert ((dq - w).abs() <= _error_bound(qw, w)).all(), key
        if qw.element == "e2m1":
            assert torch.equal(decode(qw.codes, "e2m1").abs().amax() <= 6, torch.tensor(True))
        path, matrix, e = key.rsplit(".", 2)  # the torch model computes with exactly these values
        torch.testing.assert_close(expert_matrix(model.get_submodule(path), matrix, int(e)), dq, atol=0, rtol=0)


def _rebuilt_from_weights(name: str, recipe: str) -> nn.Module:
    """A float copy with every matrix of quantized_weights written in: an independent copy of the quantized model."""
    model = copy.deepcopy(_float(name))
    for key, qw in quantized_weights(_quantized(name, recipe)).items():
        path, _, last = key.rpartition(".")
        if last.isdigit():  # a fused expert: parameter [E, in, out]
            owner, _, matrix = path.rpartition(".")
            getattr(model.get_submodule(owner), matrix).data[int(last)] = qw.dequantize().T
        else:
            model.get_submodule(key).weight.data = qw.dequantize()
    if model.config.tie_word_embeddings:
        model.config.tie_word_embeddings = False
    return model


@pytest.mark.parametrize("name", ["gpt-oss", "qwen3-moe", "llama-4"])
def test_quantized_moe_logits_match_dequantized_weights_and_stay_close(name: str) -> None:
    recipe = "fp8-channel"
    quantized = _quantized(name, recipe)
    with torch.no_grad():
        ref = _float(name)(_ids()).logits
        got = quantized(_ids()).logits
        rebuilt = _rebuilt_from_weights(name, recipe)(_ids()).logits
    torch.testing.assert_close(got, rebuilt, atol=1e-4, rtol=0)
    cos = torch.nn.functional.cosine_similarity(got.flatten(1), ref.flatten(1)).item()
    assert cos > 0.95, cos  # FP8 weights: the logits keep their direction
    linears = {n for n, m in quantized.named_modules() if isinstance(m, QuantLinear)}
    report = quantization_report(quantized)
    assert report.quantized_matrices == len(quantized_weights(quantized)) == len(linears) + len(_fused_float(name))


def _routed_counts(name: str, tokens: list[int], seq_len: int = 512) -> Counter[tuple[int, int]]:
    """Tokens the float model routes to each (layer, expert), read off the routers' own outputs."""
    model, counts, handles = _float(name), Counter(), []
    for i, layer in enumerate(model.model.layers):
        mlp = layer.mlp
        if name == "gpt-oss":
            def hook(mod, args, out, i=i):
                counts.update((i, int(e)) for e in out[1].flatten())
            handles.append(mlp.router.register_forward_hook(hook))
        elif hasattr(mlp, "gate"):
            def hook(mod, args, out, i=i, k=model.config.num_experts_per_tok):
                counts.update((i, int(e)) for e in out.topk(k, dim=-1).indices.flatten())
            handles.append(mlp.gate.register_forward_hook(hook))
    with torch.no_grad():
        for chunk in torch.tensor(tokens).view(-1, seq_len).split(4):
            model.model(input_ids=chunk, use_cache=False)
    for h in handles:
        h.remove()
    return counts


def _routed_experts(name: str, tokens: list[int]) -> set[tuple[int, int]]:
    return set(_routed_counts(name, tokens))


@pytest.mark.parametrize("name", ["qwen3-moe", "gpt-oss"])
def test_expert_statistics_count_exactly_the_routed_tokens(name: str) -> None:
    # first batch: one token repeated (routing concentrates on few experts); the others appear in the second
    text = calibration_tokens(tiny_tokenizer(), sequences=4, seq_len=64)
    tokens = [text[0]] * len(text) + text
    stats = collect_stats(_float(name), tokens, linear_layers(_float(name), include_lm_head=False), seq_len=64)
    counts = _routed_counts(name, tokens, seq_len=64)
    first_batch = _routed_counts(name, tokens[:len(text)], seq_len=64)
    assert set(counts) - set(first_batch)  # some experts are first reached in the second batch
    matrix = "gate_up_proj.{e}" if name == "gpt-oss" else "{e}.gate_proj"
    for layer, expert in counts:
        key = f"model.layers.{layer}.mlp.experts." + matrix.format(e=expert)
        assert stats[key].tokens == counts[layer, expert], key
    expert_keys = {k for k in stats if ".experts." in k}
    assert len(expert_keys) == len(counts) * (2 if name == "gpt-oss" else 3)  # matrices per reached expert


@pytest.mark.parametrize("name", ["qwen3-moe", "gpt-oss"])
def test_gptq_sees_every_reached_expert_and_counts_rtn_fallbacks(name: str) -> None:
    quantized = _quantized(name, "gptq-int4-g64-asym")
    report = quantization_report(quantized)
    cfg = _float(name).config
    experts = getattr(cfg, "num_experts", None) or cfg.num_local_experts
    moe_layers = cfg.num_hidden_layers - len(getattr(cfg, "mlp_only_layers", []))
    routed = _routed_experts(name, calibration_tokens(tiny_tokenizer(), sequences=1))
    assert report.calibrated and report.experts_total == experts * moe_layers
    assert report.experts_rtn_fallback == experts * moe_layers - len(routed)
    weights = quantized_weights(quantized)
    floats = _fused_float(name) or {n: m.weight for n, m in _float(name).named_modules()
                                    if isinstance(m, nn.Linear) and ".experts." in n}
    assert set(floats) <= set(weights)
    for key, w in floats.items():
        layer, expert = int(key.split(".")[2]), int(key.rsplit(".", 1)[1] if name == "gpt-oss" else key.split(".")[5])
        rtn = quantize_rtn(w, 4, 64, symmetric=False)
        same = torch.equal(weights[key].codes, rtn.codes)
        assert same == ((layer, expert) not in routed), key  # GPTQ moves codes off RTN only where tokens went


def test_llama4_router_stays_float_and_model_runs() -> None:
    float_model, quantized = _float("llama-4"), _quantized("llama-4", "int4-g32-asym")
    moe = [i for i, layer in enumerate(quantized.model.layers) if hasattr(layer.feed_forward, "router")]
    assert moe
    for i in moe:
        router = quantized.model.layers[i].feed_forward.router
        assert type(router) is type(float_model.model.layers[i].feed_forward.router)
        assert torch.equal(router.weight, float_model.model.layers[i].feed_forward.router.weight)
    with torch.no_grad():
        assert torch.isfinite(quantized(_ids()).logits).all()
    kept = {row["tensors"]: row["reason"] for row in quantization_report(quantized).kept_float}
    assert "router" in kept["model.layers.*.feed_forward.router.weight"]
    assert "model.layers.*.feed_forward.experts.gate_up_proj" not in kept


def test_smoothquant_on_fused_experts_is_weight_only_and_says_so() -> None:
    model = copy.deepcopy(_float("gpt-oss"))
    quantize_(model, config_from_name("w8a8-smoothquant"), calibration=calibration_tokens(tiny_tokenizer(), 1))
    weights, float_experts = quantized_weights(model), _fused_float("gpt-oss")
    for key, w in float_experts.items():  # INT8 per channel of the unsmoothed weights
        assert torch.equal(weights[key].codes, quantize_rtn(w, 8, w.shape[1], symmetric=True).codes), key
    kept = {row["tensors"]: row["reason"] for row in quantization_report(model).kept_float}
    assert "float inputs" in kept["model.layers.*.mlp.experts (inputs)"]
    with torch.no_grad():
        assert torch.isfinite(model(_ids()).logits).all()


@pytest.mark.parametrize("name", ["hunyuan", "falcon-h1"])
def test_every_float_parameter_is_listed_with_a_reason(name: str) -> None:
    model = copy.deepcopy(_float(name))
    quantize_(model, config_from_name("int4-g32-asym"))
    rows = quantization_report(model).kept_float
    assert sum(row["count"] for row in rows) == len(list(model.parameters()))  # QuantLinears hold buffers only
    reasons = {row["tensors"]: row["reason"] for row in rows}
    if name == "hunyuan":
        assert "router" in reasons["model.layers.*.mlp.gate.wg.weight"]
        assert not isinstance(model.model.layers[0].mlp.gate.wg, QuantLinear)
    else:
        assert "convolution" in reasons["model.layers.*.mamba.conv1d.weight"]
        assert "norm" in reasons["model.final_layernorm.weight"]
