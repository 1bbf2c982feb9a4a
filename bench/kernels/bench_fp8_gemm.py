"""FP8 GEMM (per-channel, and 1x128 / 128x128 block scales) against torch._scaled_mm per-tensor
(cuBLASLt). Goal on H100: block-scaled >= 0.8x _scaled_mm at 4096^3 and larger."""

import pytest
import torch

from retarget.kernels import _device
from retarget.kernels.fp8_gemm import bytes, flops, fp8_gemm, fp8_gemm_ref, quantize


# 4096^3 and 8192^3 (the goal's shapes), and DeepGEMM's DeepSeek-V3 shapes (kernels_anchors.md 2.2)
@pytest.mark.parametrize("m, n, k", [(4096, 4096, 4096), (8192, 8192, 8192), (4096, 7168, 16384),
                                     (64, 7168, 16384)])
@pytest.mark.parametrize("mode", ["channel", "block128", "block128-ue8m0"])
def test_fp8_gemm(measure, mode, m, n, k):
    dtype = _device.fp8_e4m3_dtype()
    blockwise, ue8m0 = mode != "channel", mode.endswith("ue8m0")
    x = torch.randn(m, k, device="cuda")
    w = torch.randn(n, k, device="cuda")
    xq, sx = quantize(x, (1, 128) if blockwise else None, ue8m0, dtype)
    wq, sw = quantize(w, (128, 128) if blockwise else None, ue8m0, dtype)
    one = torch.ones((), device="cuda")
    wt = wq.T                                   # _scaled_mm wants a column-major second operand
    row = measure("fp8_gemm", {"M": m, "N": n, "K": k}, f"e4m3 {mode}",
                  lambda: fp8_gemm(xq, sx, wq, sw, blockwise),
                  lambda: torch._scaled_mm(xq, wt, scale_a=one, scale_b=one, out_dtype=torch.bfloat16),
                  "torch._scaled_mm per-tensor", flops(m, n, k),
                  bytes(m, n, k, blockwise, 1 if ue8m0 else 4), "fp8_e4m3",
                  lambda: (fp8_gemm(xq, sx, wq, sw, blockwise),
                           fp8_gemm_ref(xq, sx, wq, sw, blockwise, out_dtype=torch.float64)))
    assert row["p50_ms"] > 0 and row["rel_err"] <= row["rel_err_tol"]
