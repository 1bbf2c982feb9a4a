"""Merging records into the table: rows in spec order with their status, the Pareto front by hand, CSV."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

from retarget.sweep import results
from retarget.sweep.jobs import Job
from retarget.sweep.pools import _died
from retarget.sweep.store import SweepDir
from retarget.sweep.worker import record


def _compile_report(kl: float, decode: float) -> dict:
    """The parts of a compile report the compile row reads (values as `retarget compile` writes them)."""
    value = lambda v: {"value": v}  # noqa: E731
    return {"target": "cpu-x86", "recipe": {"lowering": "matmulnbits"}, "onnx": {"bytes": 2**20},
            "torch": {"fp32": {"perplexity": value(10.0)}, "quantized": {"perplexity": value(10.5)}},
            "ort": {"runs": "the artifact", "parity_max_abs_logit_diff": value(1e-5),
                    "quantized": {"perplexity": value(10.6), "kl_to_fp32": value(kl)},
                    "prefill_tokens_per_s": value(1000.0), "decode_tokens_per_s": value(decode),
                    "generation": {"text": "Paris"}}}


def test_rows_status_and_pareto_front(tmp_path: Path) -> None:
    sweep = SweepDir(tmp_path)
    # (recipe, KL, decode tok/s): b is dominated by a (slower and worse); c and a trade; d ties a exactly
    points = {"a": (0.01, 100.0), "b": (0.02, 90.0), "c": (0.001, 50.0), "d": (0.01, 100.0), "e": (0.5, 200.0)}
    jobs = [Job("compile", "m", name, "cpu-x86") for name in [*points, "failing", "pending"]]
    for job in jobs[:5]:
        sweep.write_record(record(job, report=_compile_report(*points[job.recipe])))
    sweep.write_record(record(jobs[5], error="recipe: no such recipe"))
    other_model = Job("compile", "m2", "b", "cpu-x86")  # its own front: KL is to each model's own fp32
    sweep.write_record(record(other_model, report=_compile_report(0.02, 90.0)))
    table = results.rows(sweep, [*jobs, other_model], axes=[])
    assert [r["recipe"] for r in table] == [*points, "failing", "pending", "b"]
    assert [r["status"] for r in table] == ["ok"] * 5 + ["failed", "not run", "ok"]
    assert table[5]["error"] == "recipe: no such recipe"
    assert {r["recipe"] for r in table[:5] if r["pareto"]} == {"a", "c", "d", "e"}
    assert table[-1]["pareto"] is True
    assert "pareto" not in table[5] and "pareto" not in table[6]
    assert table[0]["kl_ort"] == 0.01 and table[0]["decode_tok_s"] == 100.0 and table[0]["onnx_mib"] == 1.0


def test_written_files_agree(tmp_path: Path) -> None:
    sweep = SweepDir(tmp_path)
    jobs = [Job("compile", "m", r, "cpu-x86", {"eval_tokens": 1024, "lowering": lw})
            for r, lw in (("x", "qdq"), ("y", "matmulnbits"))]
    sweep.write_record(record(jobs[0], report=_compile_report(0.1, 10.0)))
    meta = {"name": "t", "kind": "compile", "provenance": "measured", "date": "today", "pool": "test",
            "machine": {"cpu": "cpu", "cores": 2, "versions": {"torch": "2"}}}
    results.write(sweep, jobs, ["lowering"], meta)
    table = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [r["options.lowering"] for r in table] == ["qdq", "matmulnbits"]
    assert table[0]["lowering"] == "matmulnbits"  # the one the compile used, from its report
    assert "options.eval_tokens" not in table[0]  # the same for every job: not a column
    rows = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text())))
    assert [(r["recipe"], r["status"], r["kl_ort"]) for r in rows] == [("x", "ok", "0.1"), ("y", "not run", "")]
    md = (tmp_path / "results.md").read_text().splitlines()
    assert md[4].startswith("| model | recipe | target | options.lowering | status |") and len(md) == 8
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_worker_that_dies_says_how(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_text("loading\nMemoryError: out of memory\n\n")
    killed = subprocess.run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    assert _died(killed.returncode, log) == "worker killed by SIGKILL"
    assert _died(3, log) == "worker exited with code 3: MemoryError: out of memory"
