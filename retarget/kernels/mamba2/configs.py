"""Tile choices per vendor family, as data. Chunked scan: block_m = chunk length, block_n = P channels per
program (the state tile is [block_n, N], N = 128 for Mamba2: 32 KB of float32 registers at 64 channels).
State update: block_n channels per program, no tensor cores."""

from retarget.kernels._config import KernelConfig

CHUNK_SCAN = {
    # sm_90 AOT: chunk 64 x 32 channels spills 43 (4 warps) / 25 (8 warps); chunk 32 x 32: 238 regs, none
    "nvidia": KernelConfig(32, 32, 0, num_warps=4, num_stages=2),
    "amd-cdna": KernelConfig(32, 32, 0, num_warps=4, num_stages=1),
    "amd-rdna": KernelConfig(32, 16, 0, num_warps=4, num_stages=1),
}

STATE_UPDATE = {
    "nvidia": KernelConfig(1, 16, 0, num_warps=4, num_stages=1),
    "amd-cdna": KernelConfig(1, 16, 0, num_warps=4, num_stages=1),
    "amd-rdna": KernelConfig(1, 16, 0, num_warps=4, num_stages=1),
}
