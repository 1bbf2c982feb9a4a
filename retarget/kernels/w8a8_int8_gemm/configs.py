"""Tile choices per vendor family, as data. Rows: (largest M the entry serves, config)."""

from retarget.kernels._config import TILED_GEMM_SPACE, KernelConfig

TILED = {
    "nvidia": [(16, KernelConfig(16, 64, 128, num_warps=4, num_stages=4)),
               (128, KernelConfig(64, 128, 128, num_warps=4, num_stages=4)),
               (1 << 30, KernelConfig(128, 128, 128, num_warps=8, num_stages=3))],
    "amd-cdna": [(16, KernelConfig(16, 64, 128, num_warps=4, num_stages=2)),
                 (1 << 30, KernelConfig(128, 128, 64, num_warps=8, num_stages=2))],
    "amd-rdna": [(1 << 30, KernelConfig(64, 64, 64, num_warps=4, num_stages=2))],
}

# search space for config="auto" (timed on the device by _config.autotune)
SPACE = TILED_GEMM_SPACE
