"""Triton helpers shared by the GEMM kernels."""

import triton
import triton.language as tl


@triton.jit
def tile_ids(pid, M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """Map a 1-D program id to (pid_m, pid_n), sweeping GROUP_M row tiles per column for L2 reuse
    (the grouped ordering of the Triton matmul tutorial)."""
    num_m = tl.cdiv(M, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * num_n
    first_m = (pid // per_group) * GROUP_M
    rows = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % rows
    pid_n = (pid % per_group) // rows
    return pid_m, pid_n


@triton.jit
def e8m0_to_float(code):
    """OCP E8M0 scale (unsigned 8-bit exponent, bias 127) to float32: 2 ** (code - 127)."""
    return tl.exp2(code.to(tl.float32) - 127.0)
