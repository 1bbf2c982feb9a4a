"""Tile choices per vendor family, as data. Rows: (largest M the entry serves, config).
BLOCK_K is 128 (or a divisor) so block-scaled steps never straddle a scale block."""

from retarget.kernels._config import KernelConfig

TILED = {
    "nvidia": [(16, KernelConfig(16, 64, 128, num_warps=4, num_stages=4)),
               (128, KernelConfig(64, 128, 128, num_warps=4, num_stages=4)),
               (1 << 30, KernelConfig(128, 128, 128, num_warps=8, num_stages=3))],
    "amd-cdna": [(16, KernelConfig(16, 64, 128, num_warps=4, num_stages=2)),
                 (1 << 30, KernelConfig(128, 128, 128, num_warps=8, num_stages=2))],
    # RDNA3 has no fp8 MMA: operands are upcast to f16 for WMMA; a small tile keeps that out of spills
    "amd-rdna": [(1 << 30, KernelConfig(32, 64, 32, num_warps=4, num_stages=2))],
}

# search space for config="auto" (timed on the device by _config.autotune) (BLOCK_K divides the 128-wide scale block)
SPACE = {
    "nvidia": {"block_m": (16, 32, 64, 128), "block_n": (64, 128, 256), "block_k": (64, 128), "num_warps": (4, 8),
               "num_stages": (3, 4)},
    "amd-cdna": {"block_m": (16, 32, 64, 128), "block_n": (64, 128, 256), "block_k": (64, 128),
                 "num_warps": (4, 8), "num_stages": (1, 2)},
    "amd-rdna": {"block_m": (16, 32, 64), "block_n": (32, 64, 128), "block_k": (64,), "num_warps": (2, 4),
                 "num_stages": (1, 2)},
}
