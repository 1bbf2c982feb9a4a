"""W8A8 INT8 against bf16 torch.matmul. Goal on H100: >= 1.5x bf16 at M >= 512."""

import pytest
import torch

from retarget.kernels.w8a8_int8_gemm import bytes, flops, int8_gemm, int8_gemm_ref


@pytest.mark.parametrize("m", [16, 512, 2048, 8192])
@pytest.mark.parametrize("n, k", [(8192, 8192), (28672, 8192)])
def test_int8_gemm(measure, m, n, k):
    xq = torch.randint(-127, 128, (m, k), dtype=torch.int8, device="cuda")
    wq = torch.randint(-127, 128, (n, k), dtype=torch.int8, device="cuda")
    sx, sw = torch.rand(m, device="cuda"), torch.rand(n, device="cuda")
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    row = measure("w8a8_int8_gemm", {"M": m, "N": n, "K": k}, "int8 per-token x per-channel",
                  lambda: int8_gemm(xq, sx, wq, sw, out_dtype=torch.bfloat16), lambda: x @ w.T,
                  "torch.matmul bf16", flops(m, n, k), bytes(m, n, k), "int8",
                  lambda: (int8_gemm(xq, sx, wq, sw, out_dtype=torch.bfloat16),
                           int8_gemm_ref(xq, sx, wq, sw, out_dtype=torch.float64)))
    assert row["p50_ms"] > 0 and row["rel_err"] <= row["rel_err_tol"]
