"""Benchmarks of the analytic model: the validation run on the shared measurements, and the full
models x profiles grid that lock-in evaluates. Run with `make bench`."""

from __future__ import annotations

from pathlib import Path

import pytest

from retarget.hw_profiles import list_profiles
from retarget.models.registry import load_registry
from retarget.perf import predict
from retarget.perf.validate import run

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "measured_benchmarks.csv"


@pytest.mark.skipif(not SHARED.exists(), reason=f"shared data not found at {SHARED}")
def test_validate_shared_measurements(benchmark) -> None:
    report = benchmark(run, SHARED)
    overall = next(s for s in report["summary"] if s["split"] == "all" and s["phase"] == "overall")
    for s in report["summary"]:
        key = s["split"] + "/" + s["phase"]
        benchmark.extra_info.update({key: round(s["mape_pct"], 1), key + " (median)": round(s["mdape_pct"], 1)})
    for engine in {f["engine"] for f in report["cross_validation"]}:
        errors = [e for f in report["cross_validation"] if f["engine"] == engine for e in f["abs_errors_pct"]]
        benchmark.extra_info[f"cv/{engine}"] = round(sum(errors) / len(errors), 1)
    assert overall["rows"] > 30


def test_predict_whole_grid(benchmark) -> None:
    specs, profiles = list(load_registry().values()), list_profiles()

    def grid() -> int:
        return sum(1 for s in specs for p in profiles if predict(s, p).tpot_s > 0)

    assert benchmark(grid) == len(specs) * len(profiles)
