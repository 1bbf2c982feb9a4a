"""A file named in validation_map.yaml `held_out_files` is held out whole: scored as `fresh`, never fitted on,
never in a cross-validation fold. bench/data/fresh_benchmarks.csv, fresh2_benchmarks.csv and fresh3_benchmarks.csv
were such files;
terms were designed from their misses, so they now sit in the SHA-256 split like every other file."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from retarget.perf.calibrate import engine_rows, fit
from retarget.perf.validate import FRESH, _map, fitted_engines, held_out_file, read_measurements, run, split_of
from retarget.perf.validation_doc import DEFAULT_FILES

EX_FRESH = [p for p in DEFAULT_FILES if p.name in ("fresh_benchmarks.csv", "fresh2_benchmarks.csv",
                                                    "fresh3_benchmarks.csv")]
DATA = DEFAULT_FILES[0].parent
# the committed held-out samples: every file `held_out_files` names that exists (none between two samples)
HELD_OUT = [DATA / name for name in _map()["split"].get("held_out_files", []) if (DATA / name).exists()]


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


@pytest.fixture
def held_out_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the ex-fresh rows under a name that validation_map.yaml `held_out_files` lists (for this test)."""
    monkeypatch.setitem(_map()["split"], "held_out_files", ["sample.csv"])
    return Path(shutil.copy(EX_FRESH[0], tmp_path / "sample.csv"))


@pytest.mark.parametrize("ex_fresh", EX_FRESH, ids=lambda p: p.name)
def test_ex_fresh_rows_are_in_the_hash_split_and_its_calibration_rows_are_fitted(ex_fresh: Path) -> None:
    assert not held_out_file(ex_fresh)
    rows = read_measurements(ex_fresh)
    assert {split_of(r) for r in rows} == {"calibration", "evaluation"}
    fitted_from_it = [key for engine in fitted_engines() for key, _, _ in engine_rows(list(DEFAULT_FILES), engine)
                      if key[0] == str(ex_fresh)]
    assert fitted_from_it and all(split_of(rows[i]) == "calibration" for _, i, _ in fitted_from_it)


@pytest.mark.parametrize("sample", HELD_OUT or [pytest.param(None, marks=pytest.mark.skip(
    reason="validation_map.yaml `held_out_files` names no committed file"))], ids=lambda p: getattr(p, "name", ""))
def test_the_committed_sample_is_held_out_from_sources_in_no_other_file(sample: Path) -> None:
    others = [p for p in DATA.glob("*.csv") if p != sample]
    assert held_out_file(sample)
    urls = {r["source_url"] for r in read_measurements(sample)}
    assert urls and not urls & {r["source_url"] for p in others for r in read_measurements(p)}
    report = run(sample, cross_validation=[])  # the rows are the point here; no fold holds this file anyway
    assert all(r["skipped"] or (r["split"] == FRESH and r["predicted"] > 0) for r in report["rows"])


def test_held_out_rows_are_never_in_a_calibration_set(held_out_sample: Path) -> None:
    """No fitted engine's calibration rows, nor the rows its folds hold out, come from a held-out file; the same
    rows under a name not listed enter (so the check can fail)."""
    for engine in fitted_engines():
        for calibration_only in (True, False):
            assert not engine_rows([held_out_sample], engine, calibration_only), engine
    renamed = shutil.copy(held_out_sample, held_out_sample.with_name("renamed.csv"))
    assert engine_rows([Path(renamed)], "tensorrt-llm-0.6"), "control: a file not held out does enter the fit"


def test_held_out_values_do_not_move_the_fit(held_out_sample: Path) -> None:
    """Scaling every held-out value by 10 leaves the fitted factors of the engines its rows use unchanged."""
    moved = _scaled_copy(EX_FRESH[0], held_out_sample, 10.0)
    for engine in ("tensorrt-llm-0.6", "llama.cpp-metal"):
        assert fit([*DEFAULT_FILES, moved], engine)[0] == fit(list(DEFAULT_FILES), engine)[0]


def test_every_held_out_row_is_scored_as_fresh_or_skipped_with_a_reason(held_out_sample: Path) -> None:
    report = run(held_out_sample, cv_paths=[held_out_sample, *DEFAULT_FILES[:2]])  # the sample is offered to CV
    rows = report["rows"]
    assert len(rows) == len(read_measurements(held_out_sample)) >= 40
    for r in rows:
        assert r["skipped"] or (r["split"] == FRESH and r["predicted"] > 0), r
    assert {"prefill", "decode"} <= {r["phase"] for r in rows if not r["skipped"]}
    splits = {s["split"] for s in report["summary"]}
    assert FRESH in splits and not splits & {"calibration", "evaluation", "all, leave one source out"}
    assert all(str(held_out_sample) not in {file for file, _ in fold["rows"]} for fold in report["cross_validation"])


@pytest.mark.parametrize("name", ["sample.csv", "other.csv"])
def test_held_out_is_decided_by_the_file_name(held_out_sample: Path, name: str) -> None:
    path = shutil.copy(held_out_sample, held_out_sample.with_name(name)) if name != "sample.csv" else held_out_sample
    splits = {r["split"] for r in run(Path(path), cv_paths=[])["rows"] if not r["skipped"]}
    assert (splits == {FRESH}) == (name == "sample.csv")
