"""W4A16 / W8A16 against fp16 torch.matmul (cuBLAS). Goals on H100: at M = 1 on 8192x8192 and
8192x28672, >= 3x cuBLAS and >= 80% of peak bandwidth; >= 2x up to M = 16."""

import pytest
import torch

from retarget.kernels.w4a16_gemm import bytes, flops, pack, w4a16_gemm, w4a16_gemm_ref


@pytest.mark.parametrize("n, k", [(8192, 8192), (28672, 8192)])
@pytest.mark.parametrize("m", [1, 4, 16, 64, 512])
@pytest.mark.parametrize("bits", [4, 8])
def test_w4a16_gemm(measure, bits, m, n, k):
    group = 128
    q = torch.randint(0, 2**bits, (n, k), dtype=torch.uint8, device="cuda")
    scale = torch.rand(n, k // group, device="cuda") * 0.01
    zero = torch.full_like(scale, 2.0 ** (bits - 1))
    w = pack(q, scale, zero, bits, group)
    x = torch.randn(m, k, device="cuda", dtype=torch.float16)
    dense = torch.randn(n, k, device="cuda", dtype=torch.float16)
    row = measure(f"w{bits}a16_gemm", {"M": m, "N": n, "K": k, "g": group}, f"int{bits}-g{group}-sym",
                  lambda: w4a16_gemm(x, w), lambda: x @ dense.T, "torch.matmul fp16",
                  flops(m, n, k), bytes(m, n, k, bits, group), "fp16",
                  lambda: (w4a16_gemm(x, w), w4a16_gemm_ref(x.float(), q, scale, zero, group)))
    assert row["p50_ms"] > 0 and row["rel_err"] <= row["rel_err_tol"]
