"""The sweep's records merged into one table: results.json, results.csv, results.md and pareto.png.

A row is one job of the spec: its grid cell, its status (ok, failed with the one-line error, or not run yet)
and the kind's numbers. Rows point at their record (jobs/ID.json), which keeps every number's provenance.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from retarget.sweep.jobs import Job, job_kind
from retarget.sweep.store import SweepDir, atomic_write


def rows(sweep: SweepDir, jobs: list[Job], axes: list[str]) -> list[dict[str, Any]]:
    """One row per job, in spec order; each of AXES (an option the spec lists values of) is a column options.NAME."""
    out = []
    for job in jobs:
        record = sweep.record(job)
        row = {"model": job.model, "recipe": job.recipe, "target": job.target,
               **{f"options.{key}": job.options.get(key) for key in axes},
               "status": record["status"] if record else "not run",
               **{key: (record or {}).get(key) for key in ("error", "elapsed_s", "cpu_s", "max_rss_mib")},
               "record": f"jobs/{job.id}.json"}
        if record and record["status"] == "ok":
            row.update(job_kind(job.kind).row(record["report"]))
        out.append(row)
    _mark_pareto(out, job_kind(jobs[0].kind).pareto if jobs else None)
    return out


def _mark_pareto(table: list[dict[str, Any]], axes: tuple[str, str] | None) -> None:
    """`pareto`: no other row of the same model and target is at least as fast and at least as accurate
    (and better in one). KL is to each model's own fp32, so models are not compared with each other."""
    if axes is None:
        return
    speed, error = axes
    done = [r for r in table if r.get(speed) is not None and r.get(error) is not None]
    for row in done:
        row["pareto"] = not any(
            o is not row and o["model"] == row["model"] and o["target"] == row["target"]
            and o[speed] >= row[speed] and o[error] <= row[error] and (o[speed], o[error]) != (row[speed], row[error])
            for o in done)


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "/").replace("\n", " ")


def markdown(table: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    machine = meta["machine"]
    counts = {s: sum(r["status"] == s for r in table) for s in ("ok", "failed", "not run")}
    lines = [f"# retarget sweep: {meta['name']} ({meta['kind']} jobs, {meta['date']})", "",
             f"{len(table)} jobs: {counts['ok']} ok, {counts['failed']} failed, {counts['not run']} not run. "
             f"Numbers: {meta['provenance']}. Machine: {machine['cpu']} ({machine['cores']} cores), "
             + ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
             + f"; ran on a {meta['pool']}. Each row's record (jobs/) has the full report.", ""]
    columns = [c for c in dict.fromkeys(k for r in table for k in r) if c not in ("record", "generation")]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in table]
    return "\n".join(lines) + "\n"


def csv_text(table: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for r in table for k in r)))
    writer.writeheader()
    writer.writerows(table)
    return buffer.getvalue()


def write(sweep: SweepDir, jobs: list[Job], axes: list[str], meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Merge the records of JOBS into the table files (each written atomically); returns the rows."""
    from retarget.sweep.pareto import plot

    table = rows(sweep, jobs, axes)
    atomic_write(sweep.root / "results.json", json.dumps({**meta, "rows": table}, indent=1))
    atomic_write(sweep.root / "results.csv", csv_text(table))
    atomic_write(sweep.root / "results.md", markdown(table, meta))
    axes = job_kind(meta["kind"]).pareto
    if axes and any("pareto" in r for r in table):
        machine = meta["machine"]
        title = (f"{meta['name']}: {meta['provenance']}; driver on {machine['cpu']} ({machine['cores']} cores), "
                 f"{meta['pool']}")
        atomic_write(sweep.root / "pareto.png", plot(table, *axes, title=title))
    return table
