"""Where sweep jobs run: a bounded pool of processes on this machine, or the tasks of a Ray cluster.

Both run each job in a process of its own and yield (job, record) as jobs finish; neither schedules anything
itself (threads wait on `retarget.sweep.worker` processes; Ray places its tasks by their CPU request).
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from retarget.errors import RetargetError
from retarget.sweep.jobs import Job
from retarget.sweep.store import SweepDir
from retarget.sweep.worker import one_line, record, run_job

Started = Callable[[Job], None]
Finished = Iterator[tuple[Job, "dict[str, Any] | None"]]  # None: interrupted, not finished
INTERRUPTS = {-signal.SIGINT, -signal.SIGTERM}


class LocalPool:
    """At most WORKERS jobs at a time, each in a fresh `python -m retarget.sweep.worker` process with
    THREADS torch threads; the worker writes its own record, its output goes to the job's log."""

    def __init__(self, sweep: SweepDir, workers: int, threads: int, keep_artifacts: bool) -> None:
        self.sweep, self.workers, self.threads, self.keep_artifacts = sweep, workers, threads, keep_artifacts
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._stopping = False

    def describe(self) -> str:
        return f"local pool of {self.workers} processes ({self.threads} threads each)"

    def run(self, jobs: list[Job], started: Started) -> Finished:
        pool = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="sweep")
        try:
            futures = {pool.submit(self._one, job, started): job for job in jobs}
            for future in concurrent.futures.as_completed(futures):
                yield futures[future], future.result()
        finally:  # an interrupt (or a closed generator): stop the running workers, start no more
            self._stopping = True
            with self._lock:
                for proc in self._procs:
                    proc.terminate()
            pool.shutdown(wait=True, cancel_futures=True)

    def _one(self, job: Job, started: Started) -> dict[str, Any] | None:
        log = self.sweep.log_path(job)
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "retarget.sweep.worker", str(self.sweep.root), json.dumps(job.to_dict())]
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        with self._lock:
            if self._stopping:
                return None
            with log.open("w") as out:
                proc = subprocess.Popen([*command, *(["--keep-artifacts"] if self.keep_artifacts else [])],
                                        stdout=out, stderr=subprocess.STDOUT, env=env)
            self._procs.add(proc)
        started(job)
        code = proc.wait()
        with self._lock:
            self._procs.discard(proc)
        finished = self.sweep.record(job)
        if finished is None and code in INTERRUPTS:
            return None
        return finished or record(job, error=_died(code, log))


def _died(code: int, log: Path) -> str:
    """Why a worker left no record: the signal that killed it (a crash, the OOM killer), or its exit code and
    the last line it logged."""
    if code < 0:
        return f"worker killed by {signal.Signals(-code).name}"
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return f"worker exited with code {code}" + (f": {lines[-1].strip()}" if lines else "")


def _ray_job(job: dict[str, Any], artifacts: str | None) -> tuple[dict[str, Any], str]:
    """A Ray task: the job's record and its log (the driver writes both into the sweep's folder)."""
    log = io.StringIO()
    result = run_job(Job.from_dict(job), Path(artifacts) if artifacts else None, Console(file=log, width=120))
    return result, log.getvalue()


class RayPool:
    """The jobs as Ray tasks of CPUS each on the cluster at ADDRESS ('local': a runtime started here, or the
    one this process already joined), each task in a fresh worker process (max_calls=1)."""

    def __init__(self, sweep: SweepDir, address: str, cpus: int, keep_artifacts: bool) -> None:
        try:
            import ray
        except ImportError:
            raise RetargetError("Ray is not installed: pip install 'retarget[ray]'", field="--ray") from None
        self.ray, self.sweep, self.address, self.cpus, self.keep_artifacts = ray, sweep, address, cpus, keep_artifacts

    def describe(self) -> str:
        return f"Ray cluster at {self.address} ({self.cpus} CPU per job)"

    def run(self, jobs: list[Job], started: Started) -> Finished:
        ray = self.ray
        owned = not ray.is_initialized()
        if owned:
            self._connect()
        task = ray.remote(num_cpus=self.cpus, max_calls=1)(_ray_job)
        pending = {}
        try:
            for job in jobs:
                artifacts = str(self.sweep.artifact_path(job).resolve()) if self.keep_artifacts else None
                pending[task.remote(job.to_dict(), artifacts)] = job
                started(job)
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ref)
                try:
                    result, log = ray.get(ref)
                except Exception as err:  # noqa: BLE001 - a lost worker or node fails its job, not the sweep
                    result, log = record(job, error=one_line(err)), f"{err}\n"
                self.sweep.log_path(job).parent.mkdir(parents=True, exist_ok=True)
                self.sweep.log_path(job).write_text(log)
                yield job, result
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            if owned:
                ray.shutdown()

    def _connect(self) -> None:
        """Join the cluster; retarget's own code travels with the tasks, its dependencies must be on the nodes."""
        import retarget

        code = {"py_modules": [str(Path(retarget.__file__).parent)]}
        try:
            if self.address == "local":
                self.ray.init(include_dashboard=False, log_to_driver=False, runtime_env=code)
            else:
                self.ray.init(address=self.address, log_to_driver=False, runtime_env=code)
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise RetargetError(f"cannot join the Ray cluster: {one_line(err)}", source=self.address,
                                field="--ray") from None
