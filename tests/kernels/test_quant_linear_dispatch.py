"""QuantLinear (retarget.quantize) and the Triton W4A16/W8A16 kernel give the same numbers.

On a GPU QuantLinear.forward calls `weight_only_linear`; here the kernel runs in the Triton interpreter
on the same QuantizedWeight and is compared with QuantLinear's CPU reference path (dequantize, matmul),
within the tolerance documented in retarget/kernels/__init__.py (about 1e-2 relative in fp16).
"""

import pytest
import torch

from retarget.kernels.w4a16_gemm import pack, w4a16_gemm
from retarget.quantize import QuantLinear, quantize_rtn


@pytest.mark.parametrize("bits, group, symmetric", [(4, 128, False), (4, 32, True), (8, 64, False)])
def test_kernel_matches_quant_linear(bits: int, group: int, symmetric: bool) -> None:
    w = torch.randn(96, 576, generator=torch.Generator().manual_seed(bits + group))  # K = 576: short last g128 group
    qw = quantize_rtn(w, bits, group, symmetric)
    layer = QuantLinear(qw)
    x = torch.randn(3, 576, generator=torch.Generator().manual_seed(7))
    expected = layer(x)  # CPU: the reference path
    got = w4a16_gemm(x.half(), pack(qw.codes, qw.scale, qw.zero, bits, group)).float()
    rel = (got - expected).norm() / expected.norm()
    assert rel < 1e-2
