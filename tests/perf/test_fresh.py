"""bench/data/fresh_benchmarks.csv is held out whole: scored as `fresh`, never fitted on, never in a fold."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from retarget.perf.calibrate import engine_rows, fit
from retarget.perf.validate import FRESH, fitted_engines, held_out_file, read_measurements, run
from retarget.perf.validation_doc import DEFAULT_FILES

FRESH_FILE = next(p for p in DEFAULT_FILES if p.name == "fresh_benchmarks.csv")
FITTED_FILES = [p for p in DEFAULT_FILES if p != FRESH_FILE]


def _scaled_copy(src: Path, dst: Path, factor: float) -> Path:
    """SRC with every measured value multiplied by FACTOR, written to DST."""
    with src.open(newline="") as f:
        reader = csv.DictReader(f)
        rows, fields = list(reader), reader.fieldnames
    for row in rows:
        row["value"] = str(float(row["value"]) * factor)
    with dst.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return dst


def test_fresh_file_is_held_out_and_its_sources_are_new() -> None:
    assert held_out_file(FRESH_FILE) and not any(held_out_file(p) for p in FITTED_FILES)
    fresh_urls = {r["source_url"] for r in read_measurements(FRESH_FILE)}
    other_urls = {r["source_url"] for p in FITTED_FILES for r in read_measurements(p)}
    assert fresh_urls and not fresh_urls & other_urls


def test_fresh_rows_are_never_in_a_calibration_set(tmp_path: Path) -> None:
    """No fitted engine's calibration rows, nor the rows its cross-validation folds hold out, come from the
    fresh file; the same rows under another file name would enter (so the check can fail)."""
    for engine in fitted_engines():
        for calibration_only in (True, False):
            keys = [key for key, _, _ in engine_rows(list(DEFAULT_FILES), engine, calibration_only)]
            assert all(file != str(FRESH_FILE) for file, _, _ in keys), engine
    renamed = shutil.copy(FRESH_FILE, tmp_path / "renamed.csv")
    assert engine_rows([Path(renamed)], "tensorrt-llm"), "control: a file not held out does enter the fit"


def test_fresh_values_do_not_move_the_fit(tmp_path: Path) -> None:
    """Scaling every fresh value by 10 leaves the fitted factors of the engines its rows use unchanged."""
    moved = _scaled_copy(FRESH_FILE, tmp_path / FRESH_FILE.name, 10.0)
    for engine in ("tensorrt-llm", "llama.cpp-metal"):
        assert fit([*FITTED_FILES, moved], engine)[0] == fit(list(DEFAULT_FILES), engine)[0]


def test_every_fresh_row_is_scored_as_fresh_or_skipped_with_a_reason() -> None:
    report = run(FRESH_FILE, cv_paths=FITTED_FILES)
    rows = report["rows"]
    assert len(rows) == len(read_measurements(FRESH_FILE)) >= 40
    for r in rows:
        assert r["skipped"] or (r["split"] == FRESH and r["predicted"] > 0), r
    phases = {r["phase"] for r in rows if not r["skipped"]}
    assert {"prefill", "decode"} <= phases
    splits = {s["split"] for s in report["summary"]}
    assert FRESH in splits and not splits & {"calibration", "evaluation", "all, leave one source out"}
    assert all(str(FRESH_FILE) not in {file for file, _ in fold["rows"]} for fold in report["cross_validation"])


@pytest.mark.parametrize("name", ["fresh_benchmarks.csv", "other.csv"])
def test_held_out_is_decided_by_the_file_name(tmp_path: Path, name: str) -> None:
    path = shutil.copy(FRESH_FILE, tmp_path / name)
    splits = {r["split"] for r in run(Path(path), cv_paths=[])["rows"] if not r["skipped"]}
    assert (splits == {FRESH}) == (name == FRESH_FILE.name)
