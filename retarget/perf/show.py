"""`retarget predict`: resolve the model and the target, run `predict`, print it (rich) or its JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from retarget.hw_profiles import load_profile, parse_overrides
from retarget.inputs import load_json, ref_path
from retarget.models.checks import check_config
from retarget.models.spec import ModelSpec
from retarget.perf.model import predict
from retarget.perf.prediction import Prediction


def resolve_spec(model: str) -> ModelSpec:
    """A registry name / HF id, a config.json file, or a folder holding one."""
    path = ref_path(model, "MODEL") or Path(model)
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json":
        config = check_config(load_json(path), str(path))
        return ModelSpec.from_hf_config(config, path.parent.name, source=str(path))
    from retarget.models.registry import get_spec

    return get_spec(model)


def prediction_tables(pred: Prediction) -> list[Table]:
    """Headline numbers, then per-op-class time share and bound for each phase."""
    w = pred.workload
    head = Table(
        title=f"{pred.model} on {w['devices']} x {pred.profile} (predicted; {w['weight_format']} weights)"
    )
    head.add_column("quantity")
    head.add_column("value", justify="right")
    mem = pred.memory
    rows = [
        (
            "time to first token",
            f"{pred.ttft_s * 1e3:,.1f} ms  (batch {w['batch']} x {w['prompt_len']} tokens)",
        ),
        ("prefill throughput", f"{pred.prefill_tokens_s:,.0f} tokens/s"),
        ("decode step (TPOT)", f"{pred.tpot_s * 1e3:,.2f} ms at {w['ctx']} cached tokens"),
        ("decode throughput", f"{pred.decode_tokens_s:,.1f} tokens/s (batch {w['batch']})"),
        (
            "weights / KV+state / activations",
            f"{mem.weights_gb:,.1f} / {mem.kv_cache_gb:,.2f} / {mem.activations_gb:,.2f} GB",
        ),
        ("per device / usable", f"{mem.per_device_gb:,.1f} / {mem.usable_per_device_gb:,.1f} GB"),
        ("fits", f"{'yes' if mem.fits else 'NO'}; devices needed: {mem.devices_needed}"),
    ]
    for name, value in rows:
        head.add_row(name, value)
    ops = Table(title="Where the time goes (per device)")
    for col in ("phase", "op class", "time ms", "share", "bound", "GFLOP", "GB moved"):
        ops.add_column(col, justify="right" if col[0] in "tsGb" and col != "bound" else "left")
    for name, phase in (("prefill", pred.prefill), ("decode", pred.decode)):
        total = phase.time_s or 1.0
        for op in phase.ops:
            if op.time_s > 0:
                ops.add_row(
                    name,
                    op.op_class,
                    f"{op.time_s * 1e3:,.3f}",
                    f"{op.time_s / total:.0%}",
                    op.bound,
                    f"{op.flops / 1e9:,.1f}",
                    f"{op.bytes / 1e9:,.3f}",
                )
    return [head, ops]


def _json_safe(data: Any) -> Any:
    """DATA with every non-finite float (an unbounded quantity, e.g. the capacity of a device whose memory is
    unknown) as null: JSON has no Infinity."""
    if isinstance(data, dict):
        return {k: _json_safe(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_json_safe(v) for v in data]
    return None if isinstance(data, float) and not math.isfinite(data) else data


def show_prediction(
    model: str, target: str, overrides: list[str], as_json: bool, console: Console, **workload: Any
) -> Prediction:
    """Predict MODEL on TARGET (with `--set` OVERRIDES) for WORKLOAD (predict's keyword arguments); print."""
    pred = predict(resolve_spec(model), load_profile(target, parse_overrides(overrides)), **workload)
    if as_json:
        console.print_json(json.dumps(_json_safe(pred.to_dict())))
        return pred
    for table in prediction_tables(pred):
        console.print(table)
    console.print("Assumptions: " + "; ".join(pred.assumptions), highlight=False)
    return pred
