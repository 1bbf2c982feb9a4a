"""Load hardware profiles: bundled YAMLs by id, a user's YAML by path, and `--set field=value` overrides.

In a profile YAML every number is written as
`{value: ..., source: URL, kind: published|derived|assumed, note: ...}`; the loader moves the source part
into `HardwareProfile.provenance` so code reads plain numbers.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from retarget.errors import RetargetError
from retarget.hw_profiles.schema import NUMERIC_FIELDS, PEAK_FORMATS, HardwareProfile
from retarget.inputs import load_yaml, number, ref_path

PROFILE_DIR = Path(__file__).parent / "profiles"

# `--set fp8=0` is shorthand for `--set peak_tflops.fp8_e4m3=0`; any peak format name works the same way.
_PEAK_ALIASES = {"fp8": "fp8_e4m3", **{fmt: fmt for fmt in PEAK_FORMATS}}
# Formats in `native_formats` that go away when their peak rate is overridden to 0.
_NATIVE_FOR_PEAK = {"fp8_e4m3": ("fp8_e4m3", "fp8_e5m2", "mxfp8"), "fp4": ("fp4", "mxfp4", "nvfp4"),
                    "int8": ("int8",), "bf16": ("bf16",), "fp16": ("fp16",), "tf32": ("tf32",),
                    "fp32": ("fp32",)}
# Ranges every profile number must lie in (YAML and --set alike): (low, high, low excluded, whole number).
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "memory_gb": (1e-3, 1e5, False, False), "mem_bw_gb_s": (1e-3, 1e6, False, False),
    "onchip_mb": (0, 1e6, False, False), "interconnect_gb_s": (1e-3, 1e6, False, False),
    "tdp_w": (1e-3, 1e5, False, False), "peak_tflops": (1e-3, 1e6, False, False),
    "launch_year": (1950, 2100, False, True), "version": (1, 1, False, True), "cores": (1, 1e5, False, True)}


def _field_name(loc: tuple[Any, ...]) -> str | None:
    return ".".join(str(p) for p in loc) or None


def _raise_validation(err: ValidationError, source: str) -> None:
    first = err.errors()[0]
    msg = first["msg"].removeprefix("Value error, ")
    raise RetargetError(msg, source=source, field=_field_name(first["loc"])) from None


def _checked(value: Any, name: str, source: str) -> Any:
    """VALUE of field NAME (`peak_tflops.<fmt>` for a peak) when it is a finite number in its RANGES entry."""
    lo, hi, lo_open, integer = RANGES[name.split(".")[0]]
    return number(value, source=source, field=name, lo=lo, hi=hi, lo_open=lo_open, integer=integer)


def _split_sourced(value: Any, name: str, provenance: dict[str, Any], source: str) -> Any:
    """`{value, source, kind, note}` -> value (provenance recorded under NAME); plain values pass through."""
    if not isinstance(value, dict):
        return value
    if "value" not in value:
        raise RetargetError("expected a mapping with 'value' and 'source'", source=source, field=name)
    provenance[name] = {k: v for k, v in value.items() if k != "value"}
    return value["value"]


def profile_from_dict(raw: Any, source: str) -> HardwareProfile:
    """Build a profile from the parsed YAML RAW; errors name SOURCE and the offending field."""
    if not isinstance(raw, dict):
        raise RetargetError("a profile must be a YAML mapping", source=source)
    data = dict(raw)
    provenance: dict[str, Any] = dict(data.pop("provenance", None) or {})
    for name in NUMERIC_FIELDS:
        if name in data:
            data[name] = _split_sourced(data[name], name, provenance, source)
    for name in RANGES.keys() - {"peak_tflops"}:
        if data.get(name) is not None:
            data[name] = _checked(data[name], name, source)
    peaks = data.get("peak_tflops") or {}
    if not isinstance(peaks, dict):
        raise RetargetError("expected a mapping of format -> {value, source}", source=source,
                            field="peak_tflops")
    data["peak_tflops"] = {
        fmt: _checked(_split_sourced(v, f"peak_tflops.{fmt}", provenance, source), f"peak_tflops.{fmt}", source)
        for fmt, v in peaks.items()}
    data["provenance"] = provenance
    try:
        return HardwareProfile.model_validate(data)
    except ValidationError as err:
        _raise_validation(err, source)
    raise AssertionError("unreachable")


def _read_yaml(path: Path) -> HardwareProfile:
    return profile_from_dict(load_yaml(path), str(path))


@cache
def _bundled() -> dict[str, HardwareProfile]:
    profiles = {}
    for path in sorted(PROFILE_DIR.glob("*.yaml")):
        profile = _read_yaml(path)
        if profile.id != path.stem:
            raise RetargetError(f"id {profile.id!r} does not match the file name", source=str(path),
                                field="id")
        profiles[profile.id] = profile
    return profiles


def list_profiles() -> list[HardwareProfile]:
    """Every bundled profile, sorted by id."""
    return list(_bundled().values())


def parse_overrides(items: list[str]) -> dict[str, str]:
    """['mem_bw_gb_s=4000', 'fp8=0'] -> {'mem_bw_gb_s': '4000', 'fp8': '0'}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RetargetError(f"expected FIELD=VALUE, got {item!r}", source="--set")
        out[key.strip()] = value.strip()
    return out


