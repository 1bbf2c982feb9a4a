"""A sweep's folder: one record per finished job under jobs/ (written atomically), a log per job under logs/,
kept artifacts under artifacts/, and the merged results beside them. A job is finished when its record exists."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from retarget.outdir import MARKER
from retarget.sweep.jobs import Job


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write DATA to PATH through a temporary sibling and a rename: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SweepDir:
    """The folder of one sweep."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def record_path(self, job: Job) -> Path:
        return self.root / "jobs" / f"{job.id}.json"

    def log_path(self, job: Job) -> Path:
        return self.root / "logs" / f"{job.id}.log"

    def artifact_path(self, job: Job) -> Path:
        return self.root / "artifacts" / job.id

    def record(self, job: Job) -> dict[str, Any] | None:
        """JOB's record, or None if it has not finished (a temporary file of a killed writer is not a record)."""
        try:
            return json.loads(self.record_path(job).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def write_record(self, record: dict[str, Any]) -> None:
        self.mark()
        atomic_write(self.root / "jobs" / f"{record['id']}.json", json.dumps(record, indent=1))

    def mark(self) -> None:
        """Mark the folder as a retarget output, so a later run may resume in it (retarget.outdir)."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / MARKER).touch()
