"""`retarget validate MEASUREMENTS.csv`: predict every measured row the model can express, report the errors.

Rows are read with the columns of the shared measured_benchmarks.csv. validation_map.yaml says which profile,
spec, number format and engine each label means; a row that cannot be expressed is skipped with its reason.
Errors are (predicted - measured) / measured; MAPE is the mean of their absolute values, MdAPE the median.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import math
import os
import re
import statistics
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from retarget.errors import RetargetError
from retarget.hw_profiles import HardwareProfile, load_profile
from retarget.inputs import check_regular_file, number, read_text
from retarget.models.spec import ModelSpec
from retarget.outdir import check_output_file, write_files
from retarget.perf.efficiency import efficiency, kernel_attributes
from retarget.perf.labels import match_hardware, model_key
from retarget.perf.model import (
    cache_bytes_per_device,
    generation_tokens_s,
    kv_pool_bytes,
    placed_bytes,
    predict,
    resolve_formats,
)
from retarget.perf.scheduler import batch_limits
from retarget.perf.serving import closed_loop

HERE = Path(__file__).parent
COLUMNS = (
    "source_url",
    "model",
    "quant_format",
    "hardware",
    "num_devices",
    "engine",
    "phase",
    "batch_size",
    "input_len",
    "output_len",
    "metric",
    "value",
)
HIGH_CONFIDENCE = "all, excl. low-confidence"
OUT_OF_SAMPLE = "all, out of sample"
LEAVE_SOURCE_OUT = "all, leave one source out"
PHASE_GROUPS = {"decode": "decode", "prefill": "prefill", "offline-throughput": "throughput"}
# an engine rule's optional substrings (validation_map.yaml `engines`) and the row column each must occur in
ENGINE_RULE_FIELDS = {"label": "engine", "hardware": "hardware", "source": "source_url", "quant": "quant_format"}
# a run at a fixed client concurrency (`--max-concurrency C` of vllm bench serve / SGLang's bench_serving): its
# metrics are closed-loop means (retarget.perf.serving), not the fixed batch's
SERVING_KINDS = {"tpot": "serve_tpot", "generate": "serve_generate"}
FRESH = "fresh"  # the split of every row of a held-out file (validation_map.yaml `split` `held_out_files`)


@cache
def _map() -> dict[str, Any]:
    return yaml.safe_load((HERE / "validation_map.yaml").read_text())


@cache
def _extra_models() -> dict[str, Any]:
    return yaml.safe_load((HERE / "validation_models.yaml").read_text())


@cache
def model_spec(name: str) -> ModelSpec:
    """A registry spec, or one of validation_models.yaml (measured models outside the registry)."""
    extra = _extra_models()
    if name in extra:
        return ModelSpec.from_hf_config(extra[name]["config"], name, source=extra[name]["source_url"])
    from retarget.models.registry import get_spec

    return get_spec(name)


@dataclass
class RowPlan:
    """How one measured row is predicted."""

    spec: ModelSpec
    profile: HardwareProfile
    kind: str  # generate | step | tpot | prefill_tps | ttft | offline | serve_tpot | serve_generate
    batch: int
    input_len: int
    output_len: int
    kwargs: dict[str, Any]
    max_batch: int = 0  # offline runs: sequences at once at most, before the KV pool's limit
    max_seqs: int | None = None  # the scheduler's cap on sequences at once (None: the engine's `max_num_seqs`)
    cached_prompt: bool = False  # the timed runs find every prompt in the prefix cache (engine rule `prompt_cache_hit`)
    requests: int | None = None  # prompts an offline or closed-loop serving run sends in all (None: not stated)
    replicas: int = 1  # serving replicas behind one load balancer, each on devices / replicas (serve_* kinds)


@dataclass
class RowResult:
    """One row of the validation table."""

    index: int
    model: str
    hardware: str
    engine: str
    quant: str
    phase: str
    metric: str
    measured: float
    workload: str
    predicted: float | None = None
    error_pct: float | None = None
    split: str = ""
    profile: str = ""
    skipped: str = ""
    outlier: str = ""
    low_confidence: bool = False  # the source's notes flag the row low-confidence
    explanation: str = ""  # why the row misses, where validation_map.yaml `explanations` says
    details: dict[str, Any] = field(default_factory=dict)


def _int(text: str) -> int | None:
    return int(text) if re.fullmatch(r"\d{1,9}", text.strip()) else None  # bounded: never a 400-digit int


def _first(rules: list[dict[str, Any]], test: Any) -> dict[str, Any] | None:
    return next((r for r in rules if test(r)), None)


def _hardware(label: str) -> str:
    """Profile id of a hardware LABEL (validation_map.yaml, then aliases), or a RetargetError naming the fix."""
    exact = _map()["hardware"].get(label)
    found = exact or match_hardware(label)
    if isinstance(found, list):
        raise RetargetError(f"hardware label is ambiguous ({' or '.join(found)}): map it in validation_map.yaml "
                            "`hardware`")
    if found is None:
        raise RetargetError("no hardware profile matches this label: add a profile YAML to "
                            "retarget/hw_profiles/profiles or map the label in validation_map.yaml `hardware`")
    return found


def _model(label: str) -> str:
    """Spec name of a model LABEL (validation_map.yaml, then registry / validation_models.yaml aliases)."""
    exact = _map()["models"].get(label)
    if exact:
        return exact
    from retarget.models.registry import registry_entries

    key = model_key(label)
    names = {model_key(n): n for n in _extra_models()}
    names |= {model_key(k): e.name for e in registry_entries().values() for k in (e.name, e.hf_id)}
    if key not in names:
        raise RetargetError("model label not mapped: add it to validation_map.yaml `models` (a registry name) or "
                            "its config.json fields to validation_models.yaml")
    return names[key]


def _lengths(row: dict[str, str]) -> tuple[int | None, int | None]:
    """Input and output lengths: the fixed columns, else the optional mean_input_len / mean_output_len."""
    out = _int(row["output_len"]) if row["output_len"].strip() not in ("-", "") else 0
    inp = _int(row["input_len"])
    return (inp if inp is not None else _int(row.get("mean_input_len") or ""),
            out if out is not None else _int(row.get("mean_output_len") or ""))


def _memoised_rows(fn: Any) -> Any:
    """Cache FN(row) per row content (the columns it reads): a repeated row is planned once per run."""
    memo: dict[tuple[str, ...], Any] = {}

    @functools.wraps(fn)
    def wrapper(row: dict[str, str]) -> RowPlan | str:
        key = (*(row[c] for c in COLUMNS), row.get("mean_input_len"), row.get("mean_output_len"))
        if key not in memo:
            if len(memo) >= 100_000:
                memo.clear()
            memo[key] = fn(row)
        return memo[key]

    return wrapper


def _prefixes(rule: dict[str, Any]) -> str | tuple[str, ...]:
    """An engine rule's `prefix`: one label start, or a list of alternatives."""
    prefix = rule["prefix"]
    return tuple(prefix) if isinstance(prefix, list) else prefix


