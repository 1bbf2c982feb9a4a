"""Tile choices per vendor family, as data. Rows: (largest M the entry serves, config).

BLOCK_K is clamped to the group size at launch so a K tile never straddles two groups.
"""

from retarget.kernels._config import KernelConfig

SPLITK_MAX_M = 16       # M up to this uses the split-K GEMV kernel, larger M the tiled kernel
# split K until the grid holds this many programs per SM (memory-level parallelism). NVIDIA: measured on an H200
# (bench/kernels/sweep_w4a16.py, bench/results/nvidia-h200-sweep-w4a16.json): at M = 1 small programs of two
# warps with 16-32 K splits stream 8192x8192 int4 in 36 us and 28672x8192 in 88-95 us, against 44 and 150 us
# with 4 waves and four warps; at M = 16, 16 splits 57 us against 69.
SPLITK_WAVES = {"nvidia": 16, "amd-cdna": 4, "amd-rdna": 4}

SPLITK = {
    # BLOCK_M = 1: pure GEMV on the vector units; 16: the smallest tensor-core tile
    "nvidia": [(1, KernelConfig(1, 128, 128, num_warps=2, num_stages=2)),
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
