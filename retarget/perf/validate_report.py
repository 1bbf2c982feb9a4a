"""Render a validation report (from `retarget.perf.validate.run`) as a rich table or as markdown."""

from __future__ import annotations

import statistics
from typing import Any

from rich.console import Console
from rich.table import Table

MAX_TERMINAL_ROWS = 200  # rows per terminal table; a longer file is read in its reports
_COLS = (
    "#",
    "model",
    "profile",
    "engine",
    "format",
    "phase",
    "metric",
    "workload",
    "measured",
    "predicted",
    "error %",
    "split",
)


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.3g}"


def _row_cells(r: dict[str, Any]) -> list[str]:
    err = "-" if r["error_pct"] is None else f"{r['error_pct']:+.0f}"
    split = r["split"] + (" (outlier)" if r["outlier"] else "")
    return [
        str(r["index"]),
        r["model"],
        r["profile"],
        r["engine"].split(" (")[0],
        r["quant"][:24],
        r["phase"],
        r["metric"],
        r["workload"],
        _fmt(r["measured"]),
        _fmt(r["predicted"]),
        err,
        split,
    ]


def print_report(report: dict[str, Any], console: Console) -> None:
    """Per-row table, the skipped rows with reasons (the first MAX_TERMINAL_ROWS of each; every row is in
    the JSON and Markdown reports), and MAPE/MdAPE per split and phase."""
    predicted = [r for r in report["rows"] if not r["skipped"]]
    more = f"{len(predicted) - MAX_TERMINAL_ROWS} more rows in --json / --markdown"
    table = Table(title=f"Predicted vs measured: {report['measurements']}",
                  caption=more if len(predicted) > MAX_TERMINAL_ROWS else None)
    for col in _COLS:
        table.add_column(col, justify="right" if col in ("measured", "predicted", "error %") else "left")
    for r in predicted[:MAX_TERMINAL_ROWS]:
        if not r["skipped"]:
            cells = _row_cells(r)
            style = "dim" if r["outlier"] else ("red" if abs(r["error_pct"]) > 50 else None)
            table.add_row(*cells, style=style)
    console.print(table)
    skipped = Table(title="Rows not predicted")
    for col in ("#", "model", "hardware", "phase", "metric", "reason"):
        skipped.add_column(col)
    for r in [r for r in report["rows"] if r["skipped"]][:MAX_TERMINAL_ROWS]:
        if r["skipped"]:
            skipped.add_row(str(r["index"]), r["model"], r["hardware"], r["phase"], r["metric"], r["skipped"])
    console.print(skipped)
    console.print(summary_table(report))
    if report.get("cross_validation"):
        cv = Table(title="Cross-validation of the fitted engine factors")
        for col in ("held out", "rows", "MAPE %", "factors fitted without it"):
            cv.add_column(col)
        for row in cv_rows(report):
            cv.add_row(*row)
        console.print(cv)


def summary_table(report: dict[str, Any]) -> Table:
    table = Table(title="Absolute percentage error (outliers excluded)")
    for col in ("split", "phase", "rows", "MAPE %", "MdAPE %"):
        table.add_column(col, justify="right" if col[0].isupper() or col == "rows" else "left")
    for s in report["summary"]:
        table.add_row(s["split"], s["phase"], str(s["rows"]), f"{s['mape_pct']:.1f}", f"{s['mdape_pct']:.1f}")
    return table


