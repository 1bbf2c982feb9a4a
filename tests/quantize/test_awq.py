"""AWQ: the searches never lose to round-to-nearest on their objective, and folding scales keeps the float model."""

from __future__ import annotations

import copy

import pytest
import torch

from retarget.quantize import AWQConfig, IntWeightOnlyConfig, LayerStats, collect_stats, quantize_, quantize_rtn
from retarget.quantize.api import linear_layers
from retarget.quantize.awq import _awq_scales, output_error, search_clip, search_scale


def _stats(t: int, k: int, seed: int = 0) -> LayerStats:
    """Statistics of inputs whose channel magnitudes spread over two orders, like LLM activations."""
    g = torch.Generator().manual_seed(seed)
    stats = LayerStats.empty(k)
    stats.add(torch.randn(t, k, generator=g) * torch.exp(1.2 * torch.randn(k, generator=g)))
    return stats


@pytest.mark.parametrize("bits, group, symmetric", [(4, 128, False), (3, 64, False), (4, 64, True)])
def test_scale_search_beats_rtn(bits: int, group: int, symmetric: bool) -> None:
    stats, w = _stats(2048, 320), torch.randn(64, 320, generator=torch.Generator().manual_seed(1))
    s = search_scale(w, stats, bits, group, symmetric, grid=20)
    scaled = quantize_rtn(w * s, bits, group, symmetric).dequantize() / s
    rtn = quantize_rtn(w, bits, group, symmetric).dequantize()
    assert output_error(w - scaled, stats.hessian) < 0.8 * output_error(w - rtn, stats.hessian)


@pytest.mark.parametrize("bits, group, symmetric", [(4, 128, False), (3, 64, False), (4, 64, True)])
def test_clip_search_beats_rtn_in_every_group(bits: int, group: int, symmetric: bool) -> None:
    stats, w = _stats(2048, 320), torch.distributions.StudentT(3.0).sample((64, 320))
    clipped, rtn = search_clip(w, stats.hessian, bits, group, symmetric), quantize_rtn(w, bits, group, symmetric)
    assert clipped.scale.shape == rtn.scale.shape and clipped.integer_zero
    err = lambda q: output_error(w - q.dequantize(), stats.hessian)  # noqa: E731
    assert err(clipped) < err(rtn)
    for g0 in range(0, 320, group):  # ratio 1 is a candidate: no group's own error grows
        cols = slice(g0, g0 + group)
        h = stats.hessian[cols, cols]
        own = output_error((w - clipped.dequantize())[:, cols], h)
        assert own <= output_error((w - rtn.dequantize())[:, cols], h) * (1 + 1e-5)


def test_folded_scales_keep_the_float_model(tiny_llama, tiny_tokens) -> None:
    """v_proj -> o_proj under grouped-query attention (2 query heads per value head) and up -> down."""
    stats = collect_stats(tiny_llama, tiny_tokens, linear_layers(tiny_llama, include_lm_head=False))
    folded = copy.deepcopy(tiny_llama)
    new_stats = _awq_scales(folded, AWQConfig(bits=3, group_size=32), stats, None)
    original = linear_layers(tiny_llama)
    changed = [n for n, m in linear_layers(folded).items() if not torch.equal(m.weight, original[n].weight)]
    assert any(n.endswith("o_proj") for n in changed) and any(n.endswith("down_proj") for n in changed)
    ids = torch.tensor(tiny_tokens[:64])[None]
    with torch.no_grad():
        torch.testing.assert_close(folded(input_ids=ids).logits, tiny_llama(input_ids=ids).logits, rtol=1e-4, atol=1e-4)
    # the consumer's statistics are those of its new input x / s
    again = collect_stats(folded, tiny_tokens, linear_layers(folded, include_lm_head=False))
    name = "model.layers.0.self_attn.o_proj"
    torch.testing.assert_close(new_stats[name].hessian, again[name].hessian, rtol=1e-3, atol=1e-3)


def test_quantize_model_beats_rtn_on_its_calibration_text(tiny_llama, tiny_tokens) -> None:
    ids = torch.tensor(tiny_tokens[:128]).view(2, 64)
    with torch.no_grad():
        ref = tiny_llama(input_ids=ids).logits
    errors = {}
    for config in (IntWeightOnlyConfig(bits=3, group_size=32), AWQConfig(bits=3, group_size=32),
                   AWQConfig(bits=3, group_size=32, gptq=True)):
        model = copy.deepcopy(tiny_llama)
        quantize_(model, config, calibration=tiny_tokens)
        with torch.no_grad():
            errors[config.name] = float((model(input_ids=ids).logits - ref).norm())
    assert errors["awq-int3-g32-asym"] < errors["int3-g32-asym"]
    assert errors["awq-gptq-int3-g32-asym"] < errors["int3-g32-asym"]
