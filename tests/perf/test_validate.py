"""`retarget validate` on the shared measurements: well-formed output, honest splits, CLI behaviour."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from retarget.cli import app
from retarget.perf.calibrate import engine_rows, fit, fit_plans
from retarget.perf.efficiency import KERNEL_ATTRIBUTES, engine_entry
from retarget.perf.validate import COLUMNS, fitted_as, fitted_engines, model_spec, run
from retarget.perf.validation_doc import DEFAULT_FILES

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "bench" / "data" / "measured_benchmarks.csv"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason=f"shared data not found at {SHARED}")


@pytest.fixture(scope="module")
def report(folds: list[dict]) -> dict:
    return run(SHARED, cross_validation=folds)


@needs_shared
def test_every_row_is_predicted_or_explained(report: dict) -> None:
    with SHARED.open() as f:
        n = sum(1 for _ in csv.DictReader(f))
    rows = report["rows"]
    assert len(rows) == n
    predicted = [r for r in rows if not r["skipped"]]
    assert len(predicted) >= 35
    for r in predicted:
        assert r["predicted"] > 0 and r["split"] in ("calibration", "evaluation")
        assert r["error_pct"] == pytest.approx((r["predicted"] - r["measured"]) / r["measured"] * 100)
    assert all(r["skipped"] for r in rows if r["predicted"] is None)


@needs_shared
def test_summary_has_phases_and_splits(report: dict) -> None:
    keys = {(s["split"], s["phase"]) for s in report["summary"]}
    for split in ("calibration", "evaluation", "all", "all, leave one source out"):
        assert (split, "decode") in keys and (split, "overall") in keys


@needs_shared
def test_split_is_the_stated_hash_rule(report: dict) -> None:
    """The split is sha256 of the key columns mod 3 (validation_map.yaml `split`), recomputed here from the
    CSV cells: it cannot depend on the measured value or on how well a row is predicted."""
    rule = yaml.safe_load((ROOT / "retarget/perf/validation_map.yaml").read_text())["split"]
    with SHARED.open() as f:
        rows = list(csv.DictReader(f))
    for r in (r for r in report["rows"] if r["split"]):
        key = "|".join(rows[r["index"]][c].strip() for c in rule["key_columns"]).encode()
        expected = int(hashlib.sha256(key).hexdigest(), 16) % 3 == 0
        assert (r["split"] == "evaluation") == expected
    assert "value" not in rule["key_columns"] and "notes" not in rule["key_columns"]


@needs_shared
def test_known_outlier_is_flagged_not_counted(report: dict) -> None:
    outliers = [r for r in report["rows"] if r["outlier"]]
    assert sorted(r["measured"] for r in outliers) == pytest.approx([681.47, 2491.65])
    overall = next(s for s in report["summary"] if s["split"] == "all" and s["phase"] == "overall")
    assert overall["rows"] == sum(
        1 for r in report["rows"] if r["predicted"] is not None and not r["outlier"]
    )


@needs_shared
def test_validation_only_specs_match_the_published_parameter_counts() -> None:
    """Models outside the registry: parameter totals vs the `params` column of the measurements."""
    published = {"llama-3.1-405b": 405e9, "llama-2-70b": 69e9, "qwen2.5-72b": 72.7e9}
    for name, params in published.items():
        assert model_spec(name).params_total == pytest.approx(params, rel=0.03)


# Each fitted engine with the fewest calibration rows it must keep; `tuned` is checked in test_multi_gpu.py. The
# engines whose fit takes over 5 s on 2 cores are reproduced by `make test-slow`.
FIT_MIN_ROWS = {"llama.cpp-rocm": 30, "tensorrt-llm-0.1x": 20, "tensorrt-llm-0.6": 10,
                "tensorrt-llm-0.9": 30, "turbomind": 15, "vllm-rocm-v1": 15,
                "vllm-v0": 30, "sglang-eager": 1, "llama.cpp-metal-2023": 2, "sglang-0.4.1": 5, "vllm-v0-awq": 5,
                "llama.cpp-hip": 10, "llama.cpp-2023": 10, "vllm-v1": 5,
                "optimum-habana": 50, "vllm-rocm-upstream": 2}
SLOW_FIT_MIN_ROWS = {"llama.cpp": 10, "llama.cpp-metal": 4, "tensorrt-llm": 5, "sglang-0.5": 50, "atom": 50,
                     "vllm-0.9": 50, "vllm-tpu": 30, "sglang-jax": 30, "vllm-eager": 5, "sglang-0.5-mi30x": 20,
                     "sglang-0.4": 30, "vllm-rocm": 2}


def test_every_fitted_engine_has_its_reproduction_test() -> None:
    assert set(fitted_engines()) == {"tuned", *FIT_MIN_ROWS, *SLOW_FIT_MIN_ROWS}


@needs_shared
@pytest.mark.parametrize("engine, min_rows", [
    *FIT_MIN_ROWS.items(),
    *(pytest.param(engine, rows, marks=pytest.mark.slow) for engine, rows in SLOW_FIT_MIN_ROWS.items()),
])
def test_efficiency_file_is_reproduced_by_calibration(engine: str, min_rows: int) -> None:
    """The engine's fitted factors in efficiency.yaml are what `calibrate.fit` gives on the committed files."""
    text = (Path(__file__).resolve().parents[2] / "retarget/perf/efficiency.yaml").read_text()
    recorded = yaml.safe_load(re.search(rf"^  {re.escape(engine)}: (\{{.*?\}})", text, re.M).group(1))
    if "inherits" in recorded:  # the inherited factors are the parent's, as written
        recorded = {**engine_entry(recorded.pop("inherits")), **recorded}
    fitted, _, rows = fit(list(DEFAULT_FILES), engine)
    assert rows >= min_rows
    assert set(fitted) == set(recorded) - set(KERNEL_ATTRIBUTES)  # kernel attributes are not fitted
    for key, value in fitted.items():
        assert value == pytest.approx(recorded[key], rel=0.02), key


