"""Regenerate docs/validation.md and retarget/perf/validation_summary.json from the committed measurements.

    python -m retarget.perf.validation_doc [MEASUREMENTS.csv ...]

Default files: bench/data/measured_benchmarks.csv (published measurements, each row with its URL) and
bench/data/moe_multi_gpu_decode.csv. The markdown opens with the accuracy targets on rows the fit never saw
(the `evaluation` split), then one section per file. The summary JSON groups every scored row by device
family and engine; `retarget predict` quotes it as the confidence of a prediction (retarget/perf/confidence.py).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from retarget.hw_profiles import load_profile
from retarget.outdir import write_files
from retarget.perf.confidence import SUMMARY_FILE, group_key
from retarget.perf.validate import PHASE_GROUPS, plan_row, read_measurements, run
from retarget.perf.validate_report import to_markdown

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FILES = (ROOT / "bench" / "data" / "measured_benchmarks.csv",
                 ROOT / "bench" / "data" / "moe_multi_gpu_decode.csv")
TARGETS = {"decode": 15.0, "prefill": 25.0}  # MAPE % on evaluation rows


def _scored(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in report["rows"] if r["error_pct"] is not None and not r["outlier"]]


def targets_table(reports: list[dict[str, Any]]) -> list[str]:
    """Evaluation-split MAPE per phase against TARGETS, per file and pooled over all files."""
    lines = ["| measurements | phase | evaluation rows | MAPE % | MdAPE % | target % | met |",
             "|---|---|---:|---:|---:|---:|---|"]
    pooled: dict[str, list[float]] = {}
    for report in [*reports, None]:
        rows = ([r for rep in reports for r in _scored(rep)] if report is None else _scored(report))
        name = "all files" if report is None else Path(report["measurements"]).name
        for phase, target in TARGETS.items():
            errors = [abs(r["error_pct"]) for r in rows if r["split"] == "evaluation" and r["phase"] == phase]
            if report is not None:
                pooled.setdefault(phase, []).extend(errors)
            if errors:
                mape = statistics.fmean(errors)
                lines.append(f"| {name} | {phase} | {len(errors)} | {mape:.1f} | {statistics.median(errors):.1f} | "
                             f"{target:g} | {'yes' if mape <= target else 'no'} |")
    return lines


def pooled_table(paths: list[Path], reports: list[dict[str, Any]]) -> list[str]:
    """MAPE and MdAPE per split and phase over all files: calibration, evaluation, and every row scored by
    the leave-one-source-out fold that held its source out."""
    groups: dict[tuple[str, str], list[float]] = {}
    for path, report in zip(paths, reports, strict=True):
        held = {i: e for fold in report["cross_validation"]
                for (file, i), e in zip(fold["rows"], fold["abs_errors_pct"], strict=True) if file == str(path)}
        for r in _scored(report):
            phase = PHASE_GROUPS.get(r["phase"], r["phase"])
            for split, error in ((r["split"], abs(r["error_pct"])),
                                 ("leave one source out", held.get(r["index"], abs(r["error_pct"])))):
                groups.setdefault((split, phase), []).append(error)
    order = {"calibration": 0, "evaluation": 1, "leave one source out": 2}
    lines = ["| split (all files) | phase | rows | MAPE % | MdAPE % |", "|---|---|---:|---:|---:|"]
    for (split, phase), errors in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        lines.append(f"| {split} | {phase} | {len(errors)} | {statistics.fmean(errors):.1f} | "
                     f"{statistics.median(errors):.1f} |")
    return lines


def summary_groups(paths: list[Path], reports: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """family / engine -> phase group -> {rows, mape_pct} over every scored row of every file."""
    errors: dict[str, dict[str, list[float]]] = {}
    for path, report in zip(paths, reports, strict=True):
        measured = read_measurements(path)
        for r in _scored(report):
            plan = plan_row(measured[r["index"]])
            if isinstance(plan, str):
                continue
            key = group_key(load_profile(r["profile"]).family, plan.kwargs["engine"])
            errors.setdefault(key, {}).setdefault(PHASE_GROUPS.get(r["phase"], r["phase"]), []).append(
                abs(r["error_pct"]))
    return {key: {phase: {"rows": len(v), "mape_pct": round(statistics.fmean(v), 1)} for phase, v in sorted(g.items())}
            for key, g in sorted(errors.items())}


def build(paths: list[Path]) -> tuple[str, dict[str, Any]]:
    """(docs/validation.md text, validation_summary.json content) for the measurement files PATHS."""
    reports = [run(path, cv_paths=paths) for path in paths]
    pooled = pooled_table(paths, reports)
    for path, report in zip(paths, reports, strict=True):  # name files as a clone of the repository sees them
        report["measurements"] = os.path.relpath(path.absolute(), ROOT)
    lines = [
        "# Validation of `retarget predict` against published measurements",
        "",
        "Generated by `python -m retarget.perf.validation_doc` from the files below; every measured",
        "number carries its source URL in the files and the per-row tables. Targets apply to the",
        "`evaluation` split: rows no fitted factor was fitted on (the rule in",
        "retarget/perf/validation_map.yaml `split`: SHA-256 of the row's key cells divisible by 3).",
        "",
        *targets_table(reports),
        "",
        "Pooled over all files, with leave-one-source-out cross-validation (each source's rows predicted",
        "by its engine refitted without that source; priors where too few other rows are left):",
        "",
        *pooled,
        "",
    ]
    for report in reports:
        lines.append(to_markdown(report, heading=f"## {Path(report['measurements']).name}"))
    groups = summary_groups(paths, reports)
    summary = {"generated_by": "python -m retarget.perf.validation_doc",
               "measurements": [p.name for p in paths], "groups": groups}
    return "\n".join(lines), summary


def main(argv: list[str]) -> None:
    paths = [Path(a) for a in argv] or list(DEFAULT_FILES)
    markdown, summary = build(paths)
    write_files({ROOT / "docs" / "validation.md": markdown, SUMMARY_FILE: json.dumps(summary, indent=1) + "\n"})
    print(f"wrote docs/validation.md and {SUMMARY_FILE.name} from {len(paths)} file(s)")


if __name__ == "__main__":
    main(sys.argv[1:])
