"""Compiler targets of the portability matrix, as data, with the on-chip memory limit a kernel must fit.

Shared memory is the largest dynamic shared memory (LDS on AMD) one block may use; Triton only checks it
when a kernel is loaded on a device, so the matrix compares `metadata.shared` against these numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

CUDA_GUIDE = ("https://docs.nvidia.com/cuda/cuda-c-programming-guide/index.html"
              "#features-and-technical-specifications-technical-specifications-per-compute-capability")
FLA_DEVICE = "https://github.com/fla-org/flash-linear-attention/blob/main/fla/utils/_device.py"
ROCM_SPECS = "https://rocm.docs.amd.com/en/latest/reference/gpu-arch-specs.html"


@dataclass(frozen=True)
class Target:
    """One GPUTarget: backend, arch, warp size, vendor family and per-block shared-memory limit."""

    name: str             # short id used on the command line
    backend: str          # 'cuda' or 'hip'
    arch: int | str       # compute capability (cuda) or gfx name (hip)
    warp_size: int
    family: str           # config family: nvidia / amd-cdna / amd-rdna
    devices: str          # example devices
    shared_limit: int     # bytes of shared memory / LDS one block may use
    source: str           # where the limit comes from
    fp8: str = "ocp"      # e4m3 flavour of the tensor cores: 'ocp' (e4m3fn), 'fnuz' (MI300) or 'none'

    def gpu_target(self):  # noqa: ANN201 (triton type, imported lazily)
        from triton.backends.compiler import GPUTarget

        return GPUTarget(self.backend, self.arch, self.warp_size)


TARGETS: tuple[Target, ...] = (
    Target("sm_80", "cuda", 80, 32, "nvidia", "A100", 166912,
           f"{CUDA_GUIDE} (8.0: 163 KB); {FLA_DEVICE}", fp8="none"),
    Target("sm_86", "cuda", 86, 32, "nvidia", "RTX 3090, A10, A40", 101376,
           f"{CUDA_GUIDE} (8.6: 99 KB)", fp8="none"),
    Target("sm_89", "cuda", 89, 32, "nvidia", "L40S, L4, RTX 4090", 101376,
           f"{CUDA_GUIDE} (8.9: 99 KB); {FLA_DEVICE}"),
    Target("sm_90", "cuda", 90, 32, "nvidia", "H100, H200, H20, H800", 232448,
           f"{CUDA_GUIDE} (9.0: 227 KB); {FLA_DEVICE}"),
    Target("sm_100", "cuda", 100, 32, "nvidia", "B200, GB200", 232448,
           f"{CUDA_GUIDE} (10.0: 227 KB)"),
    Target("sm_120", "cuda", 120, 32, "nvidia", "RTX 5090, RTX PRO 6000", 101376,
           f"{CUDA_GUIDE} (12.0: 99 KB)"),
    Target("gfx942", "hip", "gfx942", 64, "amd-cdna", "MI300X, MI325X", 65536,
           f"{ROCM_SPECS} (LDS 64 KiB)", fp8="fnuz"),
    Target("gfx950", "hip", "gfx950", 64, "amd-cdna", "MI350X, MI355X", 163840,
           f"{ROCM_SPECS} (LDS 160 KiB)"),
    Target("gfx1100", "hip", "gfx1100", 32, "amd-rdna", "RX 7900 XTX", 65536,
           f"{ROCM_SPECS} (LDS 64 KiB)", fp8="none"),
)

BY_NAME = {t.name: t for t in TARGETS}
