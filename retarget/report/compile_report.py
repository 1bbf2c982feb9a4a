"""A compile report: the dictionary `retarget compile` returns (`build_report`), and its files report.json
(source of truth), recipe.json and report.md (`write_report`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from retarget import provenance
from retarget.report import compile_predictions


def measured_score(score: Any) -> dict[str, Any]:
    """Perplexity and KL of a retarget.eval.metrics.Score, as measured entries."""
    return {"perplexity": provenance.measured(score.perplexity, "ppl", tokens=score.tokens),
            "kl_to_fp32": None if score.kl_to_reference is None
            else provenance.measured(score.kl_to_reference, "nats/token", tokens=score.tokens)}


def kv_parity_entry(parity: dict[str, Any], kv_cache: Any, code_tolerance: float, scale_rtol: float,
                    tokens: int) -> dict[str, Any] | None:
    """The storage half of a quantized KV cache's parity, and the free-running difference (None: float cache)."""
    if not parity:
        return None
    return {"scale_max_rel_diff": provenance.measured(
                parity["scale_max_rel_diff"], "relative", tolerance=scale_rtol,
                note=f"{kv_cache.name} row scales ORT stored against torch's, from torch's own states"),
            "code_mismatch_fraction": provenance.measured(
                parity["code_mismatch_fraction"], "fraction", tolerance=code_tolerance, codes=parity["codes"],
                note=f"{kv_cache.name} codes ORT stored that differ from torch's rounding of its own states"),
            "free_running_max_abs_logit_diff": provenance.measured(
                parity["free_running_max_abs_logit_diff"], "logit", tokens=tokens,
                note="ORT and torch each quantizing their own cache (no tolerance: a state within float noise "
                     "of a rounding boundary takes another code and the step spreads)")}


def decode_entry(check: Any, tolerance: float) -> dict[str, Any] | None:
    """The cached-decode and greedy check (retarget.eval.verify.DecodeCheck; None: not run)."""
    if check is None:
        return None
    fields = dataclasses.asdict(check)
    return {**fields, "max_abs_logit_diff": provenance.measured(
        check.max_abs_logit_diff, "logit", tolerance=tolerance, prompt=check.prompt, steps=check.steps,
        note="ORT's cached decode against transformers' own cached decode, same tokens, every step")}


