"""Lock-in matrix as files: lockin.json (the source of truth) and lockin.csv (one row per model x device)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from retarget.lockin.attribution import DEVICE_FEATURES
from retarget.lockin.variants import MODEL_FEATURES

FEATURES = (*MODEL_FEATURES, *DEVICE_FEATURES)


def li_grid(matrix: dict[str, Any]) -> tuple[list[str], list[str], list[list[float | None]]]:
    """(model names, device ids, LI[model][device] with None where it does not run)."""
    devices = [p["id"] for p in matrix["profiles"]]
    models = [m["name"] for m in matrix["models"]]
    grid = [[m["cells"][d]["li"]["value"] for d in devices] for m in matrix["models"]]
    return models, devices, grid


def write_json(matrix: dict[str, Any], path: Path) -> None:
    """Compact JSON: an indented dump takes Python's slow encoder (the file is 2 MB for the full matrix)."""
    path.write_text(json.dumps(matrix, default=str))


def _fmt(x: float | None, spec: str = ".4g") -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def csv_rows(matrix: dict[str, Any]) -> list[dict[str, str]]:
    """One dict per (model, device): LI, shares of log LI, recipe, speed and memory."""
    rows = []
    for m in matrix["models"]:
        for dev, c in m["cells"].items():
            r, a = c["recipe"], c.get("attribution", {})
            mem = r.get("memory", {})
            row = {"model": m["name"], "device": dev, "home": m["home"], "li": _fmt(c["li"]["value"]),
                   "log_li": _fmt(a.get("total"))}
            row |= {f"share_{f}": _fmt(a.get("shares", {}).get(f)) for f in FEATURES}
            row |= {"weight_format": r["weight_format"], "expert_format": r["expert_format"],
                    "kv_format": r["kv_format"], "devices": str(r["devices"]) if r["runs"] else "",
                    "tokens_s_per_device": _fmt(r["tokens_s_per_device"]),
                    "reference_tokens_s_per_device": _fmt(c["reference_recipe"]["tokens_s_per_device"]),
                    "per_device_gb": _fmt(mem.get("per_device_gb")), "recipe": r["describe"],
                    "provenance": "predicted"}
            rows.append(row)
    return rows


def write_csv(matrix: dict[str, Any], path: Path) -> None:
    rows = csv_rows(matrix)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["model"])
        writer.writeheader()
        writer.writerows(rows)
