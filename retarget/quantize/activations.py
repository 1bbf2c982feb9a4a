"""Activation quantization, simulated in float ("fake quantization"): the values an INT8 or FP8 GEMM (or a
QuantizeLinear -> DequantizeLinear pair in ONNX) would see, computed with symmetric scales.

    dynamic (scale None): one scale per row of the last dimension (per token; for KV states per token and
        head), scale = max|row| / qmax, computed at run time
    static: one calibrated scale for the whole tensor, values beyond it saturate

qmax is 127 for "int8" (codes -127..127, the restricted range of retarget.kernels.w8a8_int8_gemm) and
448 for "e4m3".
"""

from __future__ import annotations

import torch

from retarget.quantize.float_formats import MAX, round_to

ELEMENTS = ("int8", "e4m3")
QMAX = {"int8": 127.0, "e4m3": MAX["e4m3"]}


def _round(x: torch.Tensor, element: str) -> torch.Tensor:
    if element == "int8":
        return x.round().clamp(-127, 127)
    return round_to(x, "e4m3")


def fake_quantize(x: torch.Tensor, element: str, scale: torch.Tensor | None = None) -> torch.Tensor:
    """X quantized to ELEMENT and back, per row (SCALE None) or with a static per-tensor SCALE; X's dtype."""
    if element not in QMAX:
        raise ValueError(f"activation element must be one of {ELEMENTS}, got {element!r}")
    xf = x.float()
    if scale is None:
        scale = (xf.abs().amax(dim=-1, keepdim=True) / QMAX[element]).clamp(min=1e-12)
    return (_round(xf / scale, element) * scale).to(x.dtype)


def static_scale(amax: float, element: str) -> float:
    """The per-tensor scale for a calibrated max |x|."""
    return max(amax, 1e-12) / QMAX[element]
