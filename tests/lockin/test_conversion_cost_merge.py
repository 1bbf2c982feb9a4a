"""bench/conversion_cost.py's partial runs (--only / --skip): the rows a run measures replace those of the same
name, the others stay with the run they came from, and each conversion's price is recomputed against the
direct row it now sits next to (hand-made rows)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("conversion_cost",
                                               Path(__file__).resolve().parents[2] / "bench" / "conversion_cost.py")
cc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cc)


def _row(name: str, kind: str, ppl: float, cos: float) -> dict:
    return {"name": name, "kind": kind, "smollm2": {"perplexity_ratio": ppl}, "minilm": {"mean_cosine": cos}}


def test_partial_run_merges_into_an_older_file() -> None:
    old = {"date": "d1", "command": "python bench/conversion_cost.py --skip gptq-int4-g128-asym", "wall_s": 1.0,
           "machine": {"cpu": "x"}, "rows": [_row("fp8-block128", "native", 1.07, 0.998),
                                             _row("fp8-block128 -> w8a8-int8", "converted", 1.09, 0.995),
                                             _row("w8a8-int8", "direct", 1.03, 0.997)]}
    new = {r["name"]: r for r in (_row("fp8-block128", "native", 1.07, 0.998),
                                  _row("fp8-block128 -> gptq-int4-g128-asym", "converted", 1.34, 0.969),
                                  _row("gptq-int4-g128-asym", "direct", 1.20, 0.970))}
    run = {"date": "d2", "command": "python bench/conversion_cost.py --only gptq-int4-g128-asym", "wall_s": 2.0,
           "machine": {"cpu": "x"}}
    out = cc.merged(old, new, run, {"smollm2_perplexity": 13.5})
    rows = {r["name"]: r for r in out["rows"]}
    assert [r["date"] for r in out["runs"]] == ["d1", "d2"]
    assert {n: r["run"] for n, r in rows.items()} == {
        "fp8-block128": "d2", "fp8-block128 -> w8a8-int8": "d1", "w8a8-int8": "d1",
        "fp8-block128 -> gptq-int4-g128-asym": "d2", "gptq-int4-g128-asym": "d2"}
    gptq = rows["fp8-block128 -> gptq-int4-g128-asym"]
    assert gptq["smollm2"]["conversion_price"] == pytest.approx(1.34 - 1.20)
    assert gptq["minilm"]["conversion_price"] == pytest.approx(0.969 - 0.970)
    assert rows["fp8-block128 -> w8a8-int8"]["smollm2"]["conversion_price"] == pytest.approx(1.09 - 1.03)
    assert [r["kind"] for r in out["rows"]] == ["native", "converted", "converted", "direct", "direct"]
    assert "| fp8-block128 -> gptq-int4-g128-asym | converted | 1.3400 |" in cc.markdown(
        {**out, "runs": [{**r, "machine": {"cpu": "x", "versions": {}}} for r in out["runs"]]})
    # a full run rewrites everything: the older run is no longer cited
    assert [r["date"] for r in cc.merged(None, new, run, {})["runs"]] == ["d2"]


def test_unknown_target_is_refused() -> None:
    assert cc.selected(["gptq-int4-g128-asym"], []) == (("fp8-block128", "gptq-int4-g128-asym"),)
    with pytest.raises(ValueError, match="unknown target 'gptq-int3'"):
        cc.selected(["gptq-int3"], [])
