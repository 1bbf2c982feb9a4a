"""Kernel portability evidence for the lock-in report: the matrix JSON `retarget kernels --json` writes
(retarget/kernels/portability.py), read-only. Missing or unreadable files are skipped: the report then
says that no compile evidence was available."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from retarget.hw_profiles.schema import HardwareProfile

DEFAULT_MATRIX = Path(__file__).resolve().parents[2] / "docs" / "kernels.json"


def triton_target(profile: HardwareProfile) -> str | None:
    """The kernel matrix's target name for PROFILE ('cuda:90' -> 'sm_90', 'hip:gfx942' -> 'gfx942')."""
    backend, _, arch = (profile.compiler_target or "").partition(":")
    if backend == "cuda":
        return f"sm_{arch}"
    if backend == "hip":
        return arch
    return None


def load_evidence(profiles: list[HardwareProfile], path: Path | None = None) -> dict[str, Any] | None:
    """{'source', 'triton_version', 'date', 'formats', 'devices': {profile id: {format: verdict}}} from the
    matrix at PATH (default docs/kernels.json), or None when there is none. Devices whose compiler target
    the matrix does not cover get the reason instead of verdicts."""
    path = path or DEFAULT_MATRIX
    try:
        matrix = json.loads(Path(path).read_text())
        evidence = matrix["evidence"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    formats = list(dict.fromkeys(f for per in evidence.values() for f in per))
    devices: dict[str, Any] = {}
    for p in profiles:
        target = triton_target(p)
        if target in evidence:
            devices[p.id] = {"target": target,
                             "verdicts": {f: v.get("verdict") for f, v in evidence[target].items()}}
        else:
            why = f"no official Triton backend ({p.compiler_target or 'no compiler target'})"
            devices[p.id] = {"target": p.compiler_target, "verdicts": {}, "note": why}
    return {"source": str(path.name), "provenance": matrix.get("provenance", "measured"),
            "method": matrix.get("method", ""), "triton_version": matrix.get("triton_version"),
            "date": matrix.get("date"), "formats": formats, "devices": devices}
