"""Fit the factors of the fitted engines (efficiency.yaml `engines` marked fitted) on their calibration rows.

Each fitted engine has a rule in validation_map.yaml `calibration`: which rows it is fitted on, which of its
factors (compute scale, memory scale, overhead per layer) are free, and how it is cross-validated.
Objective: sum over the engine's calibration rows (outliers excluded) of log(predicted / measured)^2,
minimised by coordinate search on a shrinking grid, then polished by Nelder-Mead steps (a few hundred model
evaluations). Nothing else in efficiency.yaml is fitted; evaluation rows never enter the objective.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from retarget.perf.efficiency import (
    EFFICIENCY_FILE,
    KERNEL_ATTRIBUTES,
    engine_entry,
    kernel_attributes,
    own_entry,
    reload,
)
from retarget.perf.validate import (
    RowPlan,
    calibration_rule,
    fitted_as,
    fitted_engines,
    held_out_file,
    in_calibration_split,
    is_outlier,
    measured_value,
    plan_row,
    predict_plan,
    read_measurements,
    source_of,
)


class FreeFactor(NamedTuple):
    """How a fitted factor is searched (LOW..HIGH from START) and its PRIOR: its value before any fit (the
    vendor-tuned `tuned` entry before fitting; no extra fixed costs)."""

    low: float
    high: float
    start: float
    prior: float


FREE_FACTORS = {
    "compute": FreeFactor(0.05, 1.5, 0.5, 1.0),
    "moe_compute": FreeFactor(0.05, 1.5, 1.0, 1.0),
    "attention_compute": FreeFactor(0.001, 1.5, 1.0, 1.0),
    "memory": FreeFactor(0.2, 1.25, 1.0, 1.0),
    "gemm_memory": FreeFactor(0.2, 1.25, 1.0, 1.0),
    "overhead_us_per_layer": FreeFactor(0.0, 4000.0, 50.0, 18.0),
    "moe_overhead_us_per_expert": FreeFactor(0.0, 500.0, 25.0, 0.0),
    "stage_hop_us": FreeFactor(0.0, 2000.0, 100.0, 0.0),
    "overhead_us_per_step": FreeFactor(0.0, 5000.0, 500.0, 0.0),
    "stream_gb_s_per_fp32_tflop": FreeFactor(0.0, 400.0, 100.0, 0.0),
    "prefill_overhead_us_per_layer": FreeFactor(0.0, 1000.0, 50.0, 0.0),
    "moe_tile_tokens": FreeFactor(0.0, 512.0, 32.0, 0.0),
    # an engine whose own collective kernels differ from the shared fit (SHARED_FACTORS) fits its own
    "collective_latency_us": FreeFactor(2.0, 120.0, 10.0, 10.0),
    # and one whose rows cross nodes fits the cost of the hop over the NICs (prior: NCCL's ~25 us, efficiency.yaml)
    "internode_latency_us": FreeFactor(2.0, 1000.0, 25.0, 25.0),
}
# Factors every engine shares (efficiency.yaml `default`), fitted once on the calibration rows of all engines
# together: each trial value refits every engine, and the summed loss is minimised (`fit_shared`).
SHARED_FACTORS = {"collective_latency_us": FreeFactor(2.0, 120.0, 10.0, 10.0)}
MAX_CV_ROWS = 40  # rows per engine entering cross-validation (a larger file is sampled evenly)
FIT_POLISH = 30  # Nelder-Mead steps per free factor after the coordinate search
CV_POLISH = 10  # and in a cross-validation refit (one per engine and source: the suite reruns them all)
Plans = list[tuple[RowPlan, float]]
Rows = list[tuple[tuple[str, int, str], RowPlan, float]]


def engine_rows(path: Path | list[Path], engine: str, calibration_only: bool = True) -> Rows:
    """(row key, plan, measured) for each row fitted as ENGINE (`fitted_as`) in the measurements CSV(s) at PATH
    (outliers excluded); by default only its calibration rows. A row key is (file, row index in that file). A held-out
    file (validation_map.yaml `held_out_files`) gives no rows: neither fits nor cross-validation see it."""
    paths = [p for p in (path if isinstance(path, list) else [path]) if not held_out_file(p)]
    out = []
    for p in paths:
        for index, row in enumerate(read_measurements(p)):
            plan = plan_row(row)
            if (isinstance(plan, str) or measured_value(row) is None or is_outlier(row)
                    or fitted_as(plan.kwargs["engine"]) != engine):
                continue
            if calibration_only and not in_calibration_split(row, plan):
                continue
            out.append(((str(p), index, source_of(row)), plan, float(row["value"])))
    return out


def loss(plans: Plans, factors: dict[str, float]) -> float:
    """Sum of squared log errors of PLANS under engine FACTORS."""
    return sum(math.log(predict_plan(plan, factors)[0] / measured) ** 2 for plan, measured in plans)


def fit(path: Path | list[Path], engine: str = "llama.cpp", rounds: int = 6, points: int = 9,
        shared: dict[str, float] | None = None) -> tuple[dict[str, float], float, int]:
    """Fitted factors of ENGINE, final loss and number of calibration rows (an engine without calibration rows
    in PATH keeps its efficiency.yaml factors). SHARED: trial values of SHARED_FACTORS (default: the file's)."""
    plans = [(plan, measured) for _, plan, measured in engine_rows(path, engine)]
    if not plans:
        return engine_entry(engine), 0.0, 0
    factors, final = fit_plans(plans, engine, rounds, points, shared)
    return factors, final, len(plans)


def fit_shared(paths: list[Path], key: str = "collective_latency_us", evaluations: int = 10) -> tuple[float, float]:
    """The value of the shared factor KEY that minimises the summed calibration loss of every fitted engine
    (each refitted at each trial value), and that loss: a golden-section search over SHARED_FACTORS[key]'s
    range, then steps of 10% while one lowers the loss (the refitted engines make the loss uneven, so the
    search alone can stop beside a lower value)."""
    def total(value: float) -> float:
        return sum(fit(paths, engine, shared={key: value})[1] for engine in fitted_engines())

    value, loss = _golden_section(total, SHARED_FACTORS[key], evaluations)
    while True:
        step = min((total(v), v) for v in (round(value * 0.9, 1), round(value * 1.1, 1)))
        if step[0] >= loss:
            return value, loss
        loss, value = step


def _golden_section(total: Callable[[float], float], span: FreeFactor, evaluations: int) -> tuple[float, float]:
    """The lowest of EVALUATIONS values of TOTAL visited by a golden-section search over SPAN, rounded to 0.1,
    and TOTAL there."""

    ratio = (math.sqrt(5) - 1) / 2
    lo, hi = span.low, span.high
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = total(a), total(b)
    for _ in range(evaluations - 2):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = total(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = total(b)
    best = round(a if fa <= fb else b, 1)
    return best, total(best)


def fit_plans(plans: Plans, engine: str, rounds: int = 6, points: int = 9,
              shared: dict[str, float] | None = None, polish: int = FIT_POLISH,
              base: dict[str, float] | None = None) -> tuple[dict[str, float], float]:
    """ENGINE's factors minimising `loss` over PLANS (only the rule's `free` factors move; the others keep
    BASE's values, by default its efficiency.yaml entry; SHARED sets the shared ones those leave unset), and
    that loss: ROUNDS of coordinate search over POINTS values each, then POLISH Nelder-Mead steps per free
    factor."""
    free = calibration_rule(engine)["free"]  # type: ignore[index]
    start = {k: FREE_FACTORS[k].start for k in free}
    # free factors first (efficiency.yaml order); a shared value yields to one the engine or its parent sets
    best = {**start, **(shared or {}), **(engine_entry(engine) if base is None else base), **start}
    spans = {k: (FREE_FACTORS[k].high - FREE_FACTORS[k].low) / 2 for k in free}
    current = loss(plans, best)
    for _ in range(rounds):
        for key in free:
            grid = [_clip(key, best[key] + spans[key] * (2 * i / (points - 1) - 1)) for i in range(points)]
            for value in grid:
                trial = {**best, key: value}
                trial_loss = loss(plans, trial)
                if trial_loss < current:
                    best, current = trial, trial_loss
            spans[key] /= 3
    if polish and len(free) > 1:
        best, current = _nelder_mead(plans, free, best, current, steps=polish * len(free))
    return {k: round(v, 3) for k, v in best.items() if k not in (shared or {}) or k in free}, current


def _clip(key: str, value: float) -> float:
    """VALUE within FREE_FACTORS[KEY]'s range."""
    return min(FREE_FACTORS[key].high, max(FREE_FACTORS[key].low, value))


def _nelder_mead(plans: Plans, free: list[str], best: dict[str, float], current: float,
                 steps: int) -> tuple[dict[str, float], float]:
    """BEST (of loss CURRENT) improved by STEPS Nelder-Mead steps over the FREE factors, each scaled to its
    range (a point outside it is clipped), and its loss. One factor at a time stalls in a valley where two
    factors trade off (a cost per layer against a cost per visited expert); the simplex follows it."""
    low = np.array([FREE_FACTORS[k].low for k in free])
    width = np.array([FREE_FACTORS[k].high - FREE_FACTORS[k].low for k in free])

    def factors(x: np.ndarray) -> dict[str, float]:
        return {**best, **dict(zip(free, (low + np.clip(x, 0.0, 1.0) * width).tolist(), strict=True))}

    def cost(x: np.ndarray) -> float:
        return loss(plans, factors(x))

    start = (np.array([best[k] for k in free]) - low) / width
    simplex = [start] + [start + np.where(start[i] < 0.95, 0.05, -0.05) * np.eye(len(free))[i]
                         for i in range(len(free))]
    values = [current] + [cost(x) for x in simplex[1:]]
    for _ in range(steps):
        order = np.argsort(values)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        centroid = np.mean(simplex[:-1], axis=0)
        reflected = np.clip(2 * centroid - simplex[-1], 0.0, 1.0)
        reflected_cost = cost(reflected)
        if reflected_cost < values[0]:
            expanded = np.clip(3 * centroid - 2 * simplex[-1], 0.0, 1.0)
            expanded_cost = cost(expanded)
            simplex[-1], values[-1] = ((expanded, expanded_cost) if expanded_cost < reflected_cost
                                       else (reflected, reflected_cost))
        elif reflected_cost < values[-2]:
            simplex[-1], values[-1] = reflected, reflected_cost
        else:
            contracted = (centroid + simplex[-1]) / 2
            contracted_cost = cost(contracted)
            if contracted_cost < values[-1]:
                simplex[-1], values[-1] = contracted, contracted_cost
            else:  # shrink towards the best point
                simplex = [simplex[0]] + [(simplex[0] + x) / 2 for x in simplex[1:]]
                values = [values[0]] + [cost(x) for x in simplex[1:]]
    i = int(np.argmin(values))
    return (factors(simplex[i]), values[i]) if values[i] < current else (best, current)


def factors_without(engine: str, held: str, folds: dict[tuple[str, str], dict[str, float]]) -> dict[str, float]:
    """ENGINE's factors as a calibration that never saw source HELD sets them: its fold holding HELD out (FOLDS,
    keyed by engine and source) where it has one, else its efficiency.yaml entry over its parent's factors
    without HELD (a parent fitted on HELD's rows of its own would otherwise pass them on)."""
    if (engine, held) in folds:
        return folds[(engine, held)]
    parent, own = _own_factors(engine)
    return {**(factors_without(parent, held, folds) if parent else {}), **own}


def _own_factors(engine: str) -> tuple[str | None, dict[str, float]]:
    """The engine ENGINE inherits from (None: none), and the factors its own efficiency.yaml entry sets."""
    own = own_entry(engine)
    parent = own.pop("inherits", None)
    return parent, {k: v for k, v in own.items() if k not in KERNEL_ATTRIBUTES}


def cross_validate(paths: list[Path], polish: int = CV_POLISH) -> list[dict[str, object]]:
    """Leave one source out, for every fitted engine: each source's rows of that engine (calibration and
    evaluation) predicted with the engine's factors refitted on the calibration rows of the other sources, over
    what it inherits as fitted without that source too. With fewer rows left than free factors, a free factor
    takes its parent's value without that source, or its prior where no parent sets it: a release nobody
    measured is predicted as its predecessor. One entry per fold with the held-out row keys [file, index] and
    their absolute percentage errors. At most MAX_CV_ROWS calibration rows per fold enter the refit, polished
    by POLISH Nelder-Mead steps per free factor."""
    out: list[dict[str, object]] = []
    folds: dict[tuple[str, str], dict[str, float]] = {}
    for engine in fitted_engines():  # parents first (validation_map.yaml `calibration` order)
        free = calibration_rule(engine)["free"]  # type: ignore[index]
        every = engine_rows(paths, engine, calibration_only=False)
        calibration = {key for key, _, _ in engine_rows(paths, engine)}
        parent, own = _own_factors(engine)
        own = {k: v for k, v in own.items() if k not in free}
        for held in sorted({key[2] for key, _, _ in every}):
            train = [(plan, m) for key, plan, m in every if key in calibration and key[2] != held]
            train = train[:: max(1, -(-len(train) // MAX_CV_ROWS))]
            inherited = factors_without(parent, held, folds) if parent else {}
            base = {**inherited, **own}
            enough = len(train) >= len(free)
            factors = (fit_plans(train, engine, polish=polish, base=base)[0] if enough
                       else {**base, **{k: inherited.get(k, FREE_FACTORS[k].prior) for k in free}})
            folds[(engine, held)] = factors
            test = [(key, plan, m) for key, plan, m in every if key[2] == held]
            errors = [abs(predict_plan(plan, factors)[0] / m - 1) * 100 for _, plan, m in test]
            fold = {"engine": engine, "scheme": "source", "held_out": held, "factors": factors, "prior": not enough}
            out.append({**fold, "rows": [list(key[:2]) for key, _, _ in test], "abs_errors_pct": errors})
    return out


def _flow(value: object) -> str:
    """VALUE as YAML flow text: booleans lower-case, lists as [a, b]."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return str(value)


def write_factors(engine: str, factors: dict[str, float], path: Path = EFFICIENCY_FILE) -> None:
    """Write ENGINE's fitted FACTORS into efficiency.yaml (comments and kernel attributes kept): the one-line
    `ENGINE: {...}` entry, or, for an engine written as a block (`tuned`), the `    key: value` line of each of
    its free factors."""
    text = path.read_text()
    free = calibration_rule(engine)["free"]  # type: ignore[index]
    pattern = rf"^  {re.escape(engine)}: \{{[^}}]*\}}"
    if re.search(pattern, text, flags=re.M):
        own = own_entry(engine)
        if "inherits" in own:  # only the engine's own entries are written; the rest stay inherited
            entry = {**own, **{k: factors[k] for k in free}}
        else:
            entry = {**factors, **kernel_attributes(engine)}  # kernel attributes are kept, not fitted
        body = ", ".join(f"{k}: {_flow(v)}" for k, v in entry.items())
        path.write_text(re.sub(pattern, lambda _: f"  {engine}: {{{body}}}", text, count=1, flags=re.M))
        reload()  # an engine that inherits this one is fitted on these values
        return
    for key in free:
        line = rf"^    {re.escape(key)}: [0-9.]+"
        if not re.search(line, text, flags=re.M):
            raise KeyError(f"no `{engine}:` entry with a `{key}:` line in {path}")
        text = re.sub(line, lambda _, k=key: f"    {k}: {factors[k]}", text, count=1, flags=re.M)
    path.write_text(text)
    reload()


def write_shared(key: str, value: float, path: Path = EFFICIENCY_FILE) -> None:
    """Write the fitted shared factor KEY into efficiency.yaml's `default` block (its comment kept)."""
    text, count = re.subn(rf"^(  {re.escape(key)}: )[0-9.]+", lambda m: f"{m.group(1)}{value}", path.read_text(),
                          count=1, flags=re.M)
    if not count:
        raise KeyError(f"no `  {key}:` line in {path}")
    path.write_text(text)
    reload()


if __name__ == "__main__":  # python -m retarget.perf.calibrate MEASUREMENTS.csv [MORE.csv ...]
    import sys

    files = [Path(a) for a in sys.argv[1:]]
    latency, summed = fit_shared(files)
    write_shared("collective_latency_us", latency)
    print(f"collective_latency_us {latency} (summed loss {summed:.4f}) -> {EFFICIENCY_FILE}")
    for name in fitted_engines():
        fitted, final_loss, n_rows = fit(files, name, shared={"collective_latency_us": latency})
        if not n_rows:
            continue
        write_factors(name, fitted)
        print(f"{name} factors {fitted} on {n_rows} rows (loss {final_loss:.4f}) -> {EFFICIENCY_FILE}")
