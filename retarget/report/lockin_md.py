"""Markdown summary of a lock-in matrix (lockin.md): the tables docs/lockin.md is made of."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

# The devices the lock-in debate is about, in the order tables show them (China-market parts first).
DEBATE_DEVICES = ("h20", "h800-sxm", "ascend-910b", "ascend-910c", "h100-sxm", "mi300x", "b200")


def _n(x: float | None, spec: str = ".2f") -> str:
    return "–" if x is None else format(x, spec)


def top_factor(shares: dict[str, float]) -> str:
    if not shares:
        return "–"
    f = max(shares, key=lambda k: abs(shares[k]))
    return f"{f} ×{math.exp(shares[f]):.2f}"


def li_table(matrix: dict[str, Any]) -> str:
    """Model rows: features, home, LI on the debate devices, geomean and worst LI, the top feature."""
    ids = [p["id"] for p in matrix["profiles"]]
    cols = [d for d in DEBATE_DEVICES if d in ids]
    head = ["model", "features", "home", *cols, "geomean LI", "worst LI", "largest factor"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in matrix["models"]:
        cells = [(d, c["li"]["value"]) for d, c in m["cells"].items() if c["li"]["value"]]
        worst = max(cells, key=lambda dc: dc[1]) if cells else ("–", None)
        worst_text = f"{_n(worst[1])} ({worst[0]})" if worst[1] and worst[1] > 1.005 else _n(worst[1])
        row = [m["name"], ", ".join(m["features"]) or "–", m["home"],
               *(_n(m["cells"][d]["li"]["value"]) for d in cols), _n(m["summary"]["geomean_li"]["value"]),
               worst_text, top_factor(m["summary"]["mean_log_shares"])]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def recipe_table(matrix: dict[str, Any], devices: tuple[str, ...], models: list[str] | None = None) -> str:
    """Per (model, device): recipe, devices, tokens/s per device of M and of R(M), LI, top share."""
    head = ["model", "device", "recipe", "tok/s/dev", "R(M) tok/s/dev", "LI", "largest factor"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in matrix["models"]:
        if models is not None and m["name"] not in models:
            continue
        for d in devices:
            c = m["cells"].get(d)
            if c is None:
                continue
            r = c["recipe"]
            lines.append("| " + " | ".join([
                m["name"], d, r["describe"], _n(r["tokens_s_per_device"], ".1f"),
                _n(c["reference_recipe"]["tokens_s_per_device"], ".1f"), _n(c["li"]["value"]),
                top_factor(c.get("attribution", {}).get("shares", {}))]) + " |")
    return "\n".join(lines)


def write_markdown(matrix: dict[str, Any], path: Path) -> None:
    w = matrix["workload"]
    overrides = ", ".join(matrix.get("overrides") or []) or "none"
    text = (f"# Lock-in, workload {w['name']} (batch {w['batch']}, context {w['ctx']}, {w['phase']})\n\n"
            f"Predicted by {matrix['model']}; what-if overrides: {overrides}. "
            "'largest factor' = the feature with the largest mean Shapley share of log LI, as the factor "
            "exp(share) it multiplies LI by.\n\n" + li_table(matrix) + "\n")
    path.write_text(text)
