"""What the running device can do, asked once per device (capabilities, not vendor names in kernels)."""

from __future__ import annotations

from functools import cache

import torch


@cache
def family(index: int = 0) -> str:
    """Vendor family of CUDA/ROCm device INDEX: 'nvidia', 'amd-cdna' or 'amd-rdna'."""
    if torch.version.hip is None:
        return "nvidia"
    arch = torch.cuda.get_device_properties(index).gcnArchName
    return "amd-rdna" if arch.startswith(("gfx10", "gfx11", "gfx12")) else "amd-cdna"


@cache
def arch(index: int = 0) -> str:
    """Compiler target of device INDEX: 'cuda:90', 'hip:gfx942', ..."""
    if torch.version.hip is None:
        major, minor = torch.cuda.get_device_capability(index)
        return f"cuda:{major * 10 + minor}"
    return "hip:" + torch.cuda.get_device_properties(index).gcnArchName.split(":")[0]


@cache
def num_sms(index: int = 0) -> int:
    """Streaming multiprocessors (NVIDIA) or compute units (AMD) of device INDEX."""
    return torch.cuda.get_device_properties(index).multi_processor_count


def native_mx_dot(index: int = 0) -> bool:
    """True where tl.dot_scaled maps to block-scaled tensor-core instructions (sm_100+ tcgen05, gfx950)."""
    target = arch(index)
    if target.startswith("cuda:"):
        return int(target[5:]) >= 100
    return target == "hip:gfx950"


def fp8_e4m3_dtype(index: int = 0) -> torch.dtype:
    """The E4M3 flavour the device's tensor cores take: OCP e4m3fn, or e4m3fnuz on MI300 (gfx942)."""
    return torch.float8_e4m3fnuz if arch(index) == "hip:gfx942" else torch.float8_e4m3fn
