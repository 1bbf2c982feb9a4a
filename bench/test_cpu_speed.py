"""CPU decode and prefill speed of SmolLM2-135M, measured in one run on this machine: our ONNX artifacts as
`retarget compile` writes them (the default recipe and `keep`; retarget's Llama graph, ONNX Runtime) against
ONNX Runtime fp32 (optimum's export and our graph), ONNX Runtime's own 4-bit quantizer, PyTorch eager fp32 and
llama.cpp on the original GGUF.

    make bench        # writes bench/results/cpu-speed.json and bench/results/cpu-speed.md

The engines take turns (interleaved rounds: each does a 128-token prefill and DECODE_TOKENS decode steps,
then the next one), so load from anything else on the shared machine falls on all of them alike; the
medians over rounds are the headline, the best round shows what an idle machine gives.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import pytest

from bench.peers.compiled import build_recipe
from bench.peers.engines import EngineSpec, llama_cpp_version
from bench.peers.ort_quantizer import quantized_artifact
from bench.peers.rounds import DECODE_TOKENS, PROMPT, ROUNDS, SPIN, THREADS, interleaved, summarize
from retarget import provenance
from retarget.export.decoder import build_decoder
from retarget.export.onnx_export import export_float, write_accuracy_variant
from retarget.plan.recipe import GGUF_AUTO_RECIPE

ACCURACY_TOKENS = 1024
RESULTS = Path(__file__).parent / "results"
SETTINGS = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("RETARGET_BENCH_"))
COMMAND = f"{SETTINGS + ' ' if SETTINGS else ''}make bench (pytest bench/test_cpu_speed.py --benchmark-only)"
OURS = f"retarget {GGUF_AUTO_RECIPE}"  # the headline: what `make run` compiles


def _save(proto, out: Path) -> Path:
    import onnx

    onnx.save_model(proto, str(out / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=1024)
    return out / "model.onnx"


@pytest.fixture(scope="module")
def artifacts(smollm2, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every ONNX graph of the comparison, by label."""
    paths: dict[str, Path] = {}
    optimum = export_float(smollm2.model, tmp_path_factory.mktemp("optimum"))
    paths["ORT fp32 (optimum export)"] = optimum
    paths["ORT fp32 (retarget graph)"] = _save(build_decoder(smollm2.model)[0], tmp_path_factory.mktemp("fp32"))
    for recipe, label in ((GGUF_AUTO_RECIPE, OURS), ("keep", "retarget keep")):
        paths[label] = build_recipe(smollm2, recipe, tmp_path_factory.mktemp(recipe)) / "model.onnx"
    paths[f"{OURS} (accuracy_level 0)"] = write_accuracy_variant(paths[OURS], 0, paths[OURS].with_name("level0.onnx"))
    paths["ORT quantizer RTN int4-g128"] = quantized_artifact(optimum, tmp_path_factory.mktemp("ortq"))
    return paths


def level4_accuracy_cost(smollm2, artifacts: dict[str, Path]) -> dict:
    """Perplexity and next-token KL vs fp32 torch of our default artifact at accuracy_level 0 and 4 (ORT)."""
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
             f"({DECODE_TOKENS} decode steps each, every turn in a process of its own); in brackets the best round. "
             f"{meta['contention']}", "",
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

    engines = {name: EngineSpec("ort", str(path)) for name, path in artifacts.items()}
    engines["PyTorch eager fp32"] = EngineSpec("torch", "default")
    if llama_cpp_version():
        engines["llama.cpp Q4_1 GGUF"] = EngineSpec("llama.cpp", str(default_model_path()))
    times = benchmark.pedantic(interleaved, args=(engines, ROUNDS), rounds=1, iterations=1)
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
