"""Tile choices per vendor family, as data. Rows: (largest M the entry serves, config).

BLOCK_K is clamped to the group size at launch so a K tile never straddles two groups.
"""

from retarget.kernels._config import KernelConfig

SPLITK_MAX_M = 16       # M up to this uses the split-K GEMV kernel, larger M the tiled kernel
SPLITK_WAVES = 4        # split K until the grid holds this many programs per SM (memory-level parallelism)

SPLITK = {
    # BLOCK_M = 1: pure GEMV on the vector units; 16: the smallest tensor-core tile
    "nvidia": [(1, KernelConfig(1, 128, 128, num_warps=4, num_stages=2)),
               (16, KernelConfig(16, 64, 128, num_warps=4, num_stages=3))],
    "amd-cdna": [(1, KernelConfig(1, 128, 128, num_warps=4, num_stages=2)),
                 (16, KernelConfig(16, 64, 128, num_warps=4, num_stages=2))],
    "amd-rdna": [(1, KernelConfig(1, 64, 128, num_warps=4, num_stages=2)),
                 (16, KernelConfig(16, 64, 64, num_warps=4, num_stages=2))],
}

TILED = {
    "nvidia": [(64, KernelConfig(64, 128, 64, num_warps=4, num_stages=3)),
               (1 << 30, KernelConfig(128, 128, 64, num_warps=8, num_stages=3))],
    # AMD: num_stages 2 for single-GEMM kernels (quoted in vllm-project/vllm#17744); gfx942 has 64 KB LDS
    "amd-cdna": [(64, KernelConfig(64, 128, 64, num_warps=4, num_stages=2)),
                 (1 << 30, KernelConfig(128, 128, 64, num_warps=8, num_stages=2))],
    "amd-rdna": [(1 << 30, KernelConfig(64, 64, 32, num_warps=4, num_stages=2))],
}

# search spaces for config="auto" (timed on the device by _config.autotune); BLOCK_M of the split-K
# kernel follows M (1 or 16), BLOCK_K is clamped to the group size
SPLITK_SPACE = {
    "nvidia": {"block_n": (64, 128, 256), "block_k": (64, 128), "num_warps": (4, 8), "num_stages": (2, 3)},
    "amd-cdna": {"block_n": (64, 128, 256), "block_k": (64, 128), "num_warps": (4, 8), "num_stages": (1, 2)},
    "amd-rdna": {"block_n": (32, 64, 128), "block_k": (32, 64, 128), "num_warps": (2, 4), "num_stages": (1, 2)},
}
TILED_SPACE = {
    "nvidia": {"block_m": (32, 64, 128), "block_n": (64, 128, 256), "block_k": (32, 64), "num_warps": (4, 8),
               "num_stages": (3, 4)},
    "amd-cdna": {"block_m": (32, 64, 128), "block_n": (64, 128, 256), "block_k": (32, 64), "num_warps": (4, 8),
                 "num_stages": (1, 2)},
    "amd-rdna": {"block_m": (32, 64), "block_n": (32, 64, 128), "block_k": (32, 64), "num_warps": (2, 4),
                 "num_stages": (1, 2)},
}
