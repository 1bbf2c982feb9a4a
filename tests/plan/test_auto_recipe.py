"""What 'auto' makes of each kind of source, and that its choice for GGUF integer blocks sits on the committed,
measured CPU Pareto front (bench/results/pareto.json: KL to fp32 against decode tokens/s, one run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retarget.hw_profiles import load_profile
from retarget.plan import plan_recipe
from retarget.plan.recipe import GGUF_AUTO_RECIPE

PARETO = Path(__file__).resolve().parents[2] / "bench" / "results" / "pareto.json"


@pytest.mark.parametrize(("has_blocks", "element", "recipe"), [
    (True, "int", GGUF_AUTO_RECIPE),  # GGUF Q4_1 / Q8_0 blocks
    (True, "e4m3", "int4-g128-asym"),  # FP8 blocks: half their bytes as 4-bit
    (True, "e2m1", "keep"),  # MXFP4 experts stay as they are
    (False, "int", "int4-g128-asym"),  # a float checkpoint
])
def test_auto_per_source(has_blocks: bool, element: str, recipe: str) -> None:
    plan = plan_recipe("auto", load_profile("cpu-x86"), has_blocks, source_element=element)
    assert plan.weights.name == recipe and plan.why.startswith("auto")


def test_gguf_auto_choice_is_on_the_measured_front() -> None:
    rows = json.loads(PARETO.read_text())["rows"]

    def point(row: dict) -> tuple[float, float]:
        return row["decode_tokens_per_s"]["value"], row["kl_to_fp32"]

    ours = [row for row in rows.values() if row["artifact"] == f"retarget {GGUF_AUTO_RECIPE}"]
    keep = [row for row in rows.values() if row["artifact"] == "retarget keep"]
    assert ours and keep, f"{GGUF_AUTO_RECIPE} or keep is not in the committed Pareto run"
    on_front = [row for row in ours  # one row per loop: one that no row beats on both speed and KL
                if not any(point(o)[0] > point(row)[0] and point(o)[1] < point(row)[1] for o in rows.values())]
    assert on_front
    assert max(point(r)[0] for r in ours) > max(point(r)[0] for r in keep)
