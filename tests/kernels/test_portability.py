"""The AOT portability matrix: mnemonic parsing, and a smoke compile for sm_90 and gfx942."""

import json
import os
import subprocess
import sys

import pytest

from retarget.errors import RetargetError
from retarget.kernels.portability import mma_format, parse_targets
from retarget.kernels.targets import BY_NAME, TARGETS


@pytest.mark.parametrize("instr, target, expected", [
    ("wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3", "sm_90", ("wgmma", "e4m3")),
    ("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", "sm_80", ("mma.sync", "bf16")),
    ("mma.sync.aligned.m16n8k32.row.col.satfinite.s32.s8.s8.s32", "sm_86", ("mma.sync", "i8")),
    ("tcgen05.mma.cta_group::1.kind::f8f6f4", "sm_100", ("tcgen05", "f8f6f4")),
    ("tcgen05.mma.cta_group::1.kind::mxf8f6f4.block_scale.block32", "sm_100", ("tcgen05", "mx")),
    ("v_mfma_f32_32x32x16_fp8_fp8", "gfx942", ("mfma", "e4m3fnuz")),
    ("v_mfma_f32_32x32x64_f8f6f4", "gfx950", ("mfma", "f8f6f4")),
    ("v_mfma_scale_f32_32x32x64_f8f6f4", "gfx950", ("mfma", "mx")),
    ("v_mfma_i32_32x32x16_i8", "gfx942", ("mfma", "i8")),
    ("v_mfma_f32_32x32x8_bf16", "gfx942", ("mfma", "bf16")),
    ("v_wmma_f32_16x16x16_f16", "gfx1100", ("wmma", "f16")),
])
def test_mma_format(instr, target, expected):
    assert mma_format(instr, BY_NAME[target]) == expected


def test_targets_are_the_required_set_with_sources():
    assert [t.name for t in TARGETS] == ["sm_80", "sm_86", "sm_89", "sm_90", "sm_100", "sm_120",
                                         "gfx942", "gfx950", "gfx1100"]
    assert all(t.source.startswith("https://") and t.shared_limit > 0 for t in TARGETS)


def test_unknown_target_is_a_user_error():
    with pytest.raises(RetargetError, match="sm_91"):
        parse_targets("sm_90,sm_91", smoke=False)


