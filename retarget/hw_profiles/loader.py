"""Load hardware profiles: bundled YAMLs by id, a user's YAML by path, and `--set field=value` overrides.

In a profile YAML every number is written as
`{value: ..., source: URL, kind: published|derived|assumed, note: ...}`; the loader moves the source part
into `HardwareProfile.provenance` so code reads plain numbers.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from retarget.errors import RetargetError
from retarget.hw_profiles.schema import NUMERIC_FIELDS, PEAK_FORMATS, HardwareProfile

PROFILE_DIR = Path(__file__).parent / "profiles"

# `--set fp8=0` is shorthand for `--set peak_tflops.fp8_e4m3=0`; any peak format name works the same way.
_PEAK_ALIASES = {"fp8": "fp8_e4m3", **{fmt: fmt for fmt in PEAK_FORMATS}}
# Formats in `native_formats` that go away when their peak rate is overridden to 0.
_NATIVE_FOR_PEAK = {"fp8_e4m3": ("fp8_e4m3", "fp8_e5m2", "mxfp8"), "fp4": ("fp4", "mxfp4", "nvfp4"),
                    "int8": ("int8",), "bf16": ("bf16",), "fp16": ("fp16",), "tf32": ("tf32",),
                    "fp32": ("fp32",)}


def _field_name(loc: tuple[Any, ...]) -> str | None:
    return ".".join(str(p) for p in loc) or None


def _raise_validation(err: ValidationError, source: str) -> None:
    first = err.errors()[0]
    msg = first["msg"].removeprefix("Value error, ")
    raise RetargetError(msg, source=source, field=_field_name(first["loc"])) from None


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
    peaks = data.get("peak_tflops") or {}
    if not isinstance(peaks, dict):
        raise RetargetError("expected a mapping of format -> {value, source}", source=source,
                            field="peak_tflops")
    data["peak_tflops"] = {
        fmt: _split_sourced(v, f"peak_tflops.{fmt}", provenance, source) for fmt, v in peaks.items()}
    data["provenance"] = provenance
    try:
        return HardwareProfile.model_validate(data)
    except ValidationError as err:
        _raise_validation(err, source)
    raise AssertionError("unreachable")


def _read_yaml(path: Path) -> HardwareProfile:
    try:
        raw = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: ~10x faster
    except OSError as err:
        raise RetargetError(f"cannot read: {err.strerror}", source=str(path)) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        raise RetargetError(f"not valid YAML ({getattr(err, 'problem', err)})", source=str(path),
                            field=where) from None
    return profile_from_dict(raw, str(path))


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


def _parse_value(raw: str, current: Any) -> Any:
    if isinstance(current, list):
        return [s.strip() for s in raw.split(",") if s.strip()]
    value = yaml.safe_load(raw) if raw else None
    return None if value in ("none", "None") else value


def apply_overrides(profile: HardwareProfile, overrides: dict[str, str]) -> HardwareProfile:
    """A copy of PROFILE with OVERRIDES applied. A peak set to 0 (or none) removes that format: its rate and
    its entries in `native_formats` (and the fp8 variant for fp8)."""
    data = profile.model_dump()
    for key, raw in overrides.items():
        fmt = _PEAK_ALIASES.get(key.removeprefix("peak_tflops."))
        if fmt is not None:
            name, value = f"peak_tflops.{fmt}", _parse_value(raw, None)
            if value in (0, None):
                data["peak_tflops"].pop(fmt, None)
                data["provenance"].pop(name, None)
                data["native_formats"] = [f for f in data["native_formats"] if f not in _NATIVE_FOR_PEAK[fmt]]
                if fmt == "fp8_e4m3":
                    data["fp8_variant"] = "none"
                continue
            data["peak_tflops"][fmt] = value
        elif key in HardwareProfile.model_fields and key not in ("provenance", "id"):
            name, value = key, _parse_value(raw, data[key])
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
    path = Path(id_or_path)
    if id_or_path.endswith((".yaml", ".yml")) or path.is_file():
        profile = _read_yaml(path)
    else:
        bundled = _bundled()
        if id_or_path not in bundled:
            raise RetargetError(f"unknown hardware profile; known: {', '.join(bundled)}", source=id_or_path)
        profile = bundled[id_or_path]
    return apply_overrides(profile, overrides) if overrides else profile
