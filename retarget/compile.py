"""`retarget compile`: load -> quantize -> evaluate -> export to ONNX -> verify in ONNX Runtime -> write.

Each step shows a progress bar; the output folder is built in a temporary sibling and renamed into
place only when every step has passed, so a failure leaves nothing half-written behind.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from retarget.errors import RetargetError
from retarget.eval.verify import PARITY_ATOL
from retarget.outdir import atomic_dir, check_writable

DEFAULT_EVAL_TOKENS = 2048
EVAL_WINDOW = 1024  # or the model's context, when shorter
MIN_EVAL_TOKENS = 128
SPEED_PROMPT, SPEED_DECODE = 128, 64
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
    from retarget.eval.verify import remove_parity_copies, verify_artifact
    from retarget.export.client_metadata import write_client_files
    from retarget.export.onnx_export import check_exportable, export_artifact
    from retarget.hw_profiles import list_profiles, load_profile
    from retarget.models.load import check_model_ref, load_model
    from retarget.models.spec import ModelSpec
    from retarget.plan import plan_recipe
    from retarget.quantize import quantization_report
    from retarget.quantize.api import quantized_copy, quantized_weights
    from retarget.quantize.kv_cache import kv_logits_fn
    from retarget.report.compile_predictions import predictions_on_profiles
    from retarget.report.compile_report import build_report, write_report
    from retarget.runtimes import coverage

    # fail fast on bad input, before any heavy work
    out = Path(out)
    check_writable(out, inputs=[check_model_ref(model_ref)])
    profile = load_profile(target)
    plan_recipe(recipe, profile, has_source_blocks=True, lowering=lowering)  # the recipe exists, the target runs it
    eval_tokens = eval_tokens or DEFAULT_EVAL_TOKENS
    if eval_tokens < MIN_EVAL_TOKENS:
        raise RetargetError(f"must be at least {MIN_EVAL_TOKENS}", field="--eval-tokens")
    torch.manual_seed(0)
    timings: dict[str, float] = {}

    with _progress(console) as progress:
        t0 = time.perf_counter()
        task = progress.add_task("load model", total=1)
        loaded = loaded or load_model(model_ref)
        progress.advance(task)
        timings["load_s"] = time.perf_counter() - t0
        spec = ModelSpec.from_hf_config(loaded.model.config.to_dict(), name=loaded.name)
        plan = plan_recipe(recipe, profile, has_source_blocks=bool(loaded.source_weights), lowering=lowering,
                           source_element=next((qw.element for qw in loaded.source_weights.values()), "int"))
        check_exportable(loaded.model, plan.kv_element)  # a model or op the graph cannot lower stops here

        t0 = time.perf_counter()
        quantized, replaced = quantized_copy(loaded, plan.weights, progress)
        reference = loaded.model
        qweights = quantized_weights(quantized)  # every Linear and fused expert matrix the recipe quantized
        timings["quantize_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        tokens = loaded.tokenizer(corpus_text(), add_special_tokens=False)["input_ids"]
        if len(tokens) < eval_tokens:
            raise RetargetError(f"the corpus has only {len(tokens)} tokens", field="--eval-tokens")
        context = int(reference.config.max_position_embeddings)
        window = min(EVAL_WINDOW, eval_tokens, context)
        evaluator = Evaluator(tokens[:eval_tokens], window=window)
        scores = {"fp32": evaluator.reference(torch_logits_fn(reference), "fp32 (torch)", progress),
                  # a quantized KV cache (plan.kv_cache) is simulated in torch by retarget.quantize.kv_cache
                  "torch": evaluator.score(kv_logits_fn(quantized, plan.kv_cache), f"{plan.name} (torch)", progress)}
        timings["evaluate_s"] = time.perf_counter() - t0

        with atomic_dir(out) as tmp:
            t0 = time.perf_counter()
            task = progress.add_task(f"export ONNX + lower {plan.lowering}", total=1)
            onnx_info = export_artifact(reference, quantized, qweights, plan, tmp)
            progress.advance(task)
            timings["export_s"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            task = progress.add_task("verify in ONNX Runtime", total=3)
            runtime, verification = verify_artifact(quantized, plan, tmp, tokens, progress, task)
            scores["ort"] = evaluator.score(runtime.logits, f"{plan.name} (ONNX Runtime)", progress)
            generation = _generate(runtime, loaded)
            cache_bytes = runtime.cache_bytes_per_token()  # the cache the generation above filled
            state_bytes = runtime.state_bytes_per_sequence()  # SSM and conv states: fixed per sequence
            prompt_len = min(SPEED_PROMPT, context - SPEED_DECODE - 1)
            speed = runtime.speed(prompt_len, SPEED_DECODE)
            progress.advance(task)
            remove_parity_copies(tmp)
            timings["verify_s"] = time.perf_counter() - t0

            write_client_files(loaded, tmp)  # tokenizer, config.json, generation_config.json, genai_config.json
            report = build_report(
                model_ref=model_ref, loaded=loaded, spec=spec, profile=profile, plan=plan, replaced=replaced,
                corpus={**describe(), "tokens_scored": evaluator.predicted_tokens, "window": window},
                scores=scores, onnx_info=onnx_info, files=sorted(p.name for p in tmp.iterdir()),
                verification=verification, generation=generation, speed=speed, cache_bytes=cache_bytes,
                state_bytes=state_bytes,
                runs="the artifact" if plan.runs_on_cpu else "a copy with DequantizeLinear computed by ONNX's "
                     "reference implementation (ORT's CPU provider has no kernel for it); speed is that copy's",
                predictions=predictions_on_profiles(spec, plan.weight_format, list_profiles()), timings=timings,
                out=out, quantization=quantization_report(quantized).to_dict(), runtimes=coverage(tmp / "model.onnx"))
            write_report(report, tmp)
    return report


def _generate(runtime: Any, loaded: Any) -> dict[str, Any]:
    """Greedy generation for the chat prompt (the plain prompt when the tokenizer has no chat template)."""
    tokenizer = loaded.tokenizer
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": CHAT_PROMPT}], add_generation_prompt=True)
    else:
        prompt = tokenizer(CHAT_PROMPT)["input_ids"]
    generated = runtime.generate(prompt, 32, stop=_stop_ids(loaded))
    return {"prompt": CHAT_PROMPT, "text": tokenizer.decode(generated), "tokens": len(generated),
            "decoding": "greedy"}


def _stop_ids(loaded: Any) -> frozenset[int]:
    """Tokens that end a generation: the tokenizer's special tokens and the model config's EOS ids (the
    GGUF tokenizer conversion labels <|im_start|> as EOS; the GGUF's own eos_token_id is <|im_end|>)."""
    eos = loaded.model.config.eos_token_id
    eos_ids = set(eos) if isinstance(eos, list) else {eos} if eos is not None else set()
    return frozenset(loaded.tokenizer.all_special_ids) | eos_ids


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
                  f"({ort['kv_cache_bytes_per_token']['cache']}); graph: {report['onnx']['nodes_per_layer']:.0f} nodes "
                  "per layer" + (f"; plus {ort['state_bytes_per_sequence']['value']:,} bytes of SSM state per sequence"
                                 if ort["state_bytes_per_sequence"]["value"] else ""), highlight=False)
    decode = ort.get("decode")
    if decode is not None:
        console.print(f"KV-cache decode: {decode['steps']} steps after {decode['prompt']} tokens within "
                      f"{decode['max_abs_logit_diff']['value']:.1e} of transformers'; {decode['greedy_tokens']} greedy "
                      f"tokens {'equal' if decode['greedy_equal'] else 'differ at a near tie'}", highlight=False)
    console.print(f"generation: {ort['generation']['text']!r}", highlight=False)
