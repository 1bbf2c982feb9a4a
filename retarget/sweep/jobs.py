"""One sweep job (kind, model, recipe, target, options) and the registry of job kinds that run one.

A kind runs a job into a report (the same report its command writes) and reads one table row out of it.
Rows hold plain numbers; the report keeps each number's provenance.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from retarget.errors import RetargetError


@dataclass(frozen=True)
class Job:
    """One cell of the sweep's grid; `options` are the kind's keyword options (eval_tokens, batch, ...)."""

    kind: str
    model: str
    recipe: str
    target: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """A file name: readable, plus a hash of every field (a changed option is another job)."""
        digest = hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
        readable = re.sub(r"[^A-Za-z0-9._=+-]+", "-", f"{self.model}__{self.recipe}__{self.target}").strip("-")
        return f"{readable[:100]}__{digest}"

    def label(self, axes: list[str]) -> str:
        """Model, recipe, target and the options named in AXES, for people."""
        return " · ".join([self.model, self.recipe, self.target, *(f"{a}={self.options[a]}" for a in axes)])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        return cls(**data)


@dataclass(frozen=True)
class JobKind:
    """How a kind checks a model ref cheaply, runs a job, and reads a table row from the report."""

    check_model: Callable[[str], None]  # RetargetError if the kind cannot take this model ref (cheap)
    run: Callable[[Job, Path | None, Console], dict[str, Any]]  # (job, artifact folder or None, log console)
    row: Callable[[dict[str, Any]], dict[str, Any]]
    options: frozenset[str]  # the options a spec may set for this kind
    provenance: str  # what the rows' numbers are, for the table's header
    summary: tuple[str, ...]  # the row's columns the terminal shows (the files have all)
    pareto: tuple[str, str] | None = None  # (speed column, error column) of the Pareto plot


KINDS: dict[str, JobKind] = {}


def job_kind(name: str) -> JobKind:
    if name not in KINDS:
        raise RetargetError(f"unknown job kind {name!r}; known: {', '.join(KINDS)}", field="kind")
    return KINDS[name]


def _check_model_ref(model: str) -> None:
    from retarget.models.load import check_model_ref

    check_model_ref(model)


def _run_compile(job: Job, artifacts: Path | None, console: Console) -> dict[str, Any]:
    """`retarget compile` of the job; FALLBACK_TARGET (an option) when the target's providers cannot run the
    recipe's lowering (FP4 on a CPU). Without an artifact folder the ONNX files go to a temporary one."""
    from retarget.compile import compile_model

    options = dict(job.options)
    fallback = options.pop("fallback_target", None)
    with tempfile.TemporaryDirectory(prefix="retarget-sweep-") as tmp:
        out = artifacts or Path(tmp) / "artifact"
        try:
            return compile_model(job.model, target=job.target, recipe=job.recipe, out=out, console=console, **options)
        except RetargetError as err:
            if err.field != "--target" or not fallback:
                raise
            console.print(f"{job.target} cannot run {job.recipe} ({err}); compiling for {fallback}")
            return compile_model(job.model, target=fallback, recipe=job.recipe, out=out, console=console, **options)


def _compile_row(report: dict[str, Any]) -> dict[str, Any]:
    ort, torch_ = report["ort"], report["torch"]
    return {"compiled_for": report["target"], "lowering": report["recipe"]["lowering"],
            "ort_runs": "artifact" if ort["runs"] == "the artifact" else "reference DQ copy",
            "onnx_mib": report["onnx"]["bytes"] / 2**20,
            "parity": ort["parity_max_abs_logit_diff"]["value"],
            "ppl_fp32": torch_["fp32"]["perplexity"]["value"], "ppl_torch": torch_["quantized"]["perplexity"]["value"],
            "ppl_ort": ort["quantized"]["perplexity"]["value"], "kl_ort": ort["quantized"]["kl_to_fp32"]["value"],
            "prefill_tok_s": ort["prefill_tokens_per_s"]["value"], "decode_tok_s": ort["decode_tokens_per_s"]["value"],
            "generation": ort["generation"]["text"]}


KINDS["compile"] = JobKind(
    check_model=_check_model_ref, run=_run_compile, row=_compile_row, pareto=("decode_tok_s", "kl_ort"),
    options=frozenset({"eval_tokens", "lowering", "fallback_target"}),
    summary=("onnx_mib", "parity", "ppl_ort", "kl_ort", "decode_tok_s"),
    provenance="measured (each job's report names its machine and versions); speeds are measured while the "
               "sweep's other jobs share the machine")


def _resolve_spec(model: str) -> None:
    from retarget.perf.show import resolve_spec

    resolve_spec(model)


def _run_predict(job: Job, artifacts: Path | None, console: Console) -> dict[str, Any]:
    """`retarget predict` of the job at the recipe's weight format (options: batch, ctx, prompt_len, kv, ...; the
    engine, unless named, is the device family's default as in `retarget predict`)."""
    from retarget.hw_profiles import load_profile
    from retarget.perf.efficiency import engine_and_parallelism
    from retarget.perf.model import predict
    from retarget.perf.show import resolve_spec
    from retarget.plan import plan_recipe

    profile = load_profile(job.target)
    engine, parallelism = engine_and_parallelism(profile.family, job.options.get("engine"))
    options = {"kv_format": "bf16", **job.options, "engine": engine, "parallelism": parallelism}
    weight_format = plan_recipe(job.recipe, profile, has_source_blocks=True).weight_format
    return predict(resolve_spec(job.model), profile, weight_format=weight_format, **options).to_dict()


def _predict_row(report: dict[str, Any]) -> dict[str, Any]:
    memory = report["memory"]
    return {"weight_format": report["workload"]["weight_format"], "ttft_ms": report["ttft_s"]["value"] * 1e3,
            "tpot_ms": report["tpot_s"]["value"] * 1e3, "decode_tok_s": report["decode_tokens_s"]["value"],
            "prefill_tok_s": report["prefill_tokens_s"]["value"], "weights_gb": memory["weights_gb"]["value"],
            "fits": memory["fits"]}


KINDS["predict"] = JobKind(check_model=_resolve_spec, run=_run_predict, row=_predict_row,
                           options=frozenset({"batch", "ctx", "prompt_len", "devices", "kv_format", "engine"}),
                           summary=("weight_format", "ttft_ms", "decode_tok_s", "fits"),
                           provenance="predicted by retarget.perf (each report lists its assumptions)")
