"""The kernel portability matrix lock-in reads as evidence (docs/kernels.json, written by `retarget kernels
--json`) holds a compile of every registered Triton kernel on every one of the nine AOT targets, and each
architecture feature lock-in names has a verdict there on every target."""

from __future__ import annotations

import json

from retarget.hw_profiles import load_profile
from retarget.kernels.portability import FEATURE_KERNELS, case_names
from retarget.kernels.targets import TARGETS
from retarget.lockin.evidence import DEFAULT_MATRIX, annotate, load_evidence
from retarget.lockin.matrix import lockin_matrix
from retarget.lockin.recipe import get_workload
from retarget.models.registry import get_spec


def test_every_kernel_is_compiled_on_all_nine_targets() -> None:
    matrix = json.loads(DEFAULT_MATRIX.read_text())
    compiled = {(r["kernel"], r["target"]) for r in matrix["results"]}
    assert len(TARGETS) == 9
    missing = {(k, t.name) for k in case_names() for t in TARGETS} - compiled
    assert not missing, f"rerun `retarget kernels --json docs/kernels.json` for {sorted(missing)[:5]}"
    for target in TARGETS:   # MLA decode, fused MoE, window/sink attention, Mamba2: a verdict in words
        verdicts = matrix["evidence"][target.name]
        assert all(isinstance(verdicts[f]["verdict"], str) for f in FEATURE_KERNELS), target.name


def test_int8_experts_are_not_credited_with_the_w4a16_moe_kernel() -> None:
    """DeepSeek-V3 on A100 (no FP8): its experts become INT8 W8A8, which no fused-MoE kernel of the matrix
    takes; MXFP4 experts of gpt-oss on the same target get the MXFP4 MoE kernel's verdict."""
    profiles = [load_profile("a100-80g-sxm")]
    matrix = lockin_matrix([get_spec("deepseek-v3"), get_spec("gpt-oss-120b")], profiles, get_workload("decode-b1"),
                           attribute=False)
    annotate(matrix, load_evidence(profiles))
    cells = {m["name"]: m["cells"]["a100-80g-sxm"]["recipe"] for m in matrix["models"]}
    kernels = json.loads(DEFAULT_MATRIX.read_text())["evidence"]["sm_80"]
    assert cells["deepseek-v3"]["expert_format"] == "int8"
    assert cells["deepseek-v3"]["feature_kernels"]["moe (moe-int8)"] == "not in the kernel matrix"
    assert cells["gpt-oss-120b"]["feature_kernels"]["moe (moe-mxfp4)"] == kernels["moe-mxfp4"]["verdict"]