@_memoised_rows
def plan_row(row: dict[str, str]) -> RowPlan | str:
    """The prediction plan for ROW, or the reason it cannot be expressed (one a user can act on)."""
    plan = _plan(row)
    return plan if isinstance(plan, str) else _with_batch_limits(plan, row["engine"])


def _with_batch_limits(plan: RowPlan, label: str) -> RowPlan:
    """PLAN under its scheduler's limits: the sequences at once and tokens per forward its run states
    (--max-num-seqs, --max-num-batched-tokens in LABEL), else its engine's defaults on the device for a served or
    an offline run (scheduler.batch_limits)."""
    usage = "serve" if plan.kind in SERVING_KINDS.values() else "offline"
    limits = batch_limits(plan.kwargs["engine"], plan.profile, usage)
    stated = re.search(r"max[-_]num[-_]seqs[ =](\d{1,6})\b", label)
    max_seqs = int(stated.group(1)) if stated else limits.max_seqs if limits else None
    kwargs = dict(plan.kwargs)
    if limits and "tokens_per_forward" not in kwargs:
        kwargs["tokens_per_forward"] = limits.tokens_per_forward
    return replace(plan, kwargs=kwargs, max_seqs=max_seqs,
                   max_batch=max_seqs if max_seqs and plan.kind == "offline" else plan.max_batch)


