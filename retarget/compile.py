"""`retarget compile`: load -> quantize -> evaluate -> export to ONNX -> verify in ONNX Runtime -> write.

Each step shows a progress bar; the output folder is built in a temporary sibling and renamed into
place only when every step has passed, so a failure leaves nothing half-written behind.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from retarget import provenance
from retarget.errors import RetargetError
from retarget.outdir import atomic_dir, check_writable

DEFAULT_EVAL_TOKENS = 2048
EVAL_WINDOW = 1024
PARITY_TOKENS = 128
# ORT's MatMulNBits (accuracy_level 0: fp32 activations) and torch's dequantize-then-matmul differ only in
# summation order; over 30 layers that stays well below this, while one wrong block or nibble order breaks it.
PARITY_ATOL = 1e-2
CHAT_PROMPT = "What is the capital of France? Answer in one sentence."


def _progress(console: Console | None) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console or Console(stderr=True), transient=False)


def compile_model(model_ref: str = "default", *, target: str = "cpu-x86", recipe: str = "auto",
                  out: Path = Path("out/smollm2"), eval_tokens: int | None = None,
                  console: Console | None = None, lowering: str = "auto", loaded: Any = None) -> dict[str, Any]:
    """Compile MODEL_REF for TARGET with RECIPE into OUT; returns the report (also written as report.json).
    LOWERING ('auto', 'matmulnbits', 'qdq') picks how the weights go into the ONNX graph. LOADED: MODEL_REF
    already loaded by retarget.models.load.load_model (a sweep over recipes loads it once)."""
    import torch

    from retarget.eval.corpus import corpus_text, describe
    from retarget.eval.metrics import Evaluator, torch_logits_fn
    from retarget.export.activations import activation_quant
    from retarget.export.client_metadata import write_client_files
    from retarget.export.kv_parity import CODE_MISMATCH_TOLERANCE, SCALE_RTOL, replay_parity
    from retarget.export.onnx_export import check_kv_cache_model, export_quantized, write_accuracy_variant
    from retarget.export.qdq import write_reference_dequantized
    from retarget.export.runtime import OrtCausalLM
    from retarget.hw_profiles import list_profiles, load_profile
    from retarget.models.load import check_model_ref, load_model
    from retarget.models.spec import ModelSpec
    from retarget.plan import plan_recipe
    from retarget.plan.recipe import runs_on_cpu
    from retarget.quantize import QuantLinear, calibration_tokens, quantize_
    from retarget.quantize.api import ties_embedding, untie_lm_head
    from retarget.quantize.kv_cache import ELEMENTS as KV_ELEMENTS
    from retarget.quantize.kv_cache import kv_logits_fn
    from retarget.report.compile_predictions import predictions_on_profiles
    from retarget.report.compile_report import write_report

    # fail fast on bad input, before any heavy work
    out = Path(out)
    check_writable(out)
    check_model_ref(model_ref)
    profile = load_profile(target)
    plan_recipe(recipe, profile, has_source_blocks=True, lowering=lowering)  # the recipe exists, the target runs it
    eval_tokens = eval_tokens or DEFAULT_EVAL_TOKENS
    if eval_tokens < EVAL_WINDOW:
        raise RetargetError(f"must be at least {EVAL_WINDOW}", field="--eval-tokens")
    torch.manual_seed(0)
    timings: dict[str, float] = {}

    with _progress(console) as progress:
        t0 = time.perf_counter()
        task = progress.add_task("load model", total=1)
        loaded = loaded or load_model(model_ref)
        progress.advance(task)
        timings["load_s"] = time.perf_counter() - t0
        spec = ModelSpec.from_hf_config(loaded.model.config.to_dict(), name=loaded.name)
        plan = plan_recipe(recipe, profile, has_source_blocks=bool(loaded.source_weights), lowering=lowering)
        if plan.kv_cache is not None:
            check_kv_cache_model(loaded.model)

        t0 = time.perf_counter()
        reference = loaded.model
        untie_lm_head(reference)
        quantized = copy.deepcopy(reference)
        calibration = calibration_tokens(loaded.tokenizer) if plan.weights.needs_calibration else None
        replaced = quantize_(quantized, plan.weights, loaded.source_weights, progress, calibration=calibration)
        qweights = {name: m.qweight for name, m in quantized.named_modules() if isinstance(m, QuantLinear)}
        timings["quantize_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        tokens = loaded.tokenizer(corpus_text(), add_special_tokens=False)["input_ids"]
        if len(tokens) < eval_tokens:
            raise RetargetError(f"the corpus has only {len(tokens)} tokens", field="--eval-tokens")
        evaluator = Evaluator(tokens[:eval_tokens], window=EVAL_WINDOW)
        ref_score = evaluator.reference(torch_logits_fn(reference), "fp32 (torch)", progress)
        # a quantized KV cache (plan.kv_cache) is simulated in torch by retarget.quantize.kv_cache
        torch_score = evaluator.score(kv_logits_fn(quantized, plan.kv_cache), f"{plan.name} (torch)", progress)
        timings["evaluate_s"] = time.perf_counter() - t0

        with atomic_dir(out) as tmp:
            t0 = time.perf_counter()
            task = progress.add_task(f"export ONNX + lower {plan.lowering}", total=1)
            activations = activation_quant(quantized)
            kv_element = None if plan.kv_cache is None else KV_ELEMENTS[plan.kv_cache.element]
            export_args = {"tied_embedding": ties_embedding(quantized), "lowering": plan.lowering,
                           "kv_cache": kv_element}
            onnx_info = export_quantized(reference, qweights, tmp, plan.accuracy_level, activations=activations,
                                         **export_args)
            progress.advance(task)
            timings["export_s"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            # parity of the lowering itself: the same graph with fp32 activations against the torch model; a
            # lowering ORT's CPU provider has no kernel for (FP4) is checked, evaluated and timed through a copy
            # whose DequantizeLinear nodes ONNX's reference implementation computed
            cpu_runs = runs_on_cpu(plan.lowering)
            parity_model = quantized
            if any(a.element is not None for a in activations.values()):
                # W8A8: a per-token rounding flip in one runtime and not the other grows over 30 layers (measured
                # max |dlogit| 2.9), so parity checks weights + smoothing with float activations in both runtimes;
                # the activation quantization itself is compared through the ORT-vs-torch perplexity and KL
                parity_model = _float_activations(quantized)
                (tmp / "parity").mkdir()
                export_quantized(reference, qweights, tmp / "parity", 0, **export_args,
                                 activations={n: dataclasses.replace(a, element=None) for n, a in activations.items()})
                source_path = tmp / "parity" / "model.onnx"
            else:
                source_path = tmp / "model.onnx"
            exact_path = (write_accuracy_variant(source_path, 0, source_path.parent / "parity.onnx") if cpu_runs
                          else write_reference_dequantized(source_path, source_path.parent / "parity.onnx"))
            parity_ids = torch.tensor([tokens[:PARITY_TOKENS]])
            with torch.inference_mode():
                torch_logits = kv_logits_fn(parity_model, plan.kv_cache)(parity_ids)
            exact = OrtCausalLM(exact_path, qdq_accuracy_level=0)
            max_diff = (exact.logits(parity_ids) - torch_logits).abs().max().item()
            kv_parity = {}
            if kv_element is not None:
                # each runtime rounding its own states drifts apart (retarget.export.kv_parity): parity replays
                # ORT's cache in torch, and checks ORT's codes against torch's rounding separately
                kv_parity = {"free_running_max_abs_logit_diff": max_diff,
                             **replay_parity(exact, parity_model, kv_element, parity_ids)}
                max_diff = kv_parity["max_abs_logit_diff"]
                if not (kv_parity["code_mismatch_fraction"] <= CODE_MISMATCH_TOLERANCE
                        and kv_parity["scale_max_rel_diff"] <= SCALE_RTOL):
                    raise RuntimeError(f"ONNX Runtime's KV cache disagrees with torch's: scales up to "
                                       f"{kv_parity['scale_max_rel_diff']:.3g} apart, "
                                       f"{kv_parity['code_mismatch_fraction']:.3g} of the codes differ")
            if not max_diff <= PARITY_ATOL:
                raise RuntimeError(f"ONNX Runtime disagrees with torch: max |logit diff| {max_diff:.3g}")
            runtime = OrtCausalLM(tmp / "model.onnx", qdq_accuracy_level=plan.accuracy_level) if cpu_runs else exact
            ort_score = evaluator.score(runtime.logits, f"{plan.name} (ONNX Runtime)", progress)
            task = progress.add_task("generate + measure speed", total=2)
            chat = loaded.tokenizer.apply_chat_template([{"role": "user", "content": CHAT_PROMPT}],
                                                        add_generation_prompt=True)
            generated = runtime.generate(chat, 32, stop=_stop_ids(loaded))
            progress.advance(task)
            cache_bytes = runtime.cache_bytes_per_token()  # the cache the generation above filled
            speed = runtime.speed()
            progress.advance(task)
            for path in tmp.glob("parity.onnx*"):
                path.unlink()
            shutil.rmtree(tmp / "parity", ignore_errors=True)
            timings["verify_s"] = time.perf_counter() - t0

            write_client_files(loaded, tmp)  # tokenizer, config.json, generation_config.json, genai_config.json
            across_devices = predictions_on_profiles(spec, plan.weight_format, list_profiles())
            report = {
                "retarget_version": provenance.machine()["versions"]["retarget"],
                "model": {"ref": model_ref, "path": str(loaded.path), "source_format": loaded.source_format,
                          "source_bytes": loaded.path.stat().st_size if loaded.path.is_file() else None,
                          "spec": spec.to_dict(), "params_total": spec.params_total},
                "target": profile.id,
                "recipe": plan.to_dict(),
                "quantized_linears": replaced,
                "corpus": {**describe(), "tokens_scored": evaluator.predicted_tokens, "window": EVAL_WINDOW},
                "torch": {
                    "fp32": _measured_score(ref_score),
                    "quantized": _measured_score(torch_score),
                },
                "onnx": {**onnx_info, "files": sorted(p.name for p in tmp.iterdir())},
                "ort": {
                    "parity_max_abs_logit_diff": provenance.measured(
                        max_diff, "logit", tolerance=PARITY_ATOL, tokens=PARITY_TOKENS,
                        note=f"{plan.lowering} with fp32 activations (accuracy_level 0) vs the torch quantized model"
                             + ("" if plan.kv_cache is None else f", torch reading ORT's {plan.kv_cache.name} cache")),
                    "kv_cache_parity": _kv_parity_report(kv_parity, plan.kv_cache, CODE_MISMATCH_TOLERANCE, SCALE_RTOL),
                    "accuracy_level": plan.accuracy_level,
                    "runs": "the artifact" if cpu_runs else "a copy with DequantizeLinear computed by ONNX's "
                            "reference implementation (ORT's CPU provider has no kernel for it); speed is that copy's",
                    "quantized": _measured_score(ort_score),
                    "generation": {"prompt": CHAT_PROMPT, "text": loaded.tokenizer.decode(generated),
                                   "tokens": len(generated), "decoding": "greedy"},
                    "prefill_tokens_per_s": provenance.measured(speed["prefill_tokens_per_s"], "tokens/s",
                                                                prompt_len=speed["prompt_len"], batch=1),
                    "decode_tokens_per_s": provenance.measured(speed["decode_tokens_per_s"], "tokens/s",
                                                               decode_tokens=speed["decode_tokens"], batch=1),
                    "kv_cache_bytes_per_token": provenance.measured(
                        cache_bytes, "B/token", cache=plan.kv_cache.name if plan.kv_cache else "float32",
                        note="bytes of ORT's cache tensors (codes and scales) per cached token, all layers, batch 1"),
                },
                "predicted_on_profiles": across_devices,
                "timings_s": timings,
                "out": str(out),
            }
            write_report(report, tmp)
    return report


def _kv_parity_report(parity: dict[str, Any], kv_cache: Any, code_tolerance: float, scale_rtol: float
                      ) -> dict[str, Any] | None:
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
                parity["free_running_max_abs_logit_diff"], "logit", tokens=PARITY_TOKENS,
                note="ORT and torch each quantizing their own cache (no tolerance: a state within float noise "
                     "of a rounding boundary takes another code and the step spreads)")}


def _float_activations(model: Any) -> Any:
    """A copy of MODEL whose QuantLinears keep their smoothing but take float activations."""
    from retarget.quantize import QuantLinear

    twin = copy.deepcopy(model)
    for module in twin.modules():
        if isinstance(module, QuantLinear):
            module.act = None
    return twin


def _stop_ids(loaded: Any) -> frozenset[int]:
    """Tokens that end a generation: the tokenizer's special tokens and the model config's EOS ids (the
    GGUF tokenizer conversion labels <|im_start|> as EOS; the GGUF's own eos_token_id is <|im_end|>)."""
    eos = loaded.model.config.eos_token_id
    eos_ids = set(eos) if isinstance(eos, list) else {eos} if eos is not None else set()
    return frozenset(loaded.tokenizer.all_special_ids) | eos_ids


def _measured_score(score: Any) -> dict[str, Any]:
    return {"perplexity": provenance.measured(score.perplexity, "ppl", tokens=score.tokens),
            "kl_to_fp32": None if score.kl_to_reference is None
            else provenance.measured(score.kl_to_reference, "nats/token", tokens=score.tokens)}


def print_summary(report: dict[str, Any], console: Console) -> None:
    """The one table a user reads after `retarget compile`."""
    ort, torch_ = report["ort"], report["torch"]
    table = Table(title=f"retarget compile: {report['model']['path']} -> {report['target']} "
                        "(measured on this machine)")
    for col in ("recipe", "MiB", "ppl fp32", "ppl torch", "ppl ORT", "KL ORT", "parity", "prefill t/s",
                "decode t/s"):
        table.add_column(col, justify="right")
    kl = ort["quantized"]["kl_to_fp32"]["value"]
    table.add_row(report["recipe"]["name"], f"{report['onnx']['bytes'] / 2**20:.1f}",
                  f"{torch_['fp32']['perplexity']['value']:.3f}",
                  f"{torch_['quantized']['perplexity']['value']:.3f}",
                  f"{ort['quantized']['perplexity']['value']:.3f}", f"{kl:.4f}",
                  f"{ort['parity_max_abs_logit_diff']['value']:.1e}",
                  f"{ort['prefill_tokens_per_s']['value']:.0f}", f"{ort['decode_tokens_per_s']['value']:.1f}")
    console.print(table)
    console.print(f"KL: nats/token vs fp32; parity: max |logit diff| ORT vs torch (tolerance {PARITY_ATOL}); "
                  f"perplexity on {report['corpus']['tokens_scored']} tokens of {report['corpus']['name']}; "
                  f"written to {report['out']}", highlight=False)
    console.print(f"KV cache: {ort['kv_cache_bytes_per_token']['value']:,.0f} bytes per token "
                  f"({ort['kv_cache_bytes_per_token']['cache']})", highlight=False)
    console.print(f"generation: {ort['generation']['text']!r}", highlight=False)
