"""Tile choices per vendor family, as data. Rows: (largest M the entry serves, config).
BLOCK_K is a multiple of 64 (two 32-element scale blocks: the smallest tl.dot_scaled K step)."""

from retarget.kernels._config import TILED_GEMM_SPACE, KernelConfig

TILED = {
    "nvidia": [(16, KernelConfig(16, 64, 128, num_warps=4, num_stages=3)),
               (1 << 30, KernelConfig(128, 128, 128, num_warps=8, num_stages=3))],
    "amd-cdna": [(16, KernelConfig(16, 64, 128, num_warps=4, num_stages=2)),
                 (1 << 30, KernelConfig(128, 128, 128, num_warps=8, num_stages=2))],
    "amd-rdna": [(1 << 30, KernelConfig(64, 64, 64, num_warps=4, num_stages=2))],
}

# the dequantizing path decodes a [BLOCK_K, BLOCK_N] fp32 tile in registers: halve K to avoid spills
DEQUANT_BLOCK_K = 64

# search space for config="auto" (timed on the device by _config.autotune)
SPACE = TILED_GEMM_SPACE
