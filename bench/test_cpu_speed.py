"""CPU decode and prefill speed of SmolLM2-135M, measured in one run on this machine: our 4-bit ONNX
artifacts (retarget's Llama graph, ONNX Runtime) against ONNX Runtime fp32 (optimum's export and our graph),
ONNX Runtime's own 4-bit quantizer, PyTorch eager fp32 and llama.cpp on the original GGUF.

    make bench        # writes bench/results/cpu-speed.json and bench/results/cpu-speed.md

The engines take turns (interleaved rounds: each does a 128-token prefill and DECODE_TOKENS decode steps,
then the next one), so load from anything else on the shared machine falls on all of them alike; the
medians over rounds are the headline, the best round shows what an idle machine gives.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.peers.engines import LlamaCppEngine, OrtEngine, TorchEagerEngine, llama_cpp_version
from retarget import provenance
from retarget.export.decoder import build_decoder
from retarget.export.onnx_export import export_float, export_quantized, write_accuracy_variant
from retarget.quantize import QuantLinear, config_from_name, quantize_

PROMPT = 128
DECODE_TOKENS = int(os.environ.get("RETARGET_BENCH_DECODE_TOKENS", "32"))
ROUNDS = int(os.environ.get("RETARGET_BENCH_ROUNDS", "10"))
# threads per engine (default: one per core); on a busy machine 1 keeps spin-waiting thread pools (llama.cpp's)
# from collapsing: measured here under load ~15 on 2 cores, llama.cpp decoded 0.3 tokens/s at 2 threads, 6-8 at 1
THREADS = int(os.environ.get("RETARGET_BENCH_THREADS", "0")) or len(os.sched_getaffinity(0))
# ORT's threads busy-wait between ops as llama.cpp's do (ORT's default); 0 turns it off for a shared machine
SPIN = os.environ.get("RETARGET_BENCH_SPIN", "1") != "0"
ACCURACY_TOKENS = 1024
RESULTS = Path(__file__).parent / "results"
SETTINGS = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("RETARGET_BENCH_"))
COMMAND = f"{SETTINGS + ' ' if SETTINGS else ''}make bench (pytest bench/test_cpu_speed.py --benchmark-only)"
OURS = "retarget int4-g128-asym"  # the headline artifact


def _save(proto, out: Path) -> Path:
    import onnx

    onnx.save_model(proto, str(out / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=1024)
    return out / "model.onnx"


def _ours(smollm2, recipe: str, out: Path) -> Path:
    from retarget.quantize.api import ties_embedding

    model = copy.deepcopy(smollm2.model)
    quantize_(model, config_from_name(recipe), smollm2.source_weights)
    qweights = {n: m.qweight for n, m in model.named_modules() if isinstance(m, QuantLinear)}
    export_quantized(smollm2.model, qweights, out, accuracy_level=0, tied_embedding=ties_embedding(model))
    return out / "model.onnx"


def _ort_quantizer(optimum_fp32: Path, out: Path) -> Path:
    """ONNX Runtime's MatMulNBitsQuantizer (its default C++ round-to-nearest, 4-bit asymmetric, blocks of 128;
    lm_head 8-bit blocks of 32 as ours) on the optimum export, at accuracy_level 4."""
    from bench.peers.ort_quantizer import quantize_onnx

    quantize_onnx(optimum_fp32, out / "rtn.onnx", "default", 128)
    return write_accuracy_variant(out / "rtn.onnx", 4, out / "model.onnx")


@pytest.fixture(scope="module")
def artifacts(smollm2, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every ONNX graph of the comparison, by label."""
    paths: dict[str, Path] = {}
    optimum = export_float(smollm2.model, tmp_path_factory.mktemp("optimum"))
    paths["ORT fp32 (optimum export)"] = optimum
    paths["ORT fp32 (retarget graph)"] = _save(build_decoder(smollm2.model)[0], tmp_path_factory.mktemp("fp32"))
    for recipe in ("int4-g128-asym", "keep"):
        exact = _ours(smollm2, recipe, tmp_path_factory.mktemp(recipe))
        paths[f"retarget {recipe}"] = write_accuracy_variant(exact, 4, exact.with_name("level4.onnx"))
        if recipe == "int4-g128-asym":
            paths[f"retarget {recipe} (accuracy_level 0)"] = exact
    paths["ORT quantizer RTN int4-g128"] = _ort_quantizer(optimum, tmp_path_factory.mktemp("ortq"))
    return paths


