"""How much to trust one prediction: the profile's own confidence, and how the model did on the published
measurements of the same device family and engine (validation_summary.json, written with docs/validation.md
by bench/test_validate.py from `retarget validate`)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from retarget.hw_profiles.schema import HardwareProfile

SUMMARY_FILE = Path(__file__).parent / "validation_summary.json"


@cache
def _summary() -> dict[str, Any]:
    return json.loads(SUMMARY_FILE.read_text()) if SUMMARY_FILE.is_file() else {"groups": {}}


def validated_profiles() -> frozenset[str]:
    """Profiles with at least one published measurement the model predicted (validation_summary.json)."""
    return frozenset(_summary().get("profiles", {}))


def group_key(family: str, engine: str) -> str:
    return f"{family} / {engine}"


def confidence(profile: HardwareProfile, engine: str) -> dict[str, Any]:
    """Profile confidence, and the validation rows (count, MAPE per phase) of PROFILE's family under ENGINE."""
    key = group_key(profile.family, engine)
    group = _summary()["groups"].get(key)
    if group:
        phases = ", ".join(f"{phase} MAPE {v['mape_pct']:.0f}% ({v['rows']} rows)" for phase, v in group.items())
        validated = f"validated on published measurements of {key}: {phases}"
    else:
        validated = f"no published measurement of {key} has been predicted: unvalidated"
        others = [k.split(" / ")[1] for k in _summary()["groups"] if k.startswith(group_key(profile.family, ""))]
        if others:
            validated += f" (validated with --engine {', '.join(sorted(others))})"
    return {"profile": profile.confidence, "family": profile.family, "engine": engine, "validation": group or {},
            "summary": f"profile numbers {profile.confidence}; {validated}"}
