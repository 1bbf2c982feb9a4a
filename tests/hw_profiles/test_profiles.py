"""Bundled profiles against the shared hw_specs.csv (the independent transcription), loader and overrides."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from retarget.errors import RetargetError
from retarget.hw_profiles import HardwareProfile, list_profiles, load_profile, parse_overrides

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hw_specs.csv"
PEAK_COLUMNS = {"fp32": "fp32_tflops", "tf32": "tf32_tflops", "bf16": "bf16_tflops", "fp16": "fp16_tflops",
                "fp8_e4m3": "fp8_tflops", "int8": "int8_tops", "fp4": "fp4_tflops"}


def _rows() -> list[dict[str, str]]:
    if not SHARED.exists():
        pytest.skip(f"shared data not found at {SHARED}")
    with SHARED.open() as f:
        return list(csv.DictReader(f))


def test_every_csv_row_has_a_profile_plus_cpu_x86() -> None:
    ids = {p.id for p in list_profiles()}
    assert ids >= {r["id"] for r in _rows()} | {"cpu-x86"}


def test_profiles_beyond_the_csv_source_memory_and_bandwidth() -> None:
    """Devices added after the shared transcription carry their own URLs for what decode speed rests on. A CPU's
    memory capacity is whatever DIMMs the machine holds, so it may be assumed (with a note saying so)."""
    extra = [p for p in list_profiles() if p.id not in {r["id"] for r in _rows()} | {"cpu-x86"}]
    assert len(extra) >= 10
    for p in extra:
        for field in ("memory_gb", "mem_bw_gb_s"):
            assert p.provenance[field].source.startswith(("https://", "http://")), (p.id, field)
            kinds = ("published", "derived", "assumed") if (p.family, field) == ("cpu", "memory_gb") else (
                "published", "derived")
            assert p.provenance[field].kind in kinds, (p.id, field)
        assert p.peak_tflops.get("bf16") or p.peak_tflops.get("fp16"), p.id


CPUS = ["ryzen-9-7950x", "threadripper-pro-5975wx", "threadripper-3970x", "ryzen-7-8840u", "core-i5-1135g7",
        "core-i5-9500", "core-i7-7820hq", "n100", "xeon-gold-6226r"]


@pytest.mark.parametrize("profile_id", CPUS)
def test_cpu_peaks_and_bandwidth_follow_from_the_stated_arithmetic(profile_id: str) -> None:
    """fp32 = FLOP/cycle/core x cores x clock and bandwidth = channels x MT/s x 8 B, as each note states them, with
    the core count the profile's own; bf16 at 2x fp32 only with AVX512-BF16 (Zen 4), int8 at 4x with VNNI, else 2x."""
    p = load_profile(profile_id)
    fp32 = re.search(r"(\d+) FLOP/cycle/core.*? x (\d+) cores x ([\d.]+) GHz", p.provenance["peak_tflops.fp32"].note)
    assert fp32, profile_id
    flop, cores, ghz = int(fp32[1]), int(fp32[2]), float(fp32[3])
    assert cores == p.cores
    assert p.peak("fp32") == pytest.approx(flop * cores * ghz / 1000, rel=1e-9)
    bw = re.match(r"(\d+) channels? x (\d+) MT/s x 8 B = ([\d.]+) GB/s", p.provenance["mem_bw_gb_s"].note)
    assert bw, profile_id
    assert p.mem_bw_gb_s == float(bw[3]) == pytest.approx(int(bw[1]) * int(bw[2]) * 8 / 1000, abs=0.05)
    zen4 = "Zen 4" in p.arch
    assert flop == (64 if profile_id == "xeon-gold-6226r" else 16 if profile_id == "n100" else 32)
    assert p.peak("bf16") == pytest.approx(p.peak("fp32") * (2 if zen4 else 1), rel=1e-9)
    assert p.peak("fp16") == pytest.approx(p.peak("fp32"), rel=1e-9)
    vnni = "VNNI" in p.arch
    assert p.peak("int8") == pytest.approx(p.peak("fp32") * (4 if vnni else 2), rel=1e-9)
    assert p.provenance["memory_gb"].kind == "assumed" and p.provenance["memory_gb"].note


def test_zen4_avx512_does_not_double_the_fp32_rate() -> None:
    """Zen 4 issues 512-bit ops on 256-bit datapaths: per core and cycle it does Zen 3's 32 fp32 FLOP, half of a
    Cascade Lake core with two 512-bit FMA units."""
    per_core_cycle = {pid: load_profile(pid).peak("fp32") * 1000 / (load_profile(pid).cores * ghz)
                      for pid, ghz in (("ryzen-9-7950x", 4.5), ("threadripper-pro-5975wx", 3.6),
                                       ("xeon-gold-6226r", 2.9))}
    assert per_core_cycle["ryzen-9-7950x"] == pytest.approx(per_core_cycle["threadripper-pro-5975wx"]) == 32
    assert per_core_cycle["xeon-gold-6226r"] == pytest.approx(64)


