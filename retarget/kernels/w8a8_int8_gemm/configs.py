"""Tile choices per vendor family, as data. Rows: (largest M the entry serves, config)."""

from retarget.kernels._config import KernelConfig

TILED = {
    "nvidia": [(16, KernelConfig(16, 64, 128, num_warps=4, num_stages=4)),
               (128, KernelConfig(64, 128, 128, num_warps=4, num_stages=4)),
               (1 << 30, KernelConfig(128, 128, 128, num_warps=8, num_stages=3))],
    "amd-cdna": [(16, KernelConfig(16, 64, 128, num_warps=4, num_stages=2)),
                 (1 << 30, KernelConfig(128, 128, 64, num_warps=8, num_stages=2))],
    "amd-rdna": [(1 << 30, KernelConfig(64, 64, 64, num_warps=4, num_stages=2))],
}

# search space for config="auto" (timed on the device by _config.autotune)
SPACE = {
    "nvidia": {"block_m": (16, 32, 64, 128), "block_n": (64, 128, 256), "block_k": (64, 128), "num_warps": (4, 8),
               "num_stages": (3, 4)},
    "amd-cdna": {"block_m": (16, 32, 64, 128), "block_n": (64, 128, 256), "block_k": (64, 128),
                 "num_warps": (4, 8), "num_stages": (1, 2)},
    "amd-rdna": {"block_m": (16, 32, 64), "block_n": (32, 64, 128), "block_k": (64,), "num_warps": (2, 4),
                 "num_stages": (1, 2)},
}
