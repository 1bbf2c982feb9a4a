"""W8A8 INT8 with SmoothQuant: against a float64 torch reference on a layer whose inputs have outlier channels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from retarget.quantize import SmoothQuantConfig, config_from_name, quantize_
from retarget.quantize.activations import fake_quantize
from retarget.quantize.modules import QuantLinear
from retarget.quantize.smoothquant import smoothing_scale, w8a8_linear


@pytest.fixture
def outlier_layer() -> tuple[nn.Linear, torch.Tensor]:
    """A Linear 256 -> 128 and inputs [512, 256] whose channels 3, 70, 200 are ~50x larger (LLM-like)."""
    gen = torch.Generator().manual_seed(0)
    linear = nn.Linear(256, 128)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(128, 256, generator=gen) * 0.05)
        linear.bias.copy_(torch.randn(128, generator=gen) * 0.1)
    x = torch.randn(512, 256, generator=gen)
    x[:, [3, 70, 200]] *= 50
    return linear, x


def _rel_err(layer: nn.Module, linear: nn.Linear, x: torch.Tensor) -> float:
    want = (x.double() @ linear.weight.double().T + linear.bias.double()).detach()  # the float64 reference
    return float((layer(x).detach().double() - want).norm() / want.norm())


def test_w8a8_matches_an_explicit_int8_computation(outlier_layer) -> None:
    linear, x = outlier_layer
    layer = w8a8_linear(linear)
    # independent: int8 codes of x per token and of W per row, integer matmul, rescale
    sx = x.abs().amax(1, keepdim=True) / 127
    sw = linear.weight.abs().amax(1, keepdim=True) / 127
    xq, wq = (x / sx).round(), (linear.weight / sw).round()
    want = (xq.double() @ wq.double().T) * sx.double() * sw.double().T + linear.bias.double()
    torch.testing.assert_close(layer(x).double(), want, rtol=1e-5, atol=1e-5)
    assert layer.act == "int8" and layer.qweight.symmetric and layer.bits == 8


def test_smoothing_beats_plain_w8a8_on_outliers(outlier_layer) -> None:
    linear, x = outlier_layer
    plain = _rel_err(w8a8_linear(linear), linear, x)
    smooth = _rel_err(w8a8_linear(linear, smoothing_scale(x.abs().amax(0), linear.weight, 0.5)), linear, x)
    assert smooth < plain / 2, (smooth, plain)
    assert smooth < 0.02


def test_smoothing_scale_formula_and_fixed_point(outlier_layer) -> None:
    linear, x = outlier_layer
    act_max, w = x.abs().amax(0), linear.weight.detach()
    s = smoothing_scale(act_max, w, 0.5)
    torch.testing.assert_close(s, (act_max / w.abs().amax(0)).sqrt())
    # after smoothing, activations and weights have the same per-channel max (alpha 0.5): s' = 1
    torch.testing.assert_close(smoothing_scale(act_max / s, w * s, 0.5), torch.ones_like(s))


def test_smoothing_alone_is_exact_in_float(outlier_layer) -> None:
    linear, x = outlier_layer
    layer = w8a8_linear(linear, smoothing_scale(x.abs().amax(0), linear.weight, 0.5))
    # without quantization, x * (1/s) @ (W diag(s)).T is the float layer
    w_smoothed = linear.weight.detach() * (1 / layer.smooth)[None, :]
    torch.testing.assert_close((x * layer.smooth) @ w_smoothed.T + linear.bias, linear(x), rtol=1e-4, atol=1e-4)


def test_quantize_builds_w8a8_layers_from_calibration(tiny_llama, tiny_tokens) -> None:
    replaced = quantize_(tiny_llama, SmoothQuantConfig(), calibration=tiny_tokens)
    assert replaced == 2 * 7 + 1
    q_proj = tiny_llama.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, QuantLinear) and q_proj.act == "int8" and q_proj.smooth is not None
    assert tiny_llama.lm_head.act is None  # lm_head: int8 weights, float activations
    assert config_from_name("w8a8-smoothquant") == SmoothQuantConfig(alpha=0.5)
    assert config_from_name("w8a8-smoothquant-a0.8").alpha == 0.8


def test_per_token_activation_quantization() -> None:
    x = torch.tensor([[1.0, -0.5, 0.25], [100.0, 3.0, -1.0]])
    q = fake_quantize(x, "int8")
    # each token's own max maps to 127: the large second token does not coarsen the first
    assert q[0, 0] == 1.0 and abs(q[0, 2] - 0.25) <= 1 / 254
    assert q[1, 0] == 100.0
