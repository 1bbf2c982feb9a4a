"""Where a number came from: measured here (machine and versions), predicted (model and assumptions),
or published (URL). Every number in a report is wrapped in one of these."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
from functools import cache
from typing import Any


@cache
def machine() -> dict[str, Any]:
    """This machine and the versions of the packages that produce measured numbers."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for pkg in ("retarget", "torch", "triton", "transformers", "optimum-onnx", "onnx", "onnxruntime"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def measured(value: Any, unit: str, **details: Any) -> dict[str, Any]:
    """A number measured on this machine now."""
    return {
        "value": value,
        "unit": unit,
        "provenance": "measured",
        "machine": machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **details,
    }


def predicted(value: Any, unit: str, model: str, assumptions: list[str] | None = None) -> dict[str, Any]:
    """A number from one of retarget's models (name and version), with its assumptions."""
    return {"value": value, "unit": unit, "provenance": "predicted", "model": model,
            "assumptions": assumptions or []}


def published(value: Any, unit: str, url: str, note: str = "") -> dict[str, Any]:
    """A number someone else published, with its URL."""
    return {"value": value, "unit": unit, "provenance": "published", "url": url, "note": note}