def interleaved(engines: dict, prompt: np.ndarray, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per prefill and per decode step, the engines taking turns; the order rotates every round."""
    times = {name: {"prefill_s": [], "decode_step_s": []} for name in engines}
    names = list(engines)
    for r in range(rounds + 1):  # round 0 warms every engine up and is dropped
        for name in names[r % len(names):] + names[:r % len(names)]:
            engine = engines[name]
            t0 = time.perf_counter()
            token = engine.prefill(prompt)
            prefill = time.perf_counter() - t0
            steps = []
            for _ in range(DECODE_TOKENS):
                t0 = time.perf_counter()
                token = engine.decode(token)
                steps.append(time.perf_counter() - t0)
            if r:
                times[name]["prefill_s"].append(prefill)
                times[name]["decode_step_s"].extend(steps)
    return times


def level4_accuracy_cost(smollm2, artifacts: dict[str, Path]) -> dict:
    """Perplexity and next-token KL vs fp32 torch of our int4 artifact at accuracy_level 0 and 4 (ORT)."""
    from retarget.eval.corpus import corpus_text
    from retarget.eval.metrics import Evaluator, torch_logits_fn
    from retarget.export.runtime import OrtCausalLM

    tokens = smollm2.tokenizer(corpus_text(), add_special_tokens=False)["input_ids"][:ACCURACY_TOKENS]
    evaluator = Evaluator(tokens, window=ACCURACY_TOKENS)
    evaluator.reference(torch_logits_fn(smollm2.model), "fp32 (torch)")
    out = {}
    for level, label in ((0, f"{OURS} (accuracy_level 0)"), (4, OURS)):
        score = evaluator.score(OrtCausalLM(artifacts[label]).logits, label)
        out[f"accuracy_level_{level}"] = {
            "perplexity": provenance.measured(score.perplexity, "ppl", tokens=score.tokens),
            "kl_to_fp32": provenance.measured(score.kl_to_reference, "nats/token", tokens=score.tokens)}
    return out


def summarize(times: dict[str, dict[str, list[float]]]) -> dict[str, dict]:
    """tokens/s from the medians (and the best round) of TIMES, with provenance."""
    out = {}
    for name, t in times.items():
        details = {"batch": 1, "prompt_len": PROMPT, "rounds": ROUNDS, "decode_tokens_per_round": DECODE_TOKENS,
                   "threads": THREADS, "interleaved": True}
        out[name] = {
            "prefill_tokens_per_s": provenance.measured(PROMPT / float(np.median(t["prefill_s"])), "tokens/s",
                                                        statistic="median", **details),
            "decode_tokens_per_s": provenance.measured(1 / float(np.median(t["decode_step_s"])), "tokens/s",
                                                       statistic="median", **details),
            "prefill_tokens_per_s_best": PROMPT / min(t["prefill_s"]),
            "decode_tokens_per_s_best": DECODE_TOKENS / min(
                sum(t["decode_step_s"][i:i + DECODE_TOKENS]) for i in range(0, len(t["decode_step_s"]), DECODE_TOKENS)),
        }
    return out


def markdown(results: dict[str, dict], meta: dict) -> str:
    """The comparison table with ratios vs llama.cpp and vs ORT fp32 (optimum export)."""
    llama = results.get("llama.cpp Q4_1 GGUF")
    base = results["ORT fp32 (optimum export)"]

    def val(row: dict, key: str) -> float:
        return row[key]["value"]

    def ratio(row: dict, ref: dict | None, key: str) -> str:
        return f"{val(row, key) / val(ref, key):.2f}×" if ref else "n/a"

    lines = [f"# CPU speed: SmolLM2-135M, batch 1, {PROMPT}-token prompt ({meta['date']})", "",
             f"`{COMMAND}` on {meta['machine']['cpu']} ({meta['machine']['cores']} cores), onnxruntime "
             f"{meta['machine']['versions'].get('onnxruntime')}, llama-cpp-python {meta['llama_cpp_python']}, "
             f"torch {meta['machine']['versions'].get('torch')}. Medians over {ROUNDS} interleaved rounds "
             f"({DECODE_TOKENS} decode steps each); in brackets the best round. {meta['contention']}", "",
             "| engine | prefill tok/s | decode tok/s | decode vs llama.cpp | decode vs ORT fp32 | "
             "prefill vs llama.cpp | prefill vs ORT fp32 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in results.items():
        lines.append(f"| {name} | {val(row, 'prefill_tokens_per_s'):.0f} ({row['prefill_tokens_per_s_best']:.0f}) | "
                     f"{val(row, 'decode_tokens_per_s'):.1f} ({row['decode_tokens_per_s_best']:.1f}) | "
                     f"{ratio(row, llama, 'decode_tokens_per_s')} | {ratio(row, base, 'decode_tokens_per_s')} | "
                     f"{ratio(row, llama, 'prefill_tokens_per_s')} | {ratio(row, base, 'prefill_tokens_per_s')} |")
    lines += ["", "The 4-bit ONNX artifacts run MatMulNBits at accuracy_level 4 (int8 activations) for prompts and "
              "decode steps alike; the accuracy_level 0 row is the same weights with float32 activations."]
    cost = meta.get("accuracy_level_cost")
    if cost:
        lo, hi = cost["accuracy_level_0"], cost["accuracy_level_4"]
        lines += ["", f"accuracy_level 4 (int8 activations) against 0 (fp32 activations), {OURS}, "
                  f"{hi['perplexity']['tokens']} tokens: perplexity {lo['perplexity']['value']:.3f} -> "
                  f"{hi['perplexity']['value']:.3f}, KL to fp32 {lo['kl_to_fp32']['value']:.4f} -> "
                  f"{hi['kl_to_fp32']['value']:.4f} nats/token."]
    return "\n".join(lines) + "\n"


def test_cpu_speed(benchmark, smollm2, artifacts) -> None:
    from retarget.models.load import default_model_path

    max_length = PROMPT + DECODE_TOKENS
    engines = {name: OrtEngine(path, max_length, THREADS, SPIN) for name, path in artifacts.items()}
    engines["PyTorch eager fp32"] = TorchEagerEngine(smollm2.model)
    torch.set_num_threads(THREADS)
    if llama_cpp_version():
        engines["llama.cpp Q4_1 GGUF"] = LlamaCppEngine(default_model_path(), max_length, THREADS)
    prompt = np.random.default_rng(0).integers(100, 10_000, (1, PROMPT))
    times = benchmark.pedantic(interleaved, args=(engines, prompt, ROUNDS), rounds=1, iterations=1)
    load = os.getloadavg()
    meta = {
        "command": COMMAND,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": provenance.machine(),
        "llama_cpp_python": llama_cpp_version(),
        "threads_per_engine": THREADS,
        "contention": f"{THREADS} thread(s) per engine, ORT threads {'spinning' if SPIN else 'not spinning'} "
                      f"between ops. Load average when the rounds ended: {load[0]:.1f} / {load[2]:.1f} over 1 / 15 "
                      f"minutes on {len(os.sched_getaffinity(0))} cores (the benchmark itself keeps {THREADS} busy).",
        "load_average_1_5_15_min": load,
        "accuracy_level_cost": level4_accuracy_cost(smollm2, artifacts),
    }
    results = summarize(times)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cpu-speed.json").write_text(json.dumps({**meta, "results": results}, indent=2))
    (RESULTS / "cpu-speed.md").write_text(markdown(results, meta))
    assert results[OURS]["decode_tokens_per_s"]["value"] > 0
