"""`retarget sweep`: expand the spec into jobs, skip the finished ones, run the rest on a pool, merge the table."""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from retarget import provenance
from retarget.errors import RetargetError
from retarget.outdir import check_writable
from retarget.sweep import results
from retarget.sweep.jobs import Job, job_kind
from retarget.sweep.pools import LocalPool, RayPool
from retarget.sweep.spec import load_spec
from retarget.sweep.store import SweepDir


@dataclass
class SweepResult:
    root: Path
    rows: list[dict[str, Any]]
    skipped: int  # jobs finished by an earlier run
    interrupted: bool

    @property
    def failed(self) -> int:
        return sum(r["status"] == "failed" for r in self.rows)


def sweep(spec_path: Path | None = None, *, workers: int = 0, ray: str | None = None, out: Path | None = None,
          retry_failed: bool = False, threads_per_job: int = 0, console: Console | None = None) -> SweepResult:
    """Run every unfinished job of the spec at SPEC_PATH (None: the default sweep) on a local pool of WORKERS
    processes (0: the spec's) or on the Ray cluster at RAY, and merge all records into OUT's table.
    RETRY_FAILED runs failed jobs again (by default a recorded failure is finished, like a success)."""
    console = console or Console(stderr=True)
    for field, value in (("--workers", workers), ("--threads", threads_per_job)):
        if value < 0:
            raise RetargetError("must be >= 0", field=field)
    spec = load_spec(spec_path)
    root = Path(out or spec.out or Path("out/sweeps") / spec.name)
    check_writable(root)  # a new or empty folder, or a previous sweep's (marked as a retarget output)
    store = SweepDir(root)
    store.mark()
    jobs = spec.jobs()
    todo = [job for job in jobs if not _finished(store.record(job), retry_failed)]
    workers = workers or spec.pool_size()
    threads = threads_per_job or max(1, (os.cpu_count() or 1) // workers)
    pool = (RayPool(store, ray, threads_per_job or 1, spec.keep_artifacts) if ray
            else LocalPool(store, workers, threads, spec.keep_artifacts))
    meta = {"name": spec.name, "kind": spec.kind, "provenance": job_kind(spec.kind).provenance,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "pool": pool.describe(), "machine": provenance.machine(), "spec": spec.model_dump(mode="json")}
    if len(todo) < len(jobs):
        console.print(f"{len(jobs) - len(todo)} of {len(jobs)} jobs already finished in {root} (kept)")
    started = time.perf_counter()
    interrupted = False
    try:
        _run(pool, todo, store, spec.axes(), console)
    except KeyboardInterrupt:
        interrupted = True
        console.print("[yellow]interrupted[/]: finished jobs are kept; run the same command again to resume")
    meta["run_s"] = time.perf_counter() - started
    table = results.write(store, jobs, spec.axes(), meta)
    axes = [f"options.{a}" for a in spec.axes()]
    _print_table(table, ["model", "recipe", "target", *axes, "status", *job_kind(spec.kind).summary, "pareto", "error"],
                 console)
    console.print(f"results: {root}/results.{{md,csv,json}}" + (" and pareto.png" if
                                                                   (root / "pareto.png").exists() else ""))
    return SweepResult(root, table, len(jobs) - len(todo), interrupted)


def _finished(record: dict[str, Any] | None, retry_failed: bool) -> bool:
    return record is not None and (record["status"] == "ok" or not retry_failed)


def _run(pool: LocalPool | RayPool, jobs: list[Job], store: SweepDir, axes: list[str], console: Console) -> None:
    """Run JOBS on POOL with one progress line per running job; each record is on disk when its line ends."""
    labels = {job.id: job.label(axes) for job in jobs}
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        overall = progress.add_task(f"sweep on a {pool.describe()}", total=len(jobs))
        running = {}

        def started(job: Job) -> None:
            running[job.id] = progress.add_task(f"  {labels[job.id]}", total=None)

        for job, record in pool.run(jobs, started):
            if job.id in running:
                progress.remove_task(running.pop(job.id))
            if record is None:
                continue
            if store.record(job) != record:  # a Ray task's record, or a local worker that died before writing
                store.write_record(record)
            mark = "[green]ok[/]" if record["status"] == "ok" else f"[red]failed[/]: {record['error']}"
            took = "" if record["elapsed_s"] is None else f" ({record['elapsed_s']:.0f} s)"
            progress.console.print(f"{labels[job.id]}: {mark}{took}", highlight=False)
            progress.advance(overall)


def _print_table(table: list[dict[str, Any]], columns: list[str], console: Console) -> None:
    """COLUMNS of the rows (results.md has every column)."""
    view = Table(title="retarget sweep")
    for column in columns:
        view.add_column(column, overflow="fold")
    for row in table:
        view.add_row(*(results.cell(row.get(c)) for c in columns))
    console.print(view)
