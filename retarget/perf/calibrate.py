"""Fit the llama.cpp engine factors (compute scale, memory scale, overhead per layer) on the calibration rows.

Objective: sum over calibration rows (outliers excluded) of log(predicted / measured)^2, minimised by
coordinate search on a shrinking grid (three parameters, a few hundred model evaluations). Nothing else in
efficiency.yaml is fitted; evaluation rows never enter the objective.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from retarget.perf.efficiency import EFFICIENCY_FILE
from retarget.perf.validate import in_calibration_split, is_outlier, plan_row, predict_plan, read_measurements

BOUNDS = {"compute": (0.05, 1.5), "memory": (0.2, 1.25), "overhead_us_per_layer": (0.0, 400.0)}


def calibration_plans(path: Path) -> list[tuple[object, float]]:
    """(plan, measured) for each calibration row of the measurements CSV at PATH."""
    out = []
    for row in read_measurements(path):
        plan = plan_row(row)
        if isinstance(plan, str) or is_outlier(row) or not in_calibration_split(row, plan.profile):
            continue
        out.append((plan, float(row["value"])))
    return out


def loss(plans: list[tuple[object, float]], factors: dict[str, float]) -> float:
    """Sum of squared log errors of the calibration rows under engine FACTORS."""
    return sum(math.log(predict_plan(plan, factors)[0] / measured) ** 2 for plan, measured in plans)  # type: ignore[arg-type]


def fit(path: Path, rounds: int = 6, points: int = 9) -> tuple[dict[str, float], float, int]:
    """Fitted factors, final loss and number of calibration rows."""
    plans = calibration_plans(path)
    factors, final = fit_plans(plans, rounds, points)
    return factors, final, len(plans)


def fit_plans(
    plans: list[tuple[object, float]], rounds: int = 6, points: int = 9
) -> tuple[dict[str, float], float]:
    """Engine factors minimising `loss` over PLANS, and that loss."""
    best = {"compute": 0.5, "memory": 1.0, "overhead_us_per_layer": 50.0}
    spans = {k: (hi - lo) / 2 for k, (lo, hi) in BOUNDS.items()}
    current = loss(plans, best)
    for _ in range(rounds):
        for key, (lo, hi) in BOUNDS.items():
            grid = [
                min(hi, max(lo, best[key] + spans[key] * (2 * i / (points - 1) - 1))) for i in range(points)
            ]
            for value in grid:
                trial = {**best, key: value}
                trial_loss = loss(plans, trial)
                if trial_loss < current:
                    best, current = trial, trial_loss
            spans[key] /= 3
    return {k: round(v, 3) for k, v in best.items()}, current


def cross_validate(path: Path) -> list[dict[str, object]]:
    """Leave-one-device-out over the calibration rows: refit without one device, predict that device's rows.
    One entry per held-out profile with its absolute percentage errors."""
    plans = calibration_plans(path)
    out: list[dict[str, object]] = []
    for held in sorted({plan.profile.id for plan, _ in plans}):  # type: ignore[attr-defined]
        train = [(plan, m) for plan, m in plans if plan.profile.id != held]  # type: ignore[attr-defined]
        factors, _ = fit_plans(train)
        errors = [
            abs(predict_plan(plan, factors)[0] / m - 1) * 100  # type: ignore[arg-type]
            for plan, m in plans
            if plan.profile.id == held  # type: ignore[attr-defined]
        ]
        out.append({"held_out": held, "factors": factors, "abs_errors_pct": errors})
    return out


def write_factors(factors: dict[str, float], path: Path = EFFICIENCY_FILE) -> None:
    """Replace the `llama.cpp:` engine line of efficiency.yaml with FACTORS (comments kept)."""
    text = path.read_text()
    line = (
        f"  llama.cpp: {{compute: {factors['compute']}, memory: {factors['memory']}, "
        f"overhead_us_per_layer: {factors['overhead_us_per_layer']}}}  # fitted, see `calibration` below"
    )
    path.write_text(re.sub(r"^  llama\.cpp: .*$", line, text, count=1, flags=re.M))


if __name__ == "__main__":  # python -m retarget.perf.calibrate ../shared/data/measured_benchmarks.csv
    import sys

    fitted, final_loss, n_rows = fit(Path(sys.argv[1]))
    write_factors(fitted)
    print(f"llama.cpp factors {fitted} on {n_rows} rows (loss {final_loss:.3f}) -> {EFFICIENCY_FILE}")