def test_smoke_matrix(tmp_path):
    """Compile for real (not the interpreter) in a subprocess; compare with published facts: Hopper runs
    bf16 and OCP e4m3 on wgmma, MI300 runs bf16 on MFMA but emulates OCP e4m3 (kernels_anchors.md 6.3,
    triton-lang/triton#6542)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = tmp_path / "matrix.json"
    proc = subprocess.run([sys.executable, "-m", "retarget.cli", "kernels", "--smoke", "--json", str(out),
                           "--workers", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    matrix = json.loads(out.read_text())
    rows = {(r["kernel"], r["target"]): r for r in matrix["results"]}
    assert len(rows) == 4 and all(r["compiled"] and r["shared_fits"] for r in rows.values())
    assert rows["w4a16_gemm/w4a16-tiled-m512", "sm_90"]["mma_family"] == "wgmma"
    assert rows["w4a16_gemm/w4a16-tiled-m512", "gfx942"]["mma_family"] == "mfma"
    assert rows["fp8_gemm/channel", "sm_90"]["mma_format"] == "e4m3"
    assert rows["fp8_gemm/channel", "sm_90"]["native"] == "native"
    assert rows["fp8_gemm/channel", "gfx942"]["native"] == "upcast"
    assert matrix["triton_version"] and matrix["targets"][0]["shared_limit"]["url"].startswith("https://")


def test_kernel_package_imports_stay_light():
    """`import retarget` and the CPU path of weight_only_linear do not import triton (QuantLinear on CPU)."""
    code = ("import sys, torch, retarget; from retarget.kernels import weight_only_linear; "
            "q = torch.zeros(4, 32, dtype=torch.uint8); s = torch.ones(4, 1); "
            "weight_only_linear(torch.ones(2, 32), q, s, s * 8, 4, 32); "
            "assert 'triton' not in sys.modules, 'triton imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _row(**kw):
    base = {"compiled": True, "error": None, "wanted_mma": "bf16", "native": "native", "mma_family": "wgmma",
            "mma_format": "bf16", "spills": 0, "spills_unit": "STL instructions", "registers": 128,
            "shared_bytes": 1024, "shared_fits": True, "kernel": "k"}
    return {**base, **kw}


def test_lacks_names_instruction_registers_and_shared_memory():
    from retarget.kernels.portability import feature_verdict, lacks

    gfx1100 = BY_NAME["gfx1100"]
    assert lacks(_row(), gfx1100) == []
    said = lacks(_row(native="upcast", mma_format="f16", mma_family="wmma", wanted_mma="e4m3", spills=36,
                      shared_bytes=96 * 1024, shared_fits=False), gfx1100)
    assert said == ["no e4m3 tensor-core instruction: the compiler widens the operands to f16 on wmma",
                    "not enough registers: 36 spills (STL instructions) at 128 registers per thread",
                    "not enough shared memory: 96 KB wanted, 64 KB per block"]
    assert lacks(_row(compiled=False, error="CompilationError: x"), gfx1100)[0].startswith("does not compile")
    assert feature_verdict([_row(), _row(spills=3)])["verdict"] == "constrained"
    assert feature_verdict([_row(), _row(native="upcast")])["verdict"] == "upcast"
    assert feature_verdict([_row(), _row(compiled=False)])["verdict"] == "error"


def test_new_kernels_compile_for_hopper_and_mi300():
    """Decode attention and the Mamba2 step compile for sm_90 and gfx942; decode attention's products run on
    bf16 tensor cores on both (mma.sync or wgmma on Hopper, MFMA on CDNA3)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = ("import json, sys; from retarget.kernels.portability import build_matrix; "
            "from retarget.kernels.targets import BY_NAME; "
            "m = build_matrix([BY_NAME['sm_90'], BY_NAME['gfx942']], "
            "['attention/decode-splitkv', 'mamba2/state-update'], workers=1); "
            "json.dump(m['results'], sys.stdout, default=str)")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {(r["kernel"], r["target"]): r for r in json.loads(proc.stdout)}
    assert all(r["compiled"] for r in rows.values())
    assert rows["attention/decode-splitkv", "sm_90"]["mma_format"] == "bf16"
    assert rows["attention/decode-splitkv", "gfx942"]["mma_family"] == "mfma"
    assert rows["attention/decode-splitkv", "gfx942"]["native"] == "native"
    assert rows["mamba2/state-update", "sm_90"]["native"] == "n/a"   # no tensor cores by design


def test_merge_replaces_recompiled_kernels_and_keeps_the_rest():
    from retarget.kernels.portability import merge

    def matrix(kernels, date, spills):
        rows = [{**_row(kernel=k, spills=spills), "target": "sm_90", "op": k.split("/")[0]} for k in kernels]
        return {"triton_version": "3.9.0", "date": date, "wall_s": 1.0, "machine": {}, "kernels": kernels,
                "results": rows}

    old = matrix(["a/x", "b/y"], "old", 4)
    m = merge(old, matrix(["b/y", "c/z"], "new", 0))
    assert m["kernels"] == ["a/x", "b/y", "c/z"] and m["merged"] == {"date": "old", "wall_s": 1.0, "machine": {},
                                                                     "kernels": ["a/x"]}
    by = {r["kernel"]: r for r in m["results"]}
    assert by["b/y"]["spills"] == 0 and by["a/x"]["lacks"][0].startswith("not enough registers: 4 spills")
    with pytest.raises(RetargetError, match="Triton"):
        merge(old, {**matrix([], "new", 0), "triton_version": "3.6.0"})
