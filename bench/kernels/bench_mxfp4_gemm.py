"""MXFP4-weight GEMM (tl.dot_scaled where native, dequantization elsewhere) against bf16 torch.matmul,
at gpt-oss expert shapes (hidden 2880, intermediate 2880: gate_up [5760, 2880], down [2880, 2880];
retarget/models/registry/gpt-oss-20b.yaml)."""

import pytest
import torch

from retarget.kernels.mxfp4_gemm import bytes, flops, mxfp4_gemm, mxfp4_gemm_ref, pack, quantize_mxfp4


@pytest.mark.parametrize("m", [1, 16, 256, 4096])
@pytest.mark.parametrize("n, k", [(5760, 2880), (2880, 2880)])
def test_mxfp4_gemm(measure, m, n, k):
    codes, scales = quantize_mxfp4(torch.randn(n, k))
    w = pack(codes.cuda(), scales.cuda())
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    dense = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    row = measure("mxfp4_gemm", {"M": m, "N": n, "K": k}, "mxfp4 (bf16 act)", lambda: mxfp4_gemm(x, w),
                  lambda: x @ dense.T, "torch.matmul bf16", flops(m, n, k), bytes(m, n, k), "bf16",
                  lambda: (mxfp4_gemm(x, w), mxfp4_gemm_ref(x, codes.cuda(), scales.cuda(), out_dtype=torch.float32)))
    assert row["p50_ms"] > 0 and row["rel_err"] <= row["rel_err_tol"]
