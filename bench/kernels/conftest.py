"""GPU benchmarks of the Triton kernels against the vendor baseline (cuBLAS / hipBLASLt through torch).

Collected from bench_*.py (hook below); every test skips cleanly without a GPU. Each measurement is a
row appended to bench/results/<device>.json with device, versions, date, quantiles, TFLOP/s, GB/s,
the share of the device profile's peak and the speed-up over the baseline (style rule 14).
Run: `make bench` (or `pytest bench/kernels --benchmark-only -o addopts=''`).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from _measure import graph_ms, relative_error
from _results import append_rows, results_file, write_kernel_table

# device-name fragment -> hardware profile id (first match wins, so the longer names come first)
DEVICE_PROFILES = (("H100 PCIe", "h100-pcie"), ("H100", "h100-sxm"), ("H200", "h200-sxm"),
                   ("H800", "h800-sxm"), ("H20", "h20"), ("B200", "b200"), ("A100", "a100-80g-sxm"),
                   ("L40S", "l40s"), ("L4", "l4"),
                   ("4090", "rtx-4090"), ("5090", "rtx-5090"), ("3090", "rtx-3090"), ("MI300X", "mi300x"),
                   ("MI325X", "mi325x"), ("MI355X", "mi355x"), ("7900 XTX", "rx-7900xtx"))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="no CUDA/ROCm GPU: kernel benchmarks need one")
        for item in items:
            if "bench/kernels" in str(item.path):
                item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Rewrite the device's kernel table once the rows are in."""
    path = results_file(torch.cuda.get_device_name()) if torch.cuda.is_available() else None
    if path is not None and path.exists():
        write_kernel_table(path)


def _profile(device_name: str) -> Any:
    from retarget.hw_profiles import load_profile

    for fragment, profile_id in DEVICE_PROFILES:
        if fragment in device_name:
            return load_profile(profile_id)
    return None


def _time_ms(fn: Callable[[], Any]) -> tuple[float, float, float]:
    """p50, p20, p80 in ms with CUDA events and an L2 flush between runs (triton.testing.do_bench): launched
    from Python each time, so the host's launch cost counts where it exceeds the kernel's."""
    import triton.testing

    p50, p20, p80 = triton.testing.do_bench(fn, quantiles=[0.5, 0.2, 0.8])
    return p50, p20, p80


@pytest.fixture
def measure(benchmark: Any) -> Callable[..., dict[str, Any]]:
    """measure(kernel, shape, fmt, fn, baseline, baseline_name, flops, nbytes, peak_fmt, check) -> result row.

    CHECK returns (the kernel's output, an independent reference computed in float32/64); their relative error
    goes into the row and must stay under TOL. Times FN and BASELINE (also from a CUDA graph unless GRAPH is
    False: a failed capture leaves torch's CUDA generator unusable for the rest of the process), registers FN
    with pytest-benchmark and appends the row to the results file (also when the check fails)."""
    import triton

    import retarget

    name = torch.cuda.get_device_name()
    profile = _profile(name)

    def run(kernel: str, shape: dict[str, int], fmt: str, fn: Callable[[], Any], baseline: Callable[[], Any],
            baseline_name: str, flops: int, nbytes: int, peak_fmt: str,
            check: Callable[[], tuple[torch.Tensor, torch.Tensor]], tol: float = 2e-2,
            graph: bool = True) -> dict[str, Any]:
        error = relative_error(*check())
        p50, p20, p80 = _time_ms(fn)
        base50 = _time_ms(baseline)[0]
        graph50, base_graph50 = (graph_ms(fn), graph_ms(baseline)) if graph else (None, None)
        tflops, gbps = flops / p50 / 1e9, nbytes / p50 / 1e6
        peak = profile.peak(peak_fmt) if profile else None
        bw = profile.mem_bw_gb_s if profile else None
        row = {
            "kernel": kernel, "shape": shape, "fmt": fmt, "p50_ms": p50, "p20_ms": p20, "p80_ms": p80,
            "tflops": tflops, "gbps": gbps, "baseline": baseline_name, "baseline_p50_ms": base50,
            "speedup": base50 / p50, "profile": profile.id if profile else None,
            "share_of_peak_tflops": tflops / peak if peak else None, "peak_fmt": peak_fmt,
            "share_of_peak_bandwidth": gbps / bw if bw else None, "rel_err": error, "rel_err_tol": tol,
            "graph_p50_ms": graph50, "baseline_graph_p50_ms": base_graph50,
            "graph_speedup": base_graph50 / graph50 if graph50 and base_graph50 else None,
            "graph_share_of_peak_bandwidth": nbytes / graph50 / 1e6 / bw if graph50 and bw else None,
            "graph_share_of_peak_tflops": flops / graph50 / 1e9 / peak if graph50 and peak else None,
            "provenance": "measured", "device_name": name, "torch_version": torch.__version__,
            "triton_version": triton.__version__, "retarget_version": retarget.__version__,
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        benchmark.extra_info.update({k: row[k] for k in ("tflops", "gbps", "speedup", "share_of_peak_tflops",
                                                         "share_of_peak_bandwidth")})
        benchmark.pedantic(lambda: (fn(), torch.cuda.synchronize()), rounds=20, warmup_rounds=3)
        append_rows(name, [row])
        assert error <= tol, f"{kernel} {shape} {fmt}: relative error {error:.3g} against the reference > {tol}"
        return row

    return run