@pytest.mark.parametrize("row", _rows() if SHARED.exists() else [], ids=lambda r: r["id"])
def test_numbers_match_hw_specs_csv(row: dict[str, str]) -> None:
    """Published numbers equal the csv; blanks stay blank unless the profile marks them assumed/derived."""
    p = load_profile(row["id"])
    pairs = [("memory_gb", row["memory_gb"], 1.0), ("mem_bw_gb_s", row["mem_bw_tb_s"], 1000.0),
             ("tdp_w", row["tdp_w"], 1.0), ("onchip_mb", row["l2_or_sram_mb"], 1.0)]
    for fmt, col in PEAK_COLUMNS.items():
        pairs.append((f"peak_tflops.{fmt}", row[col], 1.0))
    for name, cell, scale in pairs:
        value = p.peak_tflops.get(name.split(".")[1]) if name.startswith("peak") else getattr(p, name)
        if cell.strip():
            assert value == pytest.approx(float(cell) * scale), name
        elif value is not None:
            assert p.provenance[name].kind in ("assumed", "derived"), f"{name} is not in the csv"
            assert p.provenance[name].note, f"{name}: an assumed value needs a note saying why"


def test_every_number_has_a_url_and_assumptions_say_so() -> None:
    for p in list_profiles():
        assert p.sources and all(s.startswith("http") for s in p.sources), p.id
        for name, src in p.provenance.items():
            assert src.source.startswith("http"), (p.id, name)
            if src.kind == "assumed":
                assert src.note, (p.id, name)


def test_fp8_variant_and_targets() -> None:
    """The FP8 split called out in hw_specs.md: gfx942 is FNUZ, gfx950 and Hopper are OCP."""
    assert load_profile("mi300x").fp8_variant == "fnuz"
    assert load_profile("mi355x").fp8_variant == "ocp"
    assert load_profile("h100-sxm").fp8_variant == "ocp"
    assert load_profile("a100-80g-sxm").fp8_variant == "none"
    assert load_profile("h100-sxm").compiler_target == "cuda:90"
    assert load_profile("mi300x").compiler_target == "hip:gfx942"
    assert load_profile("tpu-v6e").compiler_target is None
    assert "MIGraphXExecutionProvider" in load_profile("mi300x").onnxruntime_eps


def test_json_round_trip() -> None:
    for p in list_profiles():
        assert HardwareProfile.model_validate(p.model_dump(mode="json")) == p


def test_overrides() -> None:
    p = load_profile("h100-sxm", parse_overrides(["fp8=0", "mem_bw_gb_s=4000", "native_formats=bf16,fp16"]))
    assert "fp8_e4m3" not in p.peak_tflops and p.fp8_variant == "none"
    assert p.mem_bw_gb_s == 4000 and p.provenance["mem_bw_gb_s"].kind == "override"
    assert p.native_formats == ["bf16", "fp16"]
    assert load_profile("h100-sxm", {"peak_tflops.bf16": "500"}).peak("bf16") == 500


@pytest.mark.parametrize("items, field", [(["mem_bw_gb_s=-3"], "mem_bw_gb_s"),
                                          (["warp_size=64"], "warp_size"), (["memory_gb=lots"], "memory_gb")])
def test_bad_override_names_the_field(items: list[str], field: str) -> None:
    with pytest.raises(RetargetError) as err:
        load_profile("h100-sxm", parse_overrides(items))
    assert err.value.field == field and err.value.source == "--set"


def test_parse_overrides_needs_equals() -> None:
    with pytest.raises(RetargetError, match="FIELD=VALUE"):
        parse_overrides(["fp8"])


def test_unknown_id_lists_known_ids() -> None:
    with pytest.raises(RetargetError, match="h100-sxm.*mi300x"):
        load_profile("h1000")


def test_user_yaml_by_path(tmp_path: Path) -> None:
    src = (Path(__file__).resolve().parents[2] / "retarget/hw_profiles/profiles/l4.yaml").read_text()
    path = tmp_path / "my-l4.yaml"
    path.write_text(src.replace("id: l4", "id: my-l4"))
    assert load_profile(str(path)).id == "my-l4"


@pytest.mark.parametrize("edit, field", [
    (lambda s: s.replace("mem_bw_gb_s: {value: 300,", "mem_bw_gb_s: {value: fast,"), "mem_bw_gb_s"),
    (lambda s: s.replace("family: nvidia-ada", "family: nvidia-kepler"), "family"),
    (lambda s: s.replace("  bf16: {value: 121,", "  bf16: {valu: 121,"), "peak_tflops.bf16"),
    (lambda s: s.replace("name: ", "nme: "), "name"),
])
def test_malformed_yaml_names_file_and_field(tmp_path: Path, edit, field: str) -> None:
    src = (Path(__file__).resolve().parents[2] / "retarget/hw_profiles/profiles/l4.yaml").read_text()
    path = tmp_path / "bad.yaml"
    path.write_text(edit(src))
    with pytest.raises(RetargetError) as err:
        load_profile(str(path))
    assert err.value.source == str(path)
    assert err.value.field in (field, "nme")
    assert str(path) in str(err.value)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("id: x\nname: [unclosed\n")
    with pytest.raises(RetargetError, match=r"broken.yaml: line \d+"):
        load_profile(str(path))


def test_memory_is_read_in_binary_gigabytes() -> None:
    """A vendor's '80GB' H100 and '141GB' H200 report 81559 MiB and 143771 MiB to nvidia-smi (published
    nvidia-smi outputs): memory_bytes holds them, with under 1% left for what the driver reserves."""
    for profile_id, reported_mib in (("h100-sxm", 81559), ("h200-sxm", 143771)):
        capacity = load_profile(profile_id).memory_bytes
        assert reported_mib * 2**20 <= capacity < reported_mib * 2**20 * 1.01
