"""`QuantLinear`: a Linear whose weight is a `QuantizedWeight`. On a GPU it calls the Triton kernels; on the
CPU it runs the reference (dequantize once, cache, float matmul), so both give the same numbers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from retarget.quantize.weight import QuantizedWeight


class QuantLinear(nn.Module):
    """y = x @ dequant(codes, scale, zero).T + bias"""

    tensor_names = ("codes", "scale", "zero")

    def __init__(self, qweight: QuantizedWeight, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = qweight.shape
        self.bits = qweight.bits
        self.group_size = qweight.group_size
        self.register_buffer("codes", qweight.codes)
        self.register_buffer("scale", qweight.scale.float())
        self.register_buffer("zero", qweight.zero.float())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self._dequantized: torch.Tensor | None = None

    @property
    def qweight(self) -> QuantizedWeight:
        return QuantizedWeight(self.codes, self.scale, self.zero, self.bits, self.group_size)

    def reference_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """The dequantized weight, computed once and cached (CPU reference path)."""
        if self._dequantized is None or self._dequantized.dtype != dtype:
            self._dequantized = self.qweight.dequantize(dtype)
        return self._dequantized

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:
            from retarget.kernels import weight_only_linear

            return weight_only_linear(x, self.codes, self.scale, self.zero, self.bits, self.group_size, self.bias)
        return F.linear(x, self.reference_weight(x.dtype), self.bias)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, bits={self.bits}, group_size={self.group_size}"
