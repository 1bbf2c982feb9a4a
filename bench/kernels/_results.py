"""Where GPU measurements go: bench/results/<device>.json, one list of rows per device, appended to, and a
Markdown table of its kernel rows beside it (<device>-kernels.md).

    python bench/kernels/_results.py "NVIDIA H200"     # rewrite that device's kernel table from its JSON
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results"


def results_file(device_name: str) -> Path:
    """bench/results/<device name in lower-case words joined by '-'>.json."""
    return RESULTS / f"{re.sub(r'[^A-Za-z0-9]+', '-', device_name).strip('-').lower()}.json"


def append_rows(device_name: str, rows: list[dict[str, Any]]) -> Path:
    """Append ROWS to the device's results file (written whole, so an interrupt leaves the old file)."""
    path = results_file(device_name)
    old = json.loads(path.read_text()) if path.exists() else []
    RESULTS.mkdir(exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(old + rows, indent=1) + "\n")
    tmp.replace(path)
    return path


def _pct(share: float | None) -> str:
    return f"{100 * share:.0f}%" if share is not None else "-"


def _ms(value: float | None) -> str:
    return f"{value:.4f}" if value else "-"


def kernel_table(rows: list[dict[str, Any]]) -> str:
    """The kernel rows as a Markdown table: graph-replay times where the kernel could be captured, else the
    Python-launched ones, against the baseline timed the same way."""
    lines = ["| kernel | shape | format | timing | ms | baseline | baseline ms | speed-up | HBM share | "
             "peak FLOP/s share | rel. error |", "|---" * 11 + "|"]
    for r in rows:
        graph = r.get("graph_p50_ms") is not None
        ms, base = (r["graph_p50_ms"], r["baseline_graph_p50_ms"]) if graph else (r["p50_ms"], r["baseline_p50_ms"])
        bw = r.get("graph_share_of_peak_bandwidth") if graph else r.get("share_of_peak_bandwidth")
        fl = r.get("graph_share_of_peak_tflops") if graph else r.get("share_of_peak_tflops")
        shape = " ".join(f"{k}={v}" for k, v in r["shape"].items())
        lines.append(f"| {r['kernel']} | {shape} | {r['fmt']} | {'graph' if graph else 'eager'} | {_ms(ms)} | "
                     f"{r['baseline']} | {_ms(base)} | {base / ms:.2f}x | {_pct(bw)} | {_pct(fl)} | "
                     f"{r['rel_err']:.1e} |")
    return "\n".join(lines)


def write_kernel_table(path: Path) -> Path | None:
    """<device>-kernels.md beside the results file PATH, from its kernel rows (None when it has none)."""
    rows = [r for r in json.loads(path.read_text()) if "kernel" in r and "rel_err" in r]
    if not rows:
        return None
    first = rows[0]
    out = path.with_name(path.stem + "-kernels.md")
    out.write_text(
        f"# Triton kernels on {first['device_name']}\n\n"
        f"Measured by `bench/kernels/bench_*.py` (`make bench`; torch {first['torch_version']}, Triton "
        f"{first['triton_version']}, first row {first['timestamp'][:10]}; every row's versions and time in "
        f"{path.name}). Median of 100 replays of a CUDA graph holding one call, the L2 flushed before each "
        "(timing `graph`), so the host's launch cost is out; `eager` rows launch from Python each time "
        "(triton.testing.do_bench), used where a side reads results back to the host. Shares are of the "
        "hardware profile's peak (`retarget/hw_profiles`); the relative error is the kernel's output against "
        "its float32/float64 reference on the same inputs.\n\n" + kernel_table(rows) + "\n")
    return out


if __name__ == "__main__":
    path = results_file(sys.argv[1]) if len(sys.argv) == 2 else None
    if path is None or not path.exists():
        print(f"usage: python bench/kernels/_results.py DEVICE_NAME (a device with a file in {RESULTS})")
        sys.exit(2)
    written = write_kernel_table(path)
    print(written or f"no kernel rows in {path}")
