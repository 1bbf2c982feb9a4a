"""`QuantLinear`: a Linear whose weight is a `QuantizedWeight`, optionally with quantized activations.

    y = fake_quantize(x * smooth, act, act_scale) @ dequant(codes, scale, zero).T + bias

`smooth` (float32 [K], or None): a per-input-channel multiplier (SmoothQuant's 1 / s where it could not be
folded into a preceding norm). `act` (None, "int8" or "e4m3"): the activation element; `act_scale` None
quantizes per token at run time, a scalar is a calibrated static per-tensor scale
(retarget.quantize.activations). Weight-only integer layers on a GPU call the Triton kernels; everything
else runs the reference (dequantize once, cache, float matmul), which equals an integer / FP8 GEMM up to
float summation order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from retarget.quantize.activations import fake_quantize
from retarget.quantize.weight import QuantizedWeight


class QuantLinear(nn.Module):
    """y = quant(x * smooth) @ dequant(codes, scale, zero).T + bias"""

    tensor_names = ("codes", "scale", "zero")

    def __init__(self, qweight: QuantizedWeight, bias: torch.Tensor | None = None, *, act: str | None = None,
                 act_scale: float | None = None, smooth: torch.Tensor | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = qweight.shape
        self.bits = qweight.bits
        self.group_size = qweight.group_size
        self.element = qweight.element
        self.scale_format = qweight.scale_format
        self.tensor_scale = qweight.tensor_scale
        self.block_rows = qweight.block_rows
        self.act = act
        self.register_buffer("codes", qweight.codes)
        self.register_buffer("scale", qweight.scale.float())
        self.register_buffer("zero", qweight.zero.float())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.register_buffer("act_scale", None if act_scale is None else torch.tensor(float(act_scale)))
        self.register_buffer("smooth", None if smooth is None else smooth.detach().float().clone())
        self._dequantized: torch.Tensor | None = None

    @property
    def qweight(self) -> QuantizedWeight:
        return QuantizedWeight(self.codes, self.scale, self.zero, self.bits, self.group_size, self.element,
                               self.scale_format, self.tensor_scale, self.block_rows)

    def reference_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """The dequantized weight, computed once and cached (CPU reference path)."""
        if self._dequantized is None or self._dequantized.dtype != dtype:
            self._dequantized = self.qweight.dequantize(dtype)
        return self._dequantized

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.smooth is not None:
            x = x * self.smooth.to(x.dtype)
        if self.act is not None:
            x = fake_quantize(x, self.act, self.act_scale)
        elif x.is_cuda and self.element == "int":
            from retarget.kernels import weight_only_linear

            return weight_only_linear(x, self.codes, self.scale, self.zero, self.bits, self.group_size, self.bias)
        return F.linear(x, self.reference_weight(x.dtype), self.bias)

    def extra_repr(self) -> str:
        act = "" if self.act is None else f", act={self.act}-{'token' if self.act_scale is None else 'tensor'}"
        smooth = "" if self.smooth is None else ", smoothed"
        return (f"in={self.in_features}, out={self.out_features}, element={self.element}, bits={self.bits}, "
                f"group_size={self.group_size}{act}{smooth}")
