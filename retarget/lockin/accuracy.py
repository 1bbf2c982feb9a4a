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
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COST_FILE = ROOT / "bench" / "results" / "conversion-cost.json"
COST_SOURCE = ("bench/results/conversion-cost.json, written by bench/conversion_cost.py on SmolLM2-135M and "
               "all-MiniLM-L6-v2 stand-ins")
PPL_BUDGET = 1.02
COSINE_BUDGET = 0.005


@dataclass(frozen=True)
class Price:
    """The measured accuracy price of converting NATIVE -> TARGET (recipe names), relative to NATIVE."""

    native: str
    target: str
    ppl_ratio_vs_native: float    # SmolLM2-135M perplexity after the conversion / with the native format
    cosine_drop_vs_native: float  # all-MiniLM-L6-v2 mean cosine to float: native minus converted
    within_budget: bool
    source: str                   # file, run date, machine and command it was measured with

    def describe(self) -> str:
        """' [measured on SmolLM2-135M: perplexity x1.014 vs native]'."""
        return f" [measured on SmolLM2-135M: perplexity x{self.ppl_ratio_vs_native:.3f} vs native]"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "provenance": "measured"}


@cache
def _table(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """({row name: row}, {run date: run}) of the results file at PATH; empty when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
        return {r["name"]: r for r in data["rows"]}, {r["date"]: r for r in data.get("runs", [])}
    except (OSError, ValueError, KeyError, TypeError):
        return {}, {}


def _source(path: Path, run: dict[str, Any] | None) -> str:
    where = f"measured: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}"
    if not run:
        return f"{where} (SmolLM2-135M, all-MiniLM-L6-v2 stand-ins)"
    m = run.get("machine", {})
    return (f"{where} (SmolLM2-135M, all-MiniLM-L6-v2 stand-ins; {run['date'][:10]} on {m.get('cpu', '?')}, "
            f"{m.get('cores', '?')} cores, torch {m.get('versions', {}).get('torch', '?')}: `{run['command']}`)")


def price(native: str, target: str) -> Price | None:
    """The price of converting NATIVE -> TARGET (recipe names, e.g. 'fp8-block128' -> 'w8a8-int8'), or None
    when it was not measured."""
    rows, runs = _table(COST_FILE)
    conv, base = rows.get(f"{native} -> {target}"), rows.get(native)
    if not conv or not base or "smollm2" not in conv or "smollm2" not in base:
        return None
    ppl = conv["smollm2"]["perplexity_ratio"] / base["smollm2"]["perplexity_ratio"]
    cos = base.get("minilm", {}).get("mean_cosine", 1.0) - conv.get("minilm", {}).get("mean_cosine", 1.0)
    return Price(native, target, round(ppl, 4), round(cos, 5), ppl <= PPL_BUDGET and cos <= COSINE_BUDGET,
                 _source(COST_FILE, runs.get(conv.get("run"))))


def measured() -> list[Price]:
    """The price of every conversion the results file holds, in its order."""
    rows, _ = _table(COST_FILE)
    prices = (price(r["native"], r["target"]) for r in rows.values() if r.get("kind") == "converted")
    return [p for p in prices if p is not None]


def describe(native: str, target: str) -> str:
    """' [measured on SmolLM2-135M: perplexity x1.004 vs native]' or '' when not measured."""
    p = price(native, target)
    return "" if p is None else p.describe()


def price_text(p: dict[str, Any]) -> str:
    """One line for a Price's dict, e.g. 'fp8-block128 -> w8a8-int8: SmolLM2-135M perplexity x1.014 and
    all-MiniLM-L6-v2 cosine -0.0027 vs native; within the budget (<= 2% perplexity, <= 0.005 cosine)'."""
    verdict = "within" if p["within_budget"] else "outside"
    return (f"{p['native']} -> {p['target']}: SmolLM2-135M perplexity x{p['ppl_ratio_vs_native']:.3f} and "
            f"all-MiniLM-L6-v2 cosine {-p['cosine_drop_vs_native']:+.4f} vs native; {verdict} the budget "
            f"(<= {PPL_BUDGET - 1:.0%} perplexity, <= {COSINE_BUDGET} cosine)")