def _fewer_threads_than_cores(label: str, profile: HardwareProfile, devices: int) -> str:
    """Why a CPU run whose engine LABEL states fewer threads ('8 threads') than the cores of its DEVICES x PROFILE is
    not predicted, or '' (no thread count stated, or a profile without a core count: accelerators)."""
    stated = re.search(r"\b(\d{1,4}) threads\b", label)
    if not stated or not profile.cores or int(stated.group(1)) >= profile.cores * devices:
        return ""
    return (f"the run uses {stated.group(1)} threads of {profile.cores * devices} cores, but the {profile.id} profile "
            "describes the whole chip: on fewer threads than cores a run reaches neither its compute peak nor, on few "
            "cores, its memory bandwidth; not predicted (a run on every core is)")


def _plan(row: dict[str, str]) -> RowPlan | str:
    m = _map()
    try:
        profile_id, model_name = _hardware(row["hardware"]), _model(row["model"])
    except RetargetError as err:
        return str(err)
    fmt = _first(m["formats"], lambda r: re.search(r["pattern"], row["quant_format"], re.I))
    if fmt is None:
        return f"quant format {row['quant_format']!r} not mapped"
    eng = _first(m["engines"], lambda r: row["engine"].startswith(_prefixes(r)) and _fields_match(
        {ENGINE_RULE_FIELDS[k]: v for k, v in r.items() if k in ENGINE_RULE_FIELDS}, row))
    if "skip" in eng:
        return eng["skip"]
    devices = _int(row["num_devices"])
    if not devices:
        return "device count not a number"
    fleet = re.search(r"\b([1-9]\d{0,2}) replicas x ", row["engine"])  # data-parallel copies of the whole deployment
    replicas = int(fleet.group(1)) if fleet else 1
    if devices % replicas:
        return f"{devices} devices do not split into {replicas} equal replicas"
    devices //= replicas
    kwargs = dict(
        devices=devices,
        weight_format=fmt["weights"],
        kv_format="fp8" if "--kv-cache-dtype fp8" in row["engine"] else eng.get("kv", fmt["kv"]),  # a stated flag wins
        expert_format=fmt.get("experts"),
        attention_format=fmt.get("attention"),
        engine=eng["engine"],
        parallelism=eng["parallelism"],
    )
    # the run's stated tokens per forward: llama.cpp's -ub, vLLM's --max-num-batched-tokens
    if budget := re.search(r"(?:-ub|max[-_]num[-_]batched[-_]tokens)[ =](\d{1,7})\b", row["engine"]):
        kwargs["tokens_per_forward"] = int(budget.group(1))
    stages = re.search(r"\b(?:TP|D?EP) ?\d{1,4} ?x ?PP ?(\d{1,3})\b", row["engine"])  # e.g. "TP8 x PP2"
    if stages and int(stages.group(1)) > 1 and eng["parallelism"] != "pp":  # pipeline stages of a TP/EP group each
        if devices % int(stages.group(1)):
            return f"{devices} devices do not split into {stages.group(1)} pipeline stages"
        kwargs["stages"] = int(stages.group(1))
    spec, profile = model_spec(model_name), load_profile(profile_id)
    if few_threads := _fewer_threads_than_cores(row["engine"], profile, devices):
        return few_threads
    phase, metric, batch = row["phase"], row["metric"], _int(row["batch_size"])
    inp, out = _lengths(row)
    peaks = [src.kind for key, src in profile.provenance.items() if key.startswith("peak_tflops")]
    if phase == "prefill" and peaks and set(peaks) == {"assumed"}:
        return (f"{profile.id} has no published compute peak (its peaks are assumed floors), so a compute-bound "
                "prefill is not predicted: set a measured peak with --set fp16=...")
    if phase == "decode" and (
        step := re.fullmatch(r"(\d{1,9})(?: context \+ (\d{1,9}))? \(([1-9]\d{0,8}) tokens?/step\)",
                             row["input_len"].strip())
    ):
        first, second, per_step = step.groups()
        past, new = (int(first), int(second)) if second else (0, int(first))
        return RowPlan(spec, profile, "step", int(per_step), past + new // 2, 0, kwargs)
    if inp is None or out is None:
        return ("input/output lengths vary (dataset or production mix): add mean_input_len and mean_output_len "
                "columns to predict it at the mean lengths")
    if phase == "offline-throughput" and row["batch_size"] == "max" and metric == "output tokens/s":
        prompts = re.search(r"\b(\d{1,7}) prompts\b", row["engine"])  # the run's stated prompt count
        return RowPlan(spec, profile, "offline", 0, inp, out, kwargs, max_batch=eng.get("max_batch", 256),
                       requests=int(prompts.group(1)) if prompts else None)
    if not batch:
        return f"batch {row['batch_size']!r} not a number: the model predicts fixed batch sizes (state the batch)"
    kinds = {
        ("decode", "tokens/s"): "generate",
        ("decode", "output tokens/s"): "generate",
        ("decode", "TPOT ms"): "tpot",
        ("decode", "ms per token"): "tpot",
        ("prefill", "tokens/s"): "prefill_tps",
        ("prefill", "TTFT ms"): "ttft",
    }
    if (phase, metric) not in kinds:
        return f"{phase} / {metric} is load-dependent or per-node; the model predicts fixed batches only"
    serving = re.search(r"--max-concurrency \d", row["engine"])
    if serving and kinds[(phase, metric)] == "ttft":
        return ("the mean TTFT of a serving run at a fixed concurrency depends on how many prompts the server "
                "prefills per step and how they arrive (its token budget, bursts of requests), which no profile "
                "or engine states: not predicted; its TPOT and output throughput are")
    if serving and kinds[(phase, metric)] in SERVING_KINDS:
        sent = re.search(r"(\d{1,7}) prompts at --max-concurrency", row["engine"])
        return RowPlan(spec, profile, SERVING_KINDS[kinds[(phase, metric)]], batch, inp, out, kwargs,
                       requests=int(sent.group(1)) if sent else None, replicas=replicas)
    if replicas > 1:
        return ("replicas behind a load balancer are predicted for closed-loop serving runs only (state the "
                "client's --max-concurrency); predict one replica's fixed batch on its own devices instead")
    return RowPlan(spec, profile, kinds[(phase, metric)], batch, inp, out, kwargs,
                   cached_prompt=bool(eng.get("prompt_cache_hit")))


def max_batch(plan: RowPlan) -> int:
    """Sequences whose input+output tokens the engine's KV pool holds (model.kv_pool_bytes), capped at its
    batch limit."""
    k = plan.kwargs
    fmts = resolve_formats(k["weight_format"], k["kv_format"], k["expert_format"], k["attention_format"])
    devices = k["devices"]
    stages = k.get("stages", 1)
    per_seq = cache_bytes_per_device(plan.spec, plan.input_len + plan.output_len, fmts["kv"].bytes, devices,
                                     k["parallelism"], stages)
    whole, split = placed_bytes(plan.spec, fmts, plan.max_batch, plan.input_len, devices, k["parallelism"], stages)
    pool = kv_pool_bytes(plan.profile.memory_bytes, whole + split / devices,
                         efficiency(plan.profile.family, k["engine"]))
    return max(1, int(min(plan.max_batch, pool // per_seq)))


def admitted(plan: RowPlan, batch: int) -> int:
    """Sequences the engine runs at once out of BATCH: all of them, at most its scheduler's cap (the plan's
    `max_seqs`, else kernel attribute `max_num_seqs`), and, where it admits only what the KV pool holds
    (`admits_what_fits`), that many; the rest wait in its queue."""
    kernels = kernel_attributes(plan.kwargs["engine"])
    batch = min(batch, plan.max_seqs or int(kernels.get("max_num_seqs", batch)))
    if kernels.get("admits_what_fits"):
        return max_batch(replace(plan, max_batch=batch))
    return batch


def _memoised(fn: Any) -> Any:
    """Cache FN(plan, engine_factors) per plan and factors: repeated rows and repeated calibration trials
    cost one prediction each (the cache holds the plan's spec and profile, so their ids stay unique)."""
    memo: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    @functools.wraps(fn)
    def wrapper(plan: RowPlan, engine_factors: dict[str, float] | None = None) -> tuple[float, dict[str, Any]]:
        key = (id(plan.spec), id(plan.profile), plan.kind, plan.batch, plan.input_len, plan.output_len,
               plan.max_batch, plan.max_seqs, plan.cached_prompt, plan.requests, plan.replicas, *plan.kwargs.values(),
               *(engine_factors or {}).items())
        if key not in memo:
            if len(memo) >= 100_000:
                memo.clear()
            memo[key] = (*fn(plan, engine_factors), plan.spec, plan.profile)
        value, details = memo[key][:2]
        return value, dict(details)

    return wrapper


@_memoised
def predict_plan(
    plan: RowPlan, engine_factors: dict[str, float] | None = None
) -> tuple[float, dict[str, Any]]:
    """Predicted value of the row's metric, and the workload it was computed at."""
    k = {**plan.kwargs, "engine_factors": engine_factors}
    if plan.kind in ("generate", "offline"):
        if plan.kind == "offline":  # every prompt handed over at once: waves of what the KV pool holds
            fits = max_batch(plan)
            batch = plan.requests or fits
        else:
            batch = plan.batch
            fits = admitted(plan, batch)
        full, rest = divmod(batch, fits)
        seconds = sum(waves * size * plan.output_len / generation_tokens_s(
            plan.spec, plan.profile, batch=size, input_len=plan.input_len, output_len=plan.output_len,
            cached_prompt=plan.cached_prompt, **k) for waves, size in ((full, fits), (1, rest)) if waves and size)
        return batch * plan.output_len / seconds, {"batch": batch, "input_len": plan.input_len,
                                                   "output_len": plan.output_len, "concurrent": fits}
    if plan.kind in SERVING_KINDS.values():
        busy = min(plan.replicas, plan.batch)  # the load balancer spreads the clients evenly over the replicas
        fits = admitted(plan, math.ceil(plan.batch / busy))
        point = closed_loop(plan.spec, plan.profile, concurrency=fits, input_len=plan.input_len,
                            output_len=plan.output_len,
                            requests=plan.requests and math.ceil(plan.requests / busy), **k)
        value = {"serve_tpot": point.tpot_s * 1e3, "serve_generate": busy * point.output_tokens_s}
        return value[plan.kind], {"concurrency": plan.batch, "concurrent": fits, "input_len": plan.input_len,
                                  "output_len": plan.output_len, "requests": plan.requests,
                                  "replicas": plan.replicas}
    if plan.kind == "step":  # llama.cpp ubatch rows: per_step tokens of one sequence per forward pass
        pred = predict(
            plan.spec, plan.profile, batch=plan.batch, ctx=max(plan.input_len, 1), prompt_len=1, **k
        )
        return plan.batch / pred.tpot_s, {"tokens_per_step": plan.batch, "mean_ctx": plan.input_len}
    ctx = max(1, plan.input_len + plan.output_len // 2)
    pred = predict(plan.spec, plan.profile, batch=plan.batch, ctx=ctx, prompt_len=max(plan.input_len, 1), **k)
    value = {"tpot": pred.tpot_s * 1e3, "ttft": pred.ttft_s * 1e3, "prefill_tps": pred.prefill_tokens_s}
    return value[plan.kind], {
        "batch": plan.batch,
        "ctx": ctx,
        "prompt_len": plan.input_len,
        "bottleneck": pred.decode.bottleneck if plan.kind == "tpot" else pred.prefill.bottleneck,
    }


MAX_FIELD_CHARS = 4096  # one CSV cell


@cache
def _read_rows(path: Path, mtime_ns: int, size: int) -> tuple[dict[str, str], ...]:
    text = read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise RetargetError("missing column", source=str(path), field=missing[0])
        rows = []
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                raise RetargetError("wrong number of cells", source=str(path), field=f"line {reader.line_num}")
            if any(len(v) > MAX_FIELD_CHARS for v in row.values()):
                raise RetargetError(f"a cell longer than {MAX_FIELD_CHARS} characters", source=str(path),
                                    field=f"line {reader.line_num}")
            rows.append(row)
    except csv.Error as err:
        raise RetargetError(f"not valid CSV ({err})", source=str(path), field=f"line {reader.line_num}") from None
    return tuple(rows)


def read_measurements(path: Path) -> list[dict[str, str]]:
    """Rows of a measurements CSV (a bounded UTF-8 regular file, every row with every cell); a missing
    column or a malformed line names the file and the column or line. Read once per run however often asked."""
    size = check_regular_file(Path(path))
    return [dict(row) for row in _read_rows(Path(path), os.stat(path).st_mtime_ns, size)]


def measured_value(row: dict[str, str]) -> float | None:
    """The row's measured `value` when it is a finite number in [1e-6, 1e12], else None."""
    try:
        return float(number(row["value"], source=None, field="value", lo=1e-6, hi=1e12))
    except RetargetError:
        return None


def _fields_match(entry: dict[str, Any], row: dict[str, str], ignore: tuple[str, ...] = ()) -> bool:
    """Whether every field of ENTRY (but IGNORE) occurs in ROW's field of that name (substring match; a list:
    each of its items occurs)."""
    return all(all(str(item) in row[k] for item in (v if isinstance(v, list) else [v]))
               for k, v in entry.items() if k not in ignore)


def is_outlier(row: dict[str, str]) -> str:
    """Why ROW is left out of the scores: the reason of the first validation_map.yaml `outliers` entry whose
    fields all occur in ROW's and, where the entry names a `value`, whose value is ROW's."""
    for o in _map()["outliers"]:
        if _fields_match(o, row, ("reason", "value")) and (
            "value" not in o or abs(float(row["value"]) - o["value"]) < 1e-6
        ):
            return " ".join(o["reason"].split())
    return ""


def explanation(row: dict[str, str]) -> str:
    """The first validation_map.yaml `explanations` entry whose fields all occur in ROW's."""
    for e in _map().get("explanations", []):
        if _fields_match(e, row, ("why",)):
            return " ".join(e["why"].split())
    return ""


def calibration_rule(engine: str) -> dict[str, Any] | None:
    """The calibration rule of a fitted ENGINE (validation_map.yaml `calibration`), None for a prior-only one."""
    return _map()["calibration"].get(engine)


def fitted_engines() -> list[str]:
    """Engines whose factors are fitted (they have a rule in validation_map.yaml `calibration`)."""
    return list(_map()["calibration"])


def fitted_as(engine: str) -> str | None:
    """The fitted engine whose factors ENGINE's rows are fitted with: ENGINE, or the fitted engine whose
    calibration rule lists it in `with_rows_of` (an engine of its own only by a kernel attribute, sharing every
    factor); None for a prior-only engine."""
    rules = _map()["calibration"]
    if engine in rules:
        return engine
    return next((name for name, rule in rules.items() if engine in rule.get("with_rows_of", [])), None)


def split_of(row: dict[str, str]) -> str:
    """`evaluation` or `calibration` by validation_map.yaml `split`: the SHA-256 of the row's key columns,
    divisible by `evaluation_modulus` or not. Fixed before fitting; independent of the measured value."""
    rule = _map()["split"]
    key = "|".join(row.get(c, "").strip() for c in rule["key_columns"])
    digest = int(hashlib.sha256(key.encode()).hexdigest(), 16)
    return "evaluation" if digest % rule["evaluation_modulus"] == 0 else "calibration"


def held_out_file(path: Path) -> bool:
    """Whether PATH is held out whole (validation_map.yaml `split` `held_out_files`): its rows are all `fresh`,
    never fitted on nor used in cross-validation."""
    return Path(path).name in _map()["split"].get("held_out_files", [])


def source_of(row: dict[str, str]) -> str:
    """The row's source for leave-one-source-out cross-validation: a GitHub owner/repo, else host and path."""
    url = re.sub(r"^https?://(www\.)?", "", row["source_url"].strip())
    parts = url.split("/")
    if parts[0] == "github.com" and len(parts) >= 3:
        return "/".join(parts[1:3])
    return url.split("?")[0].split("#")[0].rstrip("/")


def in_calibration_split(row: dict[str, str], plan: RowPlan) -> bool:
    """Whether ROW is one the factors of its engine are fitted on: the engine is fitted (`fitted_as`) and the
    row falls in the calibration split (`split_of`)."""
    return fitted_as(plan.kwargs["engine"]) is not None and split_of(row) == "calibration"


def validate_rows(rows: list[dict[str, str]], held_out: bool = False) -> list[RowResult]:
    """Predict every row it can with the factors of efficiency.yaml; HELD_OUT marks every row `fresh`."""
    results = []
    for i, row in enumerate(rows):
        measured = measured_value(row) or 0.0
        res = RowResult(
            i,
            row["model"],
            row["hardware"],
            row["engine"],
            row["quant_format"],
            row["phase"],
            row["metric"],
            measured,
            f"b={row['batch_size']} in={row['input_len']} out={row['output_len']} x{row['num_devices']}",
        )
        plan = plan_row(row) if measured else "measured value is not a positive number in [1e-6, 1e12]"
        if isinstance(plan, str):
            res.skipped = plan
        else:
            res.predicted, res.details = predict_plan(plan)
            res.error_pct = (res.predicted - measured) / measured * 100
            res.profile = plan.profile.id
            res.split = FRESH if held_out else split_of(row)
            res.outlier = is_outlier(row)
            res.explanation = explanation(row)
            res.low_confidence = bool(re.search(r"low[- ]confidence", row.get("notes", ""), re.I))
        results.append(res)
    return results


def summarise(results: list[RowResult], cv_errors: dict[int, float] | None = None) -> list[dict[str, Any]]:
    """MAPE / MdAPE per (split, phase group) and overall, outliers excluded. `all, out of sample` repeats
    `all` with each calibration row's error taken from the leave-one-source-out fold that held its source
    out (CV_ERRORS: row index -> absolute % error); `all, leave one source out` takes every row's error
    from that fold; a last split repeats `all` without the rows whose source notes say low confidence.
    They are shown beside the headline, never instead of it."""
    scored = [r for r in results if r.error_pct is not None and not r.outlier]
    groups: dict[tuple[str, str], list[float]] = {}

    def add(split: str, r: RowResult, error: float) -> None:
        for ph in (PHASE_GROUPS.get(r.phase, r.phase), "overall"):
            groups.setdefault((split, ph), []).append(error)

    for r in scored:
        error = abs(r.error_pct)  # type: ignore[arg-type]
        for split in (r.split, "all") if r.low_confidence else (r.split, "all", HIGH_CONFIDENCE):
            add(split, r, error)
        if cv_errors is not None and r.split != FRESH:  # rows of unfitted engines are out of sample as they stand
            add(OUT_OF_SAMPLE, r, cv_errors.get(r.index, error) if r.split == "calibration" else error)
            add(LEAVE_SOURCE_OUT, r, cv_errors.get(r.index, error))
    if not any(r.low_confidence for r in scored):
        groups = {k: v for k, v in groups.items() if k[0] != HIGH_CONFIDENCE}
    order = {"calibration": 0, "evaluation": 1, FRESH: 2, "all": 3, OUT_OF_SAMPLE: 4, LEAVE_SOURCE_OUT: 5,
             HIGH_CONFIDENCE: 6}
    return [
        {
            "split": s,
            "phase": p,
            "rows": len(v),
            "mape_pct": statistics.fmean(v),
            "mdape_pct": statistics.median(v),
        }
        for (s, p), v in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1]))
    ]


def report_dict(path: Path, results: list[RowResult], cross_validation: list[dict[str, Any]]) -> dict[str, Any]:
    """JSON-able report: per-row results (measured with source URL, predicted), the summary and the
    cross-validation folds."""
    cv_errors = {
        i: e
        for fold in cross_validation
        for (file, i), e in zip(fold["rows"], fold["abs_errors_pct"], strict=True)
        if file == str(path)
    }
    return {
        "measurements": str(path),
        "rows": [dict(vars(r)) for r in results],  # shallow: asdict deep-copies every row
        "summary": summarise(results, cv_errors),
        "cross_validation": cross_validation,
        "efficiency_file": str(HERE / "efficiency.yaml"),
    }


def run(path: Path, json_out: Path | None = None, markdown_out: Path | None = None,
        cv_paths: list[Path] | None = None, cross_validation: list[dict[str, Any]] | None = None
        ) -> dict[str, Any]:
    """Validate PATH; optionally write the JSON report and the markdown table. Returns the report. The
    leave-one-source-out cross-validation refits on the calibration rows of CV_PATHS (default: PATH), unless
    CROSS_VALIDATION (`calibrate.cross_validate` of those files, computed once for several reports) is given."""
    from retarget.perf.calibrate import cross_validate
    from retarget.perf.validate_report import to_markdown

    outputs = {Path(p): option for p, option in ((json_out, "--json"), (markdown_out, "--markdown")) if p}
    for out, option in outputs.items():
        check_output_file(out, option)
        if out.exists() and out.resolve() == Path(path).resolve():
            raise RetargetError("would overwrite the measurements", source=str(out), field=option)
    results = validate_rows(read_measurements(path), held_out_file(path))
    folds = cross_validation if cross_validation is not None else cross_validate(cv_paths or [path])
    report = report_dict(path, results, folds)
    texts = {"--json": lambda: json.dumps(report, indent=1, default=str), "--markdown": lambda: to_markdown(report)}
    write_files({out: texts[option]() for out, option in outputs.items()}, outputs)
    return report
