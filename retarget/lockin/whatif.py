"""What-if overrides for the lock-in matrix: `--set [PROFILE.]FIELD=VALUE`.

Without a profile prefix an override applies to every device (`--set fp8=0`); with one it applies to that
device only (`--set ascend-910b.fp8=560`). Besides every profile field and peak format, three scale
factors are understood: `scale_compute` (every peak rate), `scale_bandwidth` (memory bandwidth) and
`scale_interconnect`. Giving a device an FP8 rate it did not have also makes its FP8 encoding OCP.
"""

from __future__ import annotations

from retarget.errors import RetargetError
from retarget.hw_profiles import HardwareProfile, apply_overrides, parse_overrides

SCALES = {"scale_compute": "peak_tflops", "scale_bandwidth": "mem_bw_gb_s",
          "scale_interconnect": "interconnect_gb_s"}


def split_overrides(items: list[str], profile_ids: list[str]) -> dict[str | None, dict[str, str]]:
    """['fp8=0', 'h20.scale_compute=2'] -> {None: {'fp8': '0'}, 'h20': {'scale_compute': '2'}}."""
    out: dict[str | None, dict[str, str]] = {}
    ids = sorted(set(profile_ids), key=len, reverse=True)  # ids may hold dots: the longest match wins
    for key, value in parse_overrides(items).items():
        target = next((i for i in ids if key.startswith(i + ".")), None)
        out.setdefault(target, {})[key[len(target) + 1:] if target else key] = value
    return out


def _factor(raw: str, key: str) -> float:
    try:
        factor = float(raw)
    except ValueError:
        raise RetargetError(f"expected a number, got {raw!r}", source="--set", field=key) from None
    if factor <= 0:
        raise RetargetError("scale factors must be > 0", source="--set", field=key)
    return factor


def apply_whatif(profile: HardwareProfile, overrides: dict[str, str]) -> HardwareProfile:
    """PROFILE with OVERRIDES (profile fields, peak formats, scale factors) applied."""
    plain = {k: v for k, v in overrides.items() if k not in SCALES}
    if plain.get("fp8", plain.get("fp8_e4m3", "0")) not in ("0", "none", "") and profile.fp8_variant == "none":
        plain.setdefault("fp8_variant", "ocp")
    for key, raw in overrides.items():
        if key not in SCALES:
            continue
        factor = _factor(raw, key)
        if SCALES[key] == "peak_tflops":
            for fmt, value in profile.peak_tflops.items():
                plain.setdefault(fmt, str(value * factor))
        elif (current := getattr(profile, SCALES[key])) is not None:
            plain.setdefault(SCALES[key], str(current * factor))
    return apply_overrides(profile, plain) if plain else profile


def apply_all(profiles: list[HardwareProfile], split: dict[str | None, dict[str, str]]) -> list[HardwareProfile]:
    """Each profile with the global overrides, then its own."""
    return [apply_whatif(p, {**split.get(None, {}), **split.get(p.id, {})}) for p in profiles]


def _flat(profile: HardwareProfile) -> dict[str, object]:
    data = profile.model_dump(exclude={"provenance"})
    peaks = data.pop("peak_tflops", {}) or {}
    return {**data, **{f"peak_tflops.{k}": v for k, v in peaks.items()}}


def changes(before: list[HardwareProfile], after: list[HardwareProfile]) -> list[dict[str, object]]:
    """Every field the overrides changed: [{device, field, before, after}], in profile order."""
    out = []
    for old, new in zip(before, after, strict=True):
        a, b = _flat(old), _flat(new)
        out += [{"device": new.id, "field": k, "before": a.get(k), "after": b.get(k)}
                for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]
    return out


def describe(overrides: list[str], changed: list[dict[str, object]], homes: dict[str, str]) -> list[str]:
    """Lines echoing the what-if: the overrides, each field they changed, and the models whose home device
    (HOMES: model -> home id) was evaluated with a changed profile."""
    if not overrides:
        return []
    lines = [f"what-if: --set {' --set '.join(overrides)}"]
    lines += [f"  {c['device']}.{c['field']}: {c['before']} -> {c['after']}" for c in changed]
    if not changed:
        lines.append("  (no field changed)")
    touched = {str(c["device"]) for c in changed}
    affected = sorted(m for m, h in homes.items() if h in touched)
    if affected:
        lines.append(f"  home profile overridden for: {', '.join(affected)} (T(M, g) and T(R(M), g) use the "
                     "overridden profile; the choice of home does not)")
    return lines
