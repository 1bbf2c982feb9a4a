"""Fleet result as files: fleet.json (the source of truth) and fleet.csv (one row per plan, provenance columns;
accuracy_cost, accuracy_provenance and accuracy_source for the conversions' accuracy price)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from retarget.fleet.plans import cost_summary

# CSV column -> (plan key, provenance of that column)
NUMBERS: dict[str, tuple[str, str]] = {
    "output_tokens_s": ("output_tokens_s", "predicted"), "tokens_s": ("tokens_s", "predicted"),
    "ttft_s": ("ttft_s", "predicted"), "rental_usd_per_mtok": ("rental_usd_per_mtok", "predicted"),
    "purchase_usd_per_mtok": ("purchase_usd_per_mtok", "predicted"), "kwh_per_mtok": ("kwh_per_mtok", "predicted"),
    "lock_in_index": ("lock_in_index", "predicted"), "quality_mmlu_pro": ("quality", "published"),
}
TEXT = ("model", "origin", "developer", "license", "device", "vendor", "bloc", "export_control",
        "devices_per_replica", "replicas", "devices", "weight_format", "expert_format", "kv_format", "recipe",
        "home_device", "validated_device")


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, default=str))


def csv_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per plan: its text fields, then each number followed by its provenance."""
    rows = []
    for p in result["plans"]:
        row = {k: p[k] for k in TEXT}
        row.update({f"accuracy_{k}": v for k, v in cost_summary(p["accuracy_cost"]).items()})
        for col, (key, kind) in NUMBERS.items():
            v = (p[key] or {}).get("value")
            row[col] = "" if v is None else f"{v:.6g}"
            row[f"{col}_provenance"] = kind if v is not None else "unknown"
        row["quality_source"] = (p["quality"] or {}).get("url", "")
        rows.append(row)
    return rows


def write_csv(result: dict[str, Any], path: Path) -> None:
    rows = csv_rows(result)
    fields = list(rows[0]) if rows else [*TEXT]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
