"""`retarget predict`: resolve the model and the target, run `predict`, print it (rich) or its JSON."""

from __future__ import annotations

import json
import math
from typing import Any

from rich.console import Console
from rich.table import Table

from retarget.errors import RetargetError
from retarget.hw_profiles import HardwareProfile, load_profile, parse_overrides
from retarget.models.inspect import resolve_spec
from retarget.models.spec import ModelSpec
from retarget.perf.confidence import confidence
from retarget.perf.efficiency import default_engine, engine_and_parallelism
from retarget.perf.model import DEVICE_COUNTS, check_context, predict, smallest_fit
from retarget.perf.prediction import Prediction
from retarget.perf.recipes import NATIVE, PredictFormats, resolve_recipe
from retarget.perf.scheduler import batch_limits
from retarget.perf.serving import closed_loop


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



def _does_not_fit(spec: ModelSpec, profile: HardwareProfile, pred: Prediction, formats: PredictFormats,
                  kv: str) -> RetargetError:
    """The error for a configuration that does not fit: no speed, the smallest device count and recipe that do."""
    w, mem = pred.workload, pred.memory
    tries = {formats.recipe: formats.kwargs(kv)}
    for name in ("fp8", "int4-g128-asym"):
        tries.setdefault(name, resolve_recipe(name, spec).kwargs(kv))
    fit = smallest_fit(spec, profile, tries, batch=w["batch"], ctx=w["ctx"], prompt_len=w["prompt_len"],
                       engine=w["engine"], parallelism=w["parallelism"])
    where = ("fits with " + ", ".join(f"--devices {d} --recipe {r}" for r, d in sorted(fit.items(), key=lambda x: x[1]))
             if fit else f"nothing tried fits on {DEVICE_COUNTS[-1]} devices")
    return RetargetError(f"{spec.name} with recipe {formats.recipe} needs {mem.per_device_gb:,.1f} GB per device on "
                         f"{w['devices']} x {profile.id} ({mem.usable_per_device_gb:,.1f} GB usable): no speed is "
                         f"predicted for a configuration that does not fit; {where}", field="--devices")


def _serving(spec: ModelSpec, profile: HardwareProfile, kwargs: dict[str, Any], workload: dict[str, Any],
             output_len: int) -> dict[str, float]:
    """The closed-loop serving run of WORKLOAD's batch as clients (retarget.perf.serving), as printed numbers: the
    engine's served limits on PROFILE apply where it states them (retarget.perf.scheduler), so clients beyond its
    cap on running sequences wait in its queue."""
    fixed = {k: v for k, v in workload.items() if k not in ("batch", "ctx", "prompt_len")}
    clients = workload.get("batch", 1)
    limits = batch_limits(workload.get("engine", "tuned"), profile, "serve")
    if limits and "tokens_per_forward" not in fixed:
        fixed["tokens_per_forward"] = limits.tokens_per_forward
    running = min(clients, limits.max_seqs) if limits and limits.max_seqs else clients
    point = closed_loop(spec, profile, concurrency=running, output_len=output_len,
                        input_len=workload.get("prompt_len", 4096), **kwargs, **fixed)
    return {"clients": clients, "running": running, "output_len": output_len, "ttft_ms": point.ttft_s * 1e3,
            "tpot_ms": point.tpot_s * 1e3, "output_tokens_s": point.output_tokens_s}


def show_prediction(model: str, target: str, overrides: list[str], as_json: bool, console: Console, *,
                    recipe: str = NATIVE, kv_format: str = "bf16", output_len: int | None = None,
                    **workload: Any) -> Prediction:
    """Predict MODEL on TARGET (with `--set` OVERRIDES) at RECIPE (see retarget.perf.recipes) for WORKLOAD
    (predict's keyword arguments) and print it; with OUTPUT_LEN also a closed-loop serving run of the batch as
    clients. An engine or parallelism left as None is the device family's (efficiency.engine_and_parallelism).
    A context beyond the model's maximum, or a configuration that does not fit in memory, is an error
    naming what to change."""
    spec = resolve_spec(model)
    profile = load_profile(target, parse_overrides(overrides))
    check_context(spec, workload.get("ctx", 4096), workload.get("prompt_len", 4096))
    formats = resolve_recipe(recipe, spec)
    engine, parallelism = engine_and_parallelism(profile.family, workload.get("engine"), workload.get("parallelism"))
    workload = {**workload, "engine": engine, "parallelism": parallelism}
    pred = predict(spec, profile, **formats.kwargs(kv_format), **workload)
    if not pred.memory.fits:
        raise _does_not_fit(spec, profile, pred, formats, kv_format)
    conf = confidence(profile, engine)
    serving = _serving(spec, profile, formats.kwargs(kv_format), workload, output_len) if output_len else None
    if as_json:
        extra = {"serving": serving} if serving else {}
        console.print_json(json.dumps(_json_safe({**pred.to_dict(), "recipe": formats.recipe, "confidence": conf,
                                                  **extra})))
        return pred
    for table in prediction_tables(pred):
        console.print(table)
    if serving:
        queued = (f", {serving['running']} of them run at once (the engine's cap), the rest queue"
                  if serving["running"] < serving["clients"] else "")
        console.print(f"Serving {serving['clients']} clients in a closed loop{queued} "
                      f"({workload.get('prompt_len', 4096)} "
                      f"prompt + {output_len} output tokens each; predicted): TTFT {serving['ttft_ms']:,.1f} ms in the "
                      f"steady state (more when prompts arrive in bursts), "
                      f"TPOT {serving['tpot_ms']:,.2f} ms, {serving['output_tokens_s']:,.0f} output tokens/s",
                      highlight=False)
    chosen = "" if engine != default_engine(profile.family) else f" ({profile.family}'s default; --engine for another)"
    console.print(f"Recipe: {formats.recipe}. Engine: {engine}{chosen}. Confidence: {conf['summary']}",
                  highlight=False)
    console.print("Assumptions: " + "; ".join(pred.assumptions), highlight=False)
    return pred
