"""Launch configurations as data: one frozen record per tile shape, chosen by the number of rows M."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

# Vendor families that share tile heuristics: NVIDIA (warp 32, mma/wgmma/tcgen05), AMD CDNA
# (wave 64, MFMA, 64-160 KB LDS) and AMD RDNA (wave 32, WMMA, 64 KB LDS).
FAMILIES = ("nvidia", "amd-cdna", "amd-rdna")

# the config="auto" search space shared by the tiled activation x weight GEMMs (int8, fp8, mxfp4), per family;
# BLOCK_K in {64, 128} divides the 128-wide fp8 scale block and holds whole 32-element mxfp4 scale blocks
TILED_GEMM_SPACE = {
    "nvidia": {"block_m": (16, 32, 64, 128), "block_n": (64, 128, 256), "block_k": (64, 128), "num_warps": (4, 8),
               "num_stages": (3, 4)},
    "amd-cdna": {"block_m": (16, 32, 64, 128), "block_n": (64, 128, 256), "block_k": (64, 128),
                 "num_warps": (4, 8), "num_stages": (1, 2)},
    "amd-rdna": {"block_m": (16, 32, 64), "block_n": (32, 64, 128), "block_k": (64,), "num_warps": (2, 4),
                 "num_stages": (1, 2)},
}


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


_TUNED: dict[tuple[Any, ...], KernelConfig] = {}


def autotune(key: tuple[Any, ...], candidates: Sequence[KernelConfig], launch: Callable[[KernelConfig], Any],
             timer: Callable[[Callable[[], Any]], float] | None = None) -> KernelConfig:
    """The fastest of CANDIDATES for KEY (op, variant, shape bucket, dtypes, device), timed once per process
    (triton.testing.do_bench by default) and cached. Candidates that do not fit the device are skipped."""
    if key in _TUNED:
        return _TUNED[key]
    from triton.runtime.errors import OutOfResources

    if timer is None:
        from triton.testing import do_bench

        timer = partial(do_bench, warmup=5, rep=25)
    times = {}
    for cfg in candidates:
        try:
            times[cfg] = timer(partial(launch, cfg))
        except OutOfResources:
            continue
    if not times:
        raise RuntimeError(f"no candidate config fits the device for {key}")
    _TUNED[key] = best = min(times, key=times.__getitem__)
    return best


def bucket(m: int) -> int:
    """Rows rounded up to a power of two: one tuning result serves a range of batch sizes."""
    return 1 << max(0, m - 1).bit_length()


def space(axes: dict[str, Sequence[int]], max_block_m: int | None = None, **fixed: int) -> list[KernelConfig]:
    """Every combination of AXES (KernelConfig field -> values) with FIXED fields, dropping row tiles
    larger than MAX_BLOCK_M (no point tiling 16 rows by 128)."""
    import itertools

    names = list(axes)
    configs = [KernelConfig(**{**dict(zip(names, values, strict=True)), **fixed})
               for values in itertools.product(*(axes[n] for n in names))]
    return [c for c in configs if max_block_m is None or c.block_m <= max_block_m]
