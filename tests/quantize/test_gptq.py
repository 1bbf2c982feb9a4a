"""GPTQ against round-to-nearest (retarget.quantize.weight.quantize_rtn) on the layer-output error it minimises."""

from __future__ import annotations

import copy

import pytest
import torch

from retarget.quantize import QuantLinear, config_from_name, quantize_, quantize_rtn
from retarget.quantize.gptq import gptq_quantize


def _correlated_inputs(t: int, k: int, seed: int = 0) -> torch.Tensor:
    """Inputs with correlated channels and a few large ones, like a transformer's (T x K)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(k, k, generator=g) / k**0.5
    x = torch.randn(t, k, generator=g) @ mix + 0.3 * torch.randn(t, k, generator=g)
    x[:, :5] *= 8
    return x


def _output_error(w: torch.Tensor, w_q: torch.Tensor, x: torch.Tensor) -> float:
    return float(((w - w_q) @ x.T).norm())


@pytest.mark.parametrize("bits, group, symmetric, act_order",
                         [(4, 128, False, False), (4, 64, True, False), (3, 64, False, True), (4, 200, False, False)])
def test_lower_output_error_than_rtn_and_valid_layout(bits: int, group: int, symmetric: bool, act_order: bool) -> None:
    x = _correlated_inputs(2048, 200)  # K = 200: a short last group at g64 and g128
    w = torch.randn(48, 200, generator=torch.Generator().manual_seed(3))
    q = gptq_quantize(w, x.T @ x, bits, group, symmetric, act_order=act_order)
    rtn = quantize_rtn(w, bits, group, symmetric)
    assert _output_error(w, q.dequantize(), x) < 0.9 * _output_error(w, rtn.dequantize(), x)
    assert q.codes.dtype == torch.uint8 and int(q.codes.max()) <= 2**bits - 1
    assert q.scale.shape == rtn.scale.shape and q.integer_zero
    assert q.symmetric == symmetric


@pytest.mark.parametrize("act_order", [False, True])
def test_identity_hessian_is_round_to_nearest(act_order: bool) -> None:
    w = torch.randn(40, 576, generator=torch.Generator().manual_seed(4))
    q = gptq_quantize(w, torch.eye(576), 4, 128, symmetric=False, act_order=act_order)
    rtn = quantize_rtn(w, 4, 128, symmetric=False)
    assert torch.equal(q.codes, rtn.codes) and torch.equal(q.scale, rtn.scale) and torch.equal(q.zero, rtn.zero)


def test_dead_inputs_do_not_break_the_factorisation() -> None:
    x = _correlated_inputs(512, 64)
    x[:, 7] = 0
    q = gptq_quantize(torch.randn(8, 64), x.T @ x, 4, 32, symmetric=False)
    assert torch.isfinite(q.dequantize()).all()


def test_quantize_model_beats_rtn_on_its_calibration_text(tiny_llama, tiny_tokens) -> None:
    ids = torch.tensor(tiny_tokens[:128]).view(2, 64)
    with torch.no_grad():
        ref = tiny_llama(input_ids=ids).logits
    errors = {}
    for recipe in ("int4-g32-asym", "gptq-int4-g32-asym"):
        model = copy.deepcopy(tiny_llama)
        assert quantize_(model, config_from_name(recipe), calibration=tiny_tokens) == 15
        assert all(isinstance(m, QuantLinear) for m in (model.lm_head, model.model.layers[0].mlp.down_proj))
        with torch.no_grad():
            errors[recipe] = float((model(input_ids=ids).logits - ref).norm())
    assert errors["gptq-int4-g32-asym"] < errors["int4-g32-asym"]