def build_report(*, model_ref: str, loaded: Any, spec: Any, profile: Any, plan: Any, replaced: int,
                 corpus: dict[str, Any], scores: dict[str, Any], onnx_info: dict[str, Any], files: list[str],
                 verification: dict[str, Any], generation: dict[str, Any], speed: dict[str, float],
                 cache_bytes: float, runs: str, predictions: Any, timings: dict[str, float], out: Path,
                 state_bytes: int = 0, quantization: dict[str, Any] | None = None,
                 runtimes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report of one compile (every number measured here, or predicted with its model). QUANTIZATION:
    what the recipe quantized and what it kept float, with reasons (recipe.json carries it); RUNTIMES: which
    ONNX Runtime execution providers run each op of the artifact (retarget.runtimes.coverage)."""
    return {
        "retarget_version": provenance.machine()["versions"]["retarget"],
        "model": {"ref": model_ref, "path": str(loaded.path), "source_format": loaded.source_format,
                  "source_bytes": loaded.path.stat().st_size if loaded.path.is_file() else None,
                  "spec": spec.to_dict(), "params_total": spec.params_total},
        "target": profile.id,
        "recipe": {**plan.to_dict(), **({"quantization": quantization} if quantization else {})},
        "quantized_linears": replaced,
        "corpus": corpus,
        "torch": {"fp32": measured_score(scores["fp32"]), "quantized": measured_score(scores["torch"])},
        "onnx": {**onnx_info, "files": files},
        "ort": {
            **verification,
            "accuracy_level": plan.accuracy_level,
            "runs": runs,
            "quantized": measured_score(scores["ort"]),
            "generation": generation,
            "prefill_tokens_per_s": provenance.measured(speed["prefill_tokens_per_s"], "tokens/s",
                                                        prompt_len=speed["prompt_len"], batch=1),
            "decode_tokens_per_s": provenance.measured(speed["decode_tokens_per_s"], "tokens/s",
                                                       decode_tokens=speed["decode_tokens"], batch=1),
            "kv_cache_bytes_per_token": provenance.measured(
                cache_bytes, "B/token", cache=plan.kv_cache.name if plan.kv_cache else "float32",
                note="bytes of ORT's cache tensors (codes and scales) per cached token, all layers, batch 1"),
            "state_bytes_per_sequence": provenance.measured(
                state_bytes, "B", note="bytes of ORT's fixed-size cache tensors (SSM and convolution states), all "
                                       "layers, batch 1: the same at any length"),
        },
        "runtimes": runtimes,
        "predicted_on_profiles": predictions,
        "timings_s": timings,
        "out": str(out),
    }


def _v(entry: dict[str, Any], fmt: str) -> str:
    return format(entry["value"], fmt)


def render_markdown(r: dict[str, Any]) -> str:
    """A human-readable page from the report dict."""
    ort, torch_ = r["ort"], r["torch"]
    machine = ort["decode_tokens_per_s"]["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    corpus = r["corpus"]
    lines = [
        f"# retarget compile: {r['model']['path']}",
        "",
        f"Target `{r['target']}`, recipe `{r['recipe']['name']}` ({r['recipe']['why']}).",
        "",
        "| metric | value | provenance |",
        "|---|---|---|",
        f"| ONNX artifact size | {r['onnx']['bytes'] / 2**20:.1f} MiB | measured (file size) |",
        f"| MatMulNBits nodes | {r['onnx']['matmulnbits_nodes']} | graph |",
        f"| ONNX nodes per layer | {r['onnx']['nodes_per_layer']:.1f} | graph |",
        f"| perplexity fp32 (torch) | {_v(torch_['fp32']['perplexity'], '.3f')} | measured |",
        f"| perplexity quantized (torch) | {_v(torch_['quantized']['perplexity'], '.3f')} | measured |",
        f"| perplexity quantized (ONNX Runtime) | {_v(ort['quantized']['perplexity'], '.3f')} | measured |",
        f"| KL to fp32, torch (nats/token) | {_v(torch_['quantized']['kl_to_fp32'], '.5f')} | measured |",
        f"| KL to fp32, ONNX Runtime (nats/token) | {_v(ort['quantized']['kl_to_fp32'], '.5f')} | measured |",
        f"| ORT vs torch max abs logit diff | {_v(ort['parity_max_abs_logit_diff'], '.2e')} "
        f"(tolerance {ort['parity_max_abs_logit_diff']['tolerance']}) | measured |",
        f"| prefill tokens/s (batch 1, {ort['prefill_tokens_per_s']['prompt_len']} tokens) | "
        f"{_v(ort['prefill_tokens_per_s'], '.0f')} | measured |",
        f"| decode tokens/s (batch 1) | {_v(ort['decode_tokens_per_s'], '.1f')} | measured |",
        *_decode_rows(ort.get("decode")),
        "",
        f"Evaluation corpus: {corpus['name']} (Python {corpus['python']}, sha256 `{corpus['sha256'][:16]}`), "
        f"{corpus['tokens_scored']} predicted tokens in windows of {corpus['window']}.",
        "",
        f"Measured on: {machine['cpu']} ({machine['cores']} cores), {versions}.",
        "",
        f"Greedy generation for *{ort['generation']['prompt']}*:",
        "",
        f"> {ort['generation']['text'].strip()}",
        "",
        *_runtime_rows(r.get("runtimes")),
        *compile_predictions.markdown(r["predicted_on_profiles"]),
    ]
    return "\n".join(lines)


def _runtime_rows(runtimes: dict[str, Any] | None) -> list[str]:
    """Which ONNX Runtime execution providers run the artifact's ops natively (published operator lists)."""
    if not runtimes:
        return []
    rows = ["## Which ONNX Runtime execution providers run this graph", "",
            f"From {runtimes['provenance']} (retrieved {runtimes['retrieved']}).", "",
            "| provider | nodes run natively | ops it lacks | ops not checked |", "|---|---|---|---|"]
    for name, p in runtimes["providers"].items():
        rows.append(f"| {name} | {p['native_nodes']} of {p['nodes']} | {', '.join(p['leaves']) or '-'} | "
                    f"{', '.join(p['not_checked']) or '-'} |")
    return [*rows, ""]


def _decode_rows(decode: dict[str, Any] | None) -> list[str]:
    if decode is None:
        return []
    greedy = "equal" if decode["greedy_equal"] else f"differ from token {decode['first_divergence']} (near tie)"
    return [f"| KV-cache decode vs transformers, {decode['steps']} steps after {decode['prompt']} | "
            f"{_v(decode['max_abs_logit_diff'], '.2e')} (tolerance {decode['max_abs_logit_diff']['tolerance']}) | "
            "measured |",
            f"| greedy tokens vs transformers ({decode['greedy_tokens']}) | {greedy} | measured |"]


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    """report.json, recipe.json and report.md into OUT_DIR."""
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "recipe.json").write_text(json.dumps(report["recipe"], indent=2))
    (out_dir / "report.md").write_text(render_markdown(report))
