"""The measured accuracy price of format conversions (bench/results/conversion-cost.json, written by
`python bench/conversion_cost.py` on SmolLM2-135M and all-MiniLM-L6-v2 stand-ins), and the accuracy budget
lock-in's recipe choice keeps to.

Budget: a conversion may be chosen for speed when SmolLM2's perplexity after it is at most
PPL_BUDGET times the native format's (and MiniLM's cosine to float drops by at most COSINE_BUDGET); the
default conversions (INT8 W8A8 for FP8, int4 g32 for MXFP4) are always allowed, and carry their measured
price when there is one.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

COST_FILE = Path(__file__).resolve().parents[2] / "bench" / "results" / "conversion-cost.json"
PPL_BUDGET = 1.02
COSINE_BUDGET = 0.005


@cache
def _rows(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
        return {r["name"]: r for r in data["rows"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def price(native: str, target: str) -> dict[str, Any] | None:
    """{ppl_ratio_vs_native, cosine_drop_vs_native, within_budget, source} of converting NATIVE -> TARGET
    (recipe names, e.g. 'fp8-block128' -> 'w8a8-int8'), or None when it was not measured."""
    rows = _rows(COST_FILE)
    conv, base = rows.get(f"{native} -> {target}"), rows.get(native)
    if not conv or not base or "smollm2" not in conv or "smollm2" not in base:
        return None
    ppl = conv["smollm2"]["perplexity_ratio"] / base["smollm2"]["perplexity_ratio"]
    cos = base.get("minilm", {}).get("mean_cosine", 1.0) - conv.get("minilm", {}).get("mean_cosine", 1.0)
    return {"ppl_ratio_vs_native": round(ppl, 4), "cosine_drop_vs_native": round(cos, 5),
            "within_budget": ppl <= PPL_BUDGET and cos <= COSINE_BUDGET,
            "source": "measured: bench/results/conversion-cost.json (SmolLM2-135M, all-MiniLM-L6-v2 stand-ins)"}


def describe(native: str, target: str) -> str:
    """' [measured: ppl x1.004 vs native]' or '' when not measured."""
    p = price(native, target)
    return "" if p is None else f" [measured on SmolLM2-135M: perplexity x{p['ppl_ratio_vs_native']:.3f} vs native]"
