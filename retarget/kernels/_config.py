"""Launch configurations as data: one frozen record per tile shape, chosen by the number of rows M."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Vendor families that share tile heuristics: NVIDIA (warp 32, mma/wgmma/tcgen05), AMD CDNA
# (wave 64, MFMA, 64-160 KB LDS) and AMD RDNA (wave 32, WMMA, 64 KB LDS).
FAMILIES = ("nvidia", "amd-cdna", "amd-rdna")


@dataclass(frozen=True)
class KernelConfig:
    """Tile sizes and launch options of one kernel variant."""

    block_m: int
    block_n: int
    block_k: int
    group_m: int = 8        # tiles of M swept together for L2 reuse (tiled kernels)
    split_k: int = 0        # 0: chosen at launch from the SM count (split-K kernels only)
    num_warps: int = 4
    num_stages: int = 2

    def constexprs(self) -> dict[str, int]:
        """The tile sizes as the kernels' constexpr arguments."""
        return {"BLOCK_M": self.block_m, "BLOCK_N": self.block_n, "BLOCK_K": self.block_k}

    def options(self) -> dict[str, int]:
        """Compiler options for triton.compile / kernel launch."""
        return {"num_warps": self.num_warps, "num_stages": self.num_stages}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pick(table: list[tuple[int, KernelConfig]], m: int) -> KernelConfig:
    """The first config whose row bound is >= m (the table is sorted by bound; the last one catches all)."""
    for max_m, cfg in table:
        if m <= max_m:
            return cfg
    return table[-1][1]


def check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown vendor family {family!r}; expected one of {FAMILIES}")
    return family
