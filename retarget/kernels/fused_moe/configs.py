"""Tile choices per vendor family, as data. Rows: (largest number of (token, slot) pairs per expert on
average the entry serves, config). BLOCK_M is also the alignment of each expert's run of rows; BLOCK_K
divides 128 (the FP8 block) and the INT4 group size."""

from retarget.kernels._config import KernelConfig

GEMM = {
    # sm_90 AOT, bf16 experts: 16 x 64 tiles spill 9 at 64 registers, 16 x 128 none at 124
    "nvidia": [(16, KernelConfig(16, 128, 64, group_m=1, num_warps=4, num_stages=3)),
               (64, KernelConfig(32, 128, 64, group_m=4, num_warps=4, num_stages=4)),
               (1 << 30, KernelConfig(64, 128, 64, group_m=8, num_warps=8, num_stages=3))],
    "amd-cdna": [(16, KernelConfig(16, 64, 64, group_m=1, num_warps=4, num_stages=2)),
                 (1 << 30, KernelConfig(64, 128, 64, group_m=8, num_warps=8, num_stages=2))],
    "amd-rdna": [(1 << 30, KernelConfig(32, 64, 32, group_m=4, num_warps=4, num_stages=2))],
}

# routing: one token per program, no tensor cores
ROUTING = KernelConfig(1, 1, 0, num_warps=4, num_stages=1)