def test_a_kernel_only_release_is_fitted_with_its_engine() -> None:
    """`optimum-habana-1.14` differs from `optimum-habana` only by its dense experts, and its calibration rows
    join that engine's fit (`with_rows_of`); `llama.cpp-2023-sgemm`, listed by no rule, is predicted with its
    parent's factors but fitted on nothing."""
    habana = {plan.kwargs["engine"] for _, plan, _ in engine_rows(list(DEFAULT_FILES), "optimum-habana")}
    assert habana == {"optimum-habana", "optimum-habana-1.14"}
    assert fitted_as("optimum-habana-1.14") == "optimum-habana" and fitted_as("llama.cpp-2023-sgemm") is None
    assert {plan.kwargs["engine"] for _, plan, _ in engine_rows(list(DEFAULT_FILES), "llama.cpp-2023")} == {
        "llama.cpp-2023"}


def test_a_shared_factor_yields_to_the_value_an_engine_inherits() -> None:
    """`sglang-0.5-mi30x` takes its collective cost from `sglang-0.5`: trying shared values (fit_shared) leaves
    its fit as it is, while `tuned`, which sets none, is fitted at the shared value."""
    for engine, moves in (("sglang-0.5-mi30x", False), ("tuned", True)):
        plans = [(plan, measured) for _, plan, measured in engine_rows(list(DEFAULT_FILES), engine)]
        _, alone = fit_plans(plans, engine, rounds=1, points=3, polish=0)
        _, shared = fit_plans(plans, engine, rounds=1, points=3, polish=0, shared={"collective_latency_us": 110.0})
        assert (shared != alone) is moves, engine  # the fitted loss


@needs_shared
def test_evaluation_rows_do_not_move_the_fit(report: dict, tmp_path: Path) -> None:
    """Scaling every evaluation row's measured value by 10 leaves the fitted factors unchanged: the
    calibration split alone determines them."""
    with SHARED.open(newline="") as f:
        reader = csv.DictReader(f)
        rows, fields = list(reader), reader.fieldnames
    evaluation = {r["index"] for r in report["rows"] if r["split"] == "evaluation"}
    assert evaluation
    for i in evaluation:
        rows[i]["value"] = str(float(rows[i]["value"]) * 10)
    moved = tmp_path / "m.csv"
    with moved.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    for engine in fitted_engines():
        assert fit(moved, engine)[0] == fit(SHARED, engine)[0]


@needs_shared
def test_cross_validation_leaves_each_source_out(report: dict) -> None:
    folds = report["cross_validation"]
    assert {f["engine"] for f in folds} == set(fitted_engines()) and {f["scheme"] for f in folds} == {"source"}
    with SHARED.open() as f:
        rows = list(csv.DictReader(f))
    for fold in folds:
        assert fold["abs_errors_pct"] and len(fold["rows"]) == len(fold["abs_errors_pct"])
        for file, i in fold["rows"]:
            if file == str(SHARED):
                assert fold["held_out"] in rows[i]["source_url"]


