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


def _matrix_format(fmt: str, native: str, fnuz: bool) -> str | None:
    """The kernel matrix's format name for a recipe format (None: plain BF16/FP16 matmuls)."""
    if fmt == "fp8":
        return "fp8-e4m3fnuz" if fnuz else ("fp8-e4m3-block128" if "block" in native else "fp8-e4m3")
    if fmt == "int8":
        return "w8a8-int8"
    if fmt.startswith(("mxfp4", "nvfp4")):
        return "mxfp4"
    if fmt.startswith("int4"):
        return "int4-g128"
    return None


def _feature_kernels(feature: str, expert_format: str) -> str | None:
    """The kernel matrix's architecture-feature name for a model feature (portability.FEATURE_KERNELS); INT8
    experts get a name the matrix lacks (no fused-MoE kernel takes them), so their verdict says so."""
    if feature == "moe":
        if expert_format.startswith("int"):
            return "moe-w4a16" if expert_format.startswith("int4") else f"moe-{expert_format}"
        return {"fp8": "moe-fp8-block", "mxfp4": "moe-mxfp4"}.get(expert_format, "moe-bf16")
    return {"mla": "mla", "window": "attention-window-sinks", "ssm": "mamba2"}.get(feature)


def annotate(matrix: dict[str, Any], evidence: dict[str, Any] | None) -> None:
    """Add to every cell's recipe `kernels`: {format: verdict} of the Triton kernels its low-bit formats
    need on the device's compiler target, and `feature_kernels`: {feature: verdict} of the kernels its
    architecture features need (MLA decode, fused MoE, window/sink attention, Mamba2 scan), from EVIDENCE;
    nothing when there is none."""
    if not evidence:
        return
    fnuz = {p["id"]: p.get("fp8_variant") == "fnuz" for p in matrix["profiles"]}
    for m in matrix["models"]:
        natives = m["native_format"]
        for device, cell in m["cells"].items():
            dev = evidence["devices"].get(device, {})
            verdicts = dev.get("verdicts", {})
            missing = "no Triton backend" if "note" in dev or not dev else "not in the kernel matrix"
            recipe = cell["recipe"]
            found = {}
            for group, fmt in (("linear", recipe["weight_format"]), ("experts", recipe["expert_format"])):
                native = natives.get(group, natives.get("linear", natives.get("all", "")))
                name = _matrix_format(fmt, native, fnuz.get(device, False))
                if name is not None:
                    found[name] = verdicts.get(name, missing)
            recipe["kernels"] = found
            names = {f: _feature_kernels(f, recipe["expert_format"]) for f in m["features"]}
            recipe["feature_kernels"] = {f"{f} ({n})": verdicts.get(n, missing)
                                         for f, n in names.items() if n is not None}
