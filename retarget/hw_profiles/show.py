"""Rich views of hardware profiles for `retarget profiles` and `retarget profiles show ID`."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from retarget.hw_profiles.loader import list_profiles, load_profile, parse_overrides
from retarget.hw_profiles.schema import PEAK_FORMATS, HardwareProfile


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def profiles_table(profiles: list[HardwareProfile]) -> Table:
    """One row per profile: memory, bandwidth, dense bf16/fp8/fp4 peaks, link, FP8 flavour, Triton target."""
    table = Table(title="Hardware profiles (dense peaks; `profiles show ID` gives each number's source)")
    for col in ("id", "name", "family", "mem GB", "BW GB/s", "bf16 TF", "fp8 TF", "fp4 TF", "link GB/s",
                "fp8", "compiler target", "conf."):
        table.add_column(col, justify="right" if col.endswith(("GB", "GB/s", "TF")) else "left")
    for p in profiles:
        table.add_row(p.id, p.name, p.family, _num(p.memory_gb), _num(p.mem_bw_gb_s), _num(p.peak("bf16"), 1),
                      _num(p.peak("fp8_e4m3"), 1), _num(p.peak("fp4"), 1), _num(p.interconnect_gb_s),
                      p.fp8_variant, p.compiler_target or "-", p.confidence)
    return table


def profile_detail(profile: HardwareProfile) -> Table:
    """Every field of one profile, each number with its kind and source."""
    table = Table(title=f"{profile.name} ({profile.id}), confidence {profile.confidence}", show_lines=False)
    for col in ("field", "value", "kind", "source / note"):
        table.add_column(col, overflow="fold")
    rows = [(name, getattr(profile, name)) for name in ("memory_gb", "mem_bw_gb_s", "onchip_mb",
                                                          "interconnect_gb_s", "tdp_w", "cores")]
    rows += [(f"peak_tflops.{fmt}", profile.peak_tflops.get(fmt)) for fmt in PEAK_FORMATS]  # type: ignore
    for name, value in rows:
        src = profile.provenance.get(name)
        detail = f"{src.source}" + (f"  ({src.note})" if src and src.note else "") if src else ""
        table.add_row(name, _num(value, 0 if name == "cores" else 2) if value is not None else "-",
                      src.kind if src else "", detail)
    for name in ("family", "arch", "fp8_variant", "native_formats", "compiler_target", "triton_backend",
                 "onnxruntime_eps", "software_stack", "notes"):
        value = getattr(profile, name)
        table.add_row(name, ", ".join(value) if isinstance(value, list) else str(value), "", "")
    table.add_row("sources", "\n".join(profile.sources), "", "")
    return table


def show_profiles(console: Console) -> None:
    """Print the table of all bundled profiles."""
    console.print(profiles_table(list_profiles()))


def show_profile(id_or_path: str, overrides: list[str], as_json: bool, console: Console) -> None:
    """Print one profile (bundled id or YAML path, with `--set` overrides) as a table or as JSON."""
    profile = load_profile(id_or_path, parse_overrides(overrides))
    if as_json:
        console.print_json(json.dumps(profile.model_dump(mode="json")))
    else:
        console.print(profile_detail(profile))