@needs_shared
def test_out_of_sample_split_scores_every_row_once(report: dict) -> None:
    """Each scored row of a fitted engine is held out by exactly one fold (its source's), so the
    out-of-sample splits score the same rows as `all`, with the evaluation rows' errors unchanged."""
    held = [i for f in report["cross_validation"] for file, i in f["rows"] if file == str(SHARED)]
    scored = [r["index"] for r in report["rows"] if r["predicted"] is not None and not r["outlier"]]
    assert all(held.count(i) == 1 for i in scored)
    summary = {(s["split"], s["phase"]): s for s in report["summary"]}
    for split in ("all, out of sample", "all, leave one source out"):
        for phase in ("decode", "overall"):
            assert summary[(split, phase)]["rows"] == summary[("all", phase)]["rows"]


@needs_shared
def test_large_misses_are_explained(report: dict) -> None:
    """Every scored row off by more than half its measured value says why (validation_map.yaml)."""
    big = [r for r in report["rows"] if r["error_pct"] is not None and abs(r["error_pct"]) > 50 and not r["outlier"]]
    assert big and all(r["explanation"] for r in big), [r["index"] for r in big if not r["explanation"]]


@needs_shared
def test_cli_writes_json_and_markdown(tmp_path: Path) -> None:
    out_json, out_md = tmp_path / "v.json", tmp_path / "v.md"
    result = CliRunner().invoke(
        app,
        ["validate", str(SHARED), "--json", str(out_json), "--markdown", str(out_md)],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    assert "MAPE" in result.output and "Rows not predicted" in result.output
    data = json.loads(out_json.read_text())
    assert data["summary"] and len(data["rows"]) > 40
    md = out_md.read_text()
    assert "| split | phase | rows | MAPE % | MdAPE % |" in md and "evaluation" in md


def test_cli_missing_column_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("model,hardware,value\nx,y,1\n")
    result = CliRunner().invoke(app, ["validate", str(bad)], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert "bad.csv" in result.output and "source_url" in result.output


def test_cli_predict_json() -> None:
    result = CliRunner().invoke(
        app, ["predict", "llama-3.1-8b", "--target", "rtx-4090", "--recipe", "q4_k_m", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["memory"]["fits"] is True and data["workload"]["weight_format"] == "q4_k_m"


def test_cli_predict_bad_override_exits_2() -> None:
    result = CliRunner().invoke(
        app, ["predict", "llama-3.1-8b", "--set", "mem_bw_gb_s=-1"], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 2 and "mem_bw_gb_s" in result.output


def test_small_csv_predicts_skips_and_explains(tmp_path: Path) -> None:
    """A hand-written CSV: one expressible row, one unknown device, one non-numeric value."""
    header = ("source_url,model,params,quant_format,hardware,num_devices,engine,phase,batch_size,input_len,"
              "output_len,metric,value,notes")
    rows = [
        "https://example.org,Llama-3.1-8B,8B,BF16,NVIDIA H100 SXM 80GB,1,vLLM,decode,1,128,128,tokens/s,120,",
        "https://example.org,Llama-3.1-8B,8B,BF16,Abacus 9000,1,vLLM,decode,1,128,128,tokens/s,120,",
        "https://example.org,Llama-3.1-8B,8B,BF16,NVIDIA H100 SXM 80GB,1,vLLM,decode,1,128,128,tokens/s,n/a,",
    ]
    path = tmp_path / "m.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    out = run(path)["rows"]
    assert out[0]["predicted"] > 0 and out[0]["profile"] == "h100-sxm"
    assert out[0]["split"] in ("calibration", "evaluation")
    assert out[1]["skipped"].startswith("no hardware profile matches this label")
    assert "not a positive number" in out[2]["skipped"]


def test_cli_unwritable_output_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "m.csv"
    bad.write_text(",".join(COLUMNS) + "\n")
    result = CliRunner().invoke(
        app,
        ["validate", str(bad), "--json", str(tmp_path / "no" / "such" / "r.json")],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 2 and "--json" in result.output


@needs_shared
def test_low_confidence_rows_stay_in_the_headline(report: dict) -> None:
    """Rows the source notes call low-confidence count in `all`; the extra split only leaves them out."""
    with SHARED.open() as f:
        flagged_notes = {i for i, row in enumerate(csv.DictReader(f)) if "low confidence" in row["notes"].lower()}
    scored = [r for r in report["rows"] if r["predicted"] is not None and not r["outlier"]]
    flagged = [r for r in scored if r["low_confidence"]]
    assert flagged and {r["index"] for r in flagged} <= flagged_notes
    summary = {(s["split"], s["phase"]): s["rows"] for s in report["summary"]}
    assert summary[("all", "overall")] == len(scored)
    assert summary[("all, excl. low-confidence", "overall")] == len(scored) - len(flagged)
