"""Run one sweep job into its record. `python -m retarget.sweep.worker SWEEP_DIR JOB_JSON [--keep-artifacts]` is
the process the local pool starts for each job: it writes the record into SWEEP_DIR itself (atomically), so a
finished job stays finished whatever happens to the sweep afterwards. An interrupt leaves no record."""

from __future__ import annotations

import datetime
import json
import resource
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console

from retarget.sweep.jobs import Job, job_kind
from retarget.sweep.store import SweepDir


def one_line(err: BaseException) -> str:
    """The error as the table shows it: a RetargetError's own line, otherwise the type and first line."""
    from retarget.errors import RetargetError

    text = (str(err).strip().splitlines() or [""])[0]
    return text if isinstance(err, RetargetError) else f"{type(err).__name__}: {text}".rstrip(": ")


def record(job: Job, *, report: dict[str, Any] | None = None, error: str | None = None) -> dict[str, Any]:
    """A finished job: its report ('ok') or its one-line error ('failed'); run_job adds what the job cost."""
    return {"id": job.id, "job": job.to_dict(), "status": "failed" if error else "ok", "error": error,
            "elapsed_s": None, "cpu_s": None, "max_rss_mib": None, "host": socket.gethostname(),
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "report": report}


def run_job(job: Job, artifacts: Path | None, console: Console) -> dict[str, Any]:
    """JOB's record; an exception in the job is its error (the traceback goes to CONSOLE, the job's log).
    cpu_s and max_rss_mib: CPU seconds (user + system) and peak memory of this process, measured when the job
    ends; in a worker process that runs one job, the job's cost with the imports it needed."""
    t0 = time.perf_counter()
    try:
        result = record(job, report=job_kind(job.kind).run(job, artifacts, console))
    except Exception as err:  # noqa: BLE001 - a failing job is a row of the table, the sweep goes on
        console.print(traceback.format_exc(), highlight=False, markup=False)
        result = record(job, error=one_line(err))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {**result, "elapsed_s": time.perf_counter() - t0, "cpu_s": usage.ru_utime + usage.ru_stime,
            "max_rss_mib": usage.ru_maxrss / 1024}


def main(argv: list[str]) -> None:
    sweep = SweepDir(Path(argv[0]))
    job = Job.from_dict(json.loads(argv[1]))
    artifacts = sweep.artifact_path(job) if "--keep-artifacts" in argv[2:] else None
    console = Console(file=sys.stderr, width=120)
    sweep.write_record(run_job(job, artifacts, console))


if __name__ == "__main__":
    main(sys.argv[1:])