def cv_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(held out, rows, MAPE %, refitted factors) per fold, then one pooled line per fitted engine."""
    folds = report.get("cross_validation", [])
    out = []
    for engine in dict.fromkeys(f["engine"] for f in folds):
        mine = [f for f in folds if f["engine"] == engine]
        out += [
            (
                f"{engine}: {f['held_out']}" + (" (priors)" if f.get("prior") else ""),
                str(len(f["abs_errors_pct"])),
                f"{statistics.fmean(f['abs_errors_pct']):.1f}",
                ", ".join(f"{k} {v:g}" for k, v in f["factors"].items()),
            )
            for f in mine
        ]
        pooled = [e for f in mine for e in f["abs_errors_pct"]]
        label = f"{engine}: all folds (pooled, leave one {mine[0]['scheme']} out)"
        out.append((label, str(len(pooled)), f"{statistics.fmean(pooled):.1f}", ""))
    return out


def fitted_summary() -> str:
    """'N numbers in E engines (engine: factor, ...; ...)' from validation_map.yaml `calibration`."""
    from retarget.perf.validate import calibration_rule, fitted_engines

    rules = {engine: calibration_rule(engine)["free"] for engine in fitted_engines()}  # type: ignore[index]
    listed = "; ".join(f"`{engine}` ({', '.join(free)})" for engine, free in rules.items())
    return f"{sum(map(len, rules.values()))} numbers in {len(rules)} engines: {listed}"


def to_markdown(report: dict[str, Any], heading: str = "## Validation against published measurements") -> str:
    """The validation section for the README: summary, per-row table, skipped rows."""
    lines = [
        heading,
        "",
        f"Measurements: `{report['measurements']}` (`retarget validate FILE --markdown OUT` writes this section;",
        "`python -m retarget.perf.validation_doc` regenerates docs/validation.md from every committed file).",
        "Error = (predicted - measured) / measured. MAPE = mean absolute percentage error,",
        "MdAPE = median; both are shown (the targets are stated as MAPE).",
        "",
        "Split (validation_map.yaml `split`, stated before any factor was refitted under it and kept",
        "fixed whatever the outcome): a row is `evaluation` when the SHA-256 of its key cells (source URL,",
        "model, format, hardware, device count, engine, phase, batch, lengths, metric; never the measured",
        "value) is divisible by 3, else `calibration`. The rule covers every file and rows added later.",
        f"Fitted: {fitted_summary()}; every other number in",
        "retarget/perf/efficiency.yaml is a published, derived or assumed prior, marked as such. Each",
        "fitted engine's factors are fitted on its calibration rows only (`python -m retarget.perf.calibrate",
        "FILES`); the `evaluation`",
        "lines are the out-of-sample figures; `all` includes the calibration rows.",
        "",
        "How a row is predicted: per op class (dense GEMMs, routed experts, attention, SSM scans, LM",
        "head) the model counts FLOPs and bytes for one step, takes max(FLOPs / (eta_c x peak),",
        "bytes / (eta_m x bandwidth)), adds tensor-parallel all-reduces over the device link (and,",
        "beyond 8 devices, hierarchically over a NIC per device worth 1/9 of its link, the DGX H100",
        "ratio of 400 Gb/s to 450 GB/s) and the engine's fixed costs: per layer, per expert a token",
        "visits in each MoE layer, per step, and per pipeline stage boundary for llama.cpp's layer",
        "split; a first-token cost per layer for engines with one fitted (`prefill_overhead_us_per_layer`).",
        "FP8 GEMMs on Hopper reach 0.75 of the 16-bit share of peak (cuBLAS's published FP8/BF16",
        "speedups); block-scaled FP8 checkpoints (128 x 128 scales: DeepSeek-V3/R1, Kimi K2, Qwen3 -FP8) on",
        "the releases before DeepGEMM (SGLang 0.4.1-0.4.3, vLLM's V0 engine, 0.8 eager and 0.8-0.9) run at 0.6",
        "of the 16-bit rate (their Triton or CUTLASS block kernels, vLLM PR 23280's H100 table).",
        "A GQA layer whose query heads per KV head have no GQA decode kernel in the engine reads",
        "the KV cache once per query head: every GQA layer on TensorRT-LLM up to v0.6 (assumed: its XQA",
        "kernels were off by default), any but 8 per KV head on v0.7-v0.9 (XQA's precompiled kernels).",
        "llama.cpp's CUDA GEMMs accumulate in fp16 (the profile's",
        "`fp16_acc16` peak where one is published) and its matrix-vector streaming also pays bytes /",
        "(k x fp32 vector peak): too few loads in flight to saturate HBM. Releases whose kernels differ",
        "from their successors' get engines of their own, each inheriting its successor's factors and",
        "stating what differs: llama.cpp's CUDA builds before Sep 2023 run prompt matmuls as TF32 SGEMM",
        "(`matmul_peak`), its Metal builds before Sep 2023 their attention products on a slow kernel",
        "(fitted `attention_compute`), vLLM before v0.5.3 AWQ on AutoAWQ's GEMM (fitted `memory`).",
        "Under tensor parallelism a layer's KV cache is split by KV head: an MLA latent, and the KV heads",
        "of a layer with fewer of them than ranks, are copied on every rank (memory and batch fit).",
        "TensorRT-LLM runs a pipeline split as one micro-batch per stage, all in flight. A serving run at a",
        "fixed concurrency (`--max-concurrency C` in the engine label) is predicted as C clients in a closed",
        "loop (retarget/perf/serving.py): every decode step also waits for the prompts that arrive meanwhile;",
        "its mean TTFT is not predicted. Replicas behind one load balancer (`N replicas x TP M`) each serve",
        "C / N of the clients on their own devices. vLLM's V0 engine runs at most 256 sequences at once",
        "(its max_num_seqs), so larger batches run in waves; its V1 engine and SGLang take their defaults",
        "per device (retarget/perf/scheduler.py: sequences at once, tokens per forward) unless the label",
        "states --max-num-seqs or --max-num-batched-tokens.",
        "Decode rows use the mean cache",
        "length of the run; `b=max`",
        "throughput rows run as many sequences as fit in memory (capped at the engine's default batch",
        "limit) and count prefill plus decode time.",
        "",
        "`all, out of sample` repeats `all` with each calibration row's error taken from the",
        "leave-one-source-out fold that held its source out; `all, leave one source out` takes every",
        "row's error from that fold (a source with no other source of its engine is predicted with its",
        "predecessor's factors, or the priors: the harder test). `all, excl. low-confidence` leaves out",
        "the rows whose source notes say low confidence. They are shown beside the headline, not instead",
        "of it.",
        "",
        "| split | phase | rows | MAPE % | MdAPE % |",
        "|---|---|---:|---:|---:|",
    ]
    from retarget.perf.validate import FRESH

    if any(s["split"] == FRESH for s in report["summary"]):
        lines[-3:-3] = ["", "This file is held out whole (validation_map.yaml `held_out_files`): every row is `fresh`,",
                        "in no fit and no cross-validation fold; the split rule above does not apply to it."]
    lines += [
        f"| {s['split']} | {s['phase']} | {s['rows']} | {s['mape_pct']:.1f} | {s['mdape_pct']:.1f} |"
        for s in report["summary"]
    ]
    if report.get("cross_validation"):
        lines += [
            "",
            "Leave-one-source-out cross-validation of the fitted engines, over all committed files: each",
            "source's rows of that engine (calibration and evaluation) predicted with the engine's factors",
            "refitted on the calibration rows of its other sources, over the factors it inherits as fitted",
            "without that source too; `(priors)` marks a fold with fewer rows left than the engine has fitted",
            "factors, whose fitted factors take the value the engine inherits without that source (the prior",
            "where it inherits none): a release nobody measured is predicted as its predecessor.",
            "",
            "| held out | rows | MAPE % | factors fitted without it |",
            "|---|---:|---:|---|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in cv_rows(report)]
    lines += ["", "| " + " | ".join(_COLS) + " |", "|" + "---|" * len(_COLS)]
    for r in report["rows"]:
        if not r["skipped"]:
            lines.append("| " + " | ".join(c.replace("|", "/") for c in _row_cells(r)) + " |")
    lines += ["", "Rows not predicted:", ""]
    lines += [
        f"- #{r['index']} {r['model']} on {r['hardware']} ({r['phase']}, {r['metric']}): {r['skipped']}"
        for r in report["rows"]
        if r["skipped"]
    ]
    explained = [r for r in report["rows"] if r["explanation"] and r["error_pct"] is not None]
    if explained:
        lines += ["", "Why the largest misses miss (validation_map.yaml `explanations`; analysis only):", ""]
        for why in dict.fromkeys(r["explanation"] for r in explained):
            rows = ", ".join(
                f"#{r['index']} ({r['error_pct']:+.0f}%)" for r in explained if r["explanation"] == why
            )
            lines.append(f"- {rows}: {why}")
    outliers = [r for r in report["rows"] if r["outlier"]]
    if outliers:
        lines += ["", "Outliers (shown above, excluded from MAPE):", ""]
        lines += [f"- #{r['index']}: {r['outlier']}" for r in outliers]
    return "\n".join(lines) + "\n"