def _parse_value(raw: str, current: Any, name: str) -> Any:
    """`--set` text for field NAME: a list, nothing ('', 'none'), a checked number, or the text itself."""
    if isinstance(current, list):
        return [s.strip() for s in raw.split(",") if s.strip()]
    if raw.lower() in ("", "none", "null", "~"):
        return None
    if name.startswith("peak_tflops.") and re.fullmatch(r"[+-]?0*\.?0*", raw.strip()):
        return 0  # a peak of 0 removes the format
    if name.split(".")[0] in RANGES:
        return _checked(raw, name, "--set")
    return raw


def apply_overrides(profile: HardwareProfile, overrides: dict[str, str]) -> HardwareProfile:
    """A copy of PROFILE with OVERRIDES applied. A peak set to 0 (or none) removes that format: its rate and
    its entries in `native_formats` (and the fp8 variant for fp8)."""
    data = profile.model_dump()
    for key, raw in overrides.items():
        fmt = _PEAK_ALIASES.get(key.removeprefix("peak_tflops."))
        if fmt is not None:
            name = f"peak_tflops.{fmt}"
            value = _parse_value(raw, None, name)
            if value in (0, None):
                data["peak_tflops"].pop(fmt, None)
                data["provenance"].pop(name, None)
                data["native_formats"] = [f for f in data["native_formats"] if f not in _NATIVE_FOR_PEAK[fmt]]
                if fmt == "fp8_e4m3":
                    data["fp8_variant"] = "none"
                continue
            data["peak_tflops"][fmt] = value
        elif key in HardwareProfile.model_fields and key not in ("provenance", "id"):
            name, value = key, _parse_value(raw, data[key], key)
            data[key] = value
        else:
            known = sorted(set(HardwareProfile.model_fields) - {"provenance", "id"} | set(_PEAK_ALIASES))
            raise RetargetError(f"unknown field; known: {', '.join(known)}", source="--set", field=key)
        data["provenance"][name] = {"source": "--set", "kind": "override", "note": f"{key}={raw}"}
    try:
        return HardwareProfile.model_validate(data)
    except ValidationError as err:
        _raise_validation(err, "--set")
    raise AssertionError("unreachable")


def load_profile(id_or_path: str, overrides: dict[str, str] | None = None) -> HardwareProfile:
    """A bundled profile by id, or a user's profile YAML by path, with OVERRIDES applied."""
    path = ref_path(id_or_path, "--target") or Path(id_or_path)
    if id_or_path.endswith((".yaml", ".yml")) or (path.exists() and not path.is_dir()):
        profile = _read_yaml(path)
    else:
        bundled = _bundled()
        if id_or_path not in bundled:
            raise RetargetError(f"unknown hardware profile; known: {', '.join(bundled)}", source=id_or_path)
        profile = bundled[id_or_path]
    return apply_overrides(profile, overrides) if overrides else profile
