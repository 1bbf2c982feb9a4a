"""Tile choices per vendor family, as data. Rows: (largest M the entry serves, config).
BLOCK_K is 128 (or a divisor) so block-scaled steps never straddle a scale block."""

from retarget.kernels._config import TILED_GEMM_SPACE, KernelConfig

TILED = {
    "nvidia": [(16, KernelConfig(16, 64, 128, num_warps=4, num_stages=4)),
               (128, KernelConfig(64, 128, 128, num_warps=4, num_stages=4)),
               (1 << 30, KernelConfig(128, 128, 128, num_warps=8, num_stages=3))],
    "amd-cdna": [(16, KernelConfig(16, 64, 128, num_warps=4, num_stages=2)),
                 (1 << 30, KernelConfig(128, 128, 128, num_warps=8, num_stages=2))],
    # RDNA3 has no fp8 MMA: operands are upcast to f16 for WMMA; a small tile keeps that out of spills
    "amd-rdna": [(1 << 30, KernelConfig(32, 64, 32, num_warps=4, num_stages=2))],
}

# search space for config="auto" (timed on the device by _config.autotune)
SPACE = TILED_GEMM_SPACE
