"""Time W4A16 split-K GEMV configs (tile sizes, warps, pipeline depth, K splits) at the decode shapes, each checked
against the torch reference, from CUDA-graph replays with the L2 flushed; the heuristic's choice
(configs.SPLITK) is timed beside them. Prints the fastest per shape; writes every timing to --out as JSON.
Without a GPU it prints one line and exits 0.

    python bench/kernels/sweep_w4a16.py [--out sweep.json]
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import sys
from pathlib import Path

import torch
from _measure import graph_ms, relative_error

# (M, N, K, bits): the shapes of the GEMV goal (M = 1) and the largest M the split-K kernel serves
SHAPES = ((1, 8192, 8192, 4), (1, 28672, 8192, 4), (16, 8192, 8192, 4))
GROUP = 128
AXES = {1: {"block_n": (64, 128, 256), "block_k": (128,), "num_warps": (2, 4, 8), "num_stages": (2, 4),
            "split_k": (0, 8, 16, 32)},
        16: {"block_n": (64, 128), "block_k": (128,), "num_warps": (4, 8), "num_stages": (2, 3, 4),
             "split_k": (0, 16)}}


def candidates(m: int) -> list:
    from retarget.kernels._config import KernelConfig

    axes = AXES[m]
    return [KernelConfig(block_m=m, **dict(zip(axes, values, strict=True)))
            for values in itertools.product(*axes.values())]


def _timed(x: torch.Tensor, w, ref: torch.Tensor, cfg) -> tuple[float, float | None]:
    """(relative error against REF, graph-replay ms or None when the output is wrong) of CFG."""
    from retarget.kernels.w4a16_gemm import w4a16_gemm

    try:
        out = w4a16_gemm(x, w, config=("splitk_gemv", cfg))
    except Exception as exc:  # a tile that does not fit the device (registers, shared memory)
        print(f"  {cfg}: {type(exc).__name__}")
        return float("nan"), None
    err = relative_error(out, ref)
    return err, graph_ms(lambda: w4a16_gemm(x, w, config=("splitk_gemv", cfg))) if err < 2e-2 else None


def _print_best(shape: tuple[int, int, int, int], rows: list[dict]) -> None:
    m, n, k, bits = shape
    base = next(r for r in rows if r["heuristic"])
    print(f"M={m} N={n} K={k} int{bits}: heuristic {base['graph_ms'] * 1e3:.1f} us; fastest:")
    for r in sorted((r for r in rows if r["graph_ms"]), key=lambda r: r["graph_ms"])[:5]:
        c = r["config"]
        print(f"  {r['graph_ms'] * 1e3:7.1f} us {r['gbps']:6.0f} GB/s  BLOCK_N {c['block_n']} BLOCK_K "
              f"{c['block_k']} warps {c['num_warps']} stages {c['num_stages']} split_k {c['split_k']}")


def sweep() -> list[dict]:
    """One row per (shape, config): the heuristic's config first, then the search space."""
    from retarget.kernels.w4a16_gemm import choose, pack, w4a16_gemm_ref

    rows = []
    for m, n, k, bits in SHAPES:
        q = torch.randint(0, 2**bits, (n, k), dtype=torch.uint8, device="cuda")
        scale = torch.rand(n, k // GROUP, device="cuda") * 0.01
        zero = torch.full_like(scale, 2.0 ** (bits - 1))
        w = pack(q, scale, zero, bits, GROUP)
        x = torch.randn(m, k, device="cuda", dtype=torch.float16)
        ref = w4a16_gemm_ref(x.float(), q, scale, zero, GROUP).double()
        heuristic = choose(m, GROUP, "nvidia")[1]
        shape_rows = []
        for cfg in [heuristic, *candidates(m)]:
            err, ms = _timed(x, w, ref, cfg)
            shape_rows.append({"M": m, "N": n, "K": k, "bits": bits, "config": cfg.to_dict(),
                               "heuristic": cfg is heuristic, "rel_err": err, "graph_ms": ms,
                               "gbps": (n * k * bits / 8) / ms / 1e6 if ms else None})
        _print_best((m, n, k, bits), shape_rows)
        rows += shape_rows
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("sweep_w4a16: no CUDA/ROCm GPU here; nothing measured")
        return 0
    import triton

    rows = sweep()
    if args.out:
        args.out.write_text(json.dumps({
            "device_name": torch.cuda.get_device_name(), "torch_version": torch.__version__,
            "triton_version": triton.__version__, "command": " ".join(["python", *sys.argv]),
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
