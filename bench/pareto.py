"""CPU Pareto of SmolLM2-135M in one run on this machine: KL to fp32 (and size) against decode tokens/s for
retarget's CPU recipes and the peers: onnxruntime-genai's model builder (int4 RTN and k_quant, run through
genai's own loop), ONNX Runtime's MatMulNBits quantizer, and llama.cpp on the GGUF when llama-cpp-python is
installed (`make bench` builds it).

    make pareto        # writes bench/results/pareto.{json,md,png}

Accuracy: perplexity and next-token KL against the fp32 torch model (the GGUF dequantized) on the first
ACCURACY_TOKENS tokens of the evaluation corpus, every graph run by ONNX Runtime as its engine runs it.
Speed: bench/peers/rounds.py's interleaved rounds (a 128-token prefill, then greedy decode steps, the
engines taking turns so load from elsewhere falls on all alike, each turn in a process of its own); medians
over the rounds. retarget's
artifacts are timed twice: through retarget's runtime and through onnxruntime-genai's loop, the loop the
builder's artifacts run in. The builder needs transformers 5: it runs in its own venv (GENAI_PYTHON).
RETARGET_PARETO_RECIPES (comma-separated) picks the recipes; the default is every CPU recipe that lowers to
MatMulNBits (the fast CPU path) and fp32. RETARGET_PARETO_REUSE=DIR measures the artifacts an earlier run
built in DIR (its work folder) instead of building them again, and their accuracy scores (kept beside each
graph in pareto-accuracy.json); RETARGET_PARETO_BUILD_ONLY=1 stops after building and scoring, so the timed
rounds can be taken later, on a quiet machine, with RETARGET_PARETO_REUSE.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.peers.compiled import build_recipe  # noqa: E402
from bench.peers.engines import EngineSpec, llama_cpp_version  # noqa: E402
from bench.peers.rounds import DECODE_TOKENS, PROMPT, ROUNDS, THREADS, interleaved, summarize  # noqa: E402
from retarget import provenance  # noqa: E402
from retarget.runner.bench import initializer_bytes  # noqa: E402

ACCURACY_TOKENS = 1024
LLAMA_CPP = "llama.cpp Q4_1 GGUF"
RESULTS = ROOT / "bench" / "results"
GENAI_PYTHON = os.environ.get("GENAI_PYTHON", str(ROOT / ".venv-genai" / "bin" / "python"))
DEFAULT_RECIPES = ("keep", "fp32", "int4-g32-sym", "int4-g32-asym", "int4-g64-asym", "int4-g128-asym",
                   "int8-channel-sym", "gptq-int4-g64-asym-actorder", "gptq-int4-g64-asym-head4-actorder",
                   "gptq-int4-g128-asym-actorder",
                   "awq-int4-g64-asym", "awq-int4-g128-asym", "hqq-int4-g64-asym", "mse-int4-g64-asym")
BUILDER_MODES = {"genai builder int4 RTN (g32 sym)": ("rtn", []),
                 "genai builder int4 k_quant (g32)": ("k_quant", ["--extra_options", "algo_config=k_quant"])}


def build_genai(smollm2: Any, work: Path) -> dict[str, Path]:
    """The builder's artifacts (`-p int4 -e cpu`, each mode) from an HF folder of the fp32 model."""
    from retarget.export.client_metadata import tokenizer_with_model_tokens

    hf = work / "hf"
    if not (hf / "config.json").exists():
        smollm2.model.save_pretrained(hf)
        tokenizer_with_model_tokens(smollm2.tokenizer, smollm2.model.config).save_pretrained(hf)
    built = {}
    for label, (folder, extra) in BUILDER_MODES.items():
        out = built[label] = work / folder
        if (out / "model.onnx").exists():
            continue
        subprocess.run([GENAI_PYTHON, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(out),
                        "-p", "int4", "-e", "cpu", "-c", str(work / "cache"), *extra],
                       check=True, stdout=subprocess.DEVNULL)
    return built


def build_ort_quantizer(smollm2: Any, work: Path) -> Path:
    """ONNX Runtime's MatMulNBitsQuantizer (default RTN, 4-bit asymmetric, blocks of 128) on optimum's export."""
    from bench.peers.ort_quantizer import quantized_artifact
    from retarget.export.onnx_export import export_float

    if (work / "ortq" / "model.onnx").exists():
        return work / "ortq" / "model.onnx"
    (work / "optimum").mkdir()
    (work / "ortq").mkdir()
    return quantized_artifact(export_float(smollm2.model, work / "optimum"), work / "ortq")


def accuracy(smollm2: Any, graphs: dict[str, Path]) -> dict[str, dict]:
    """Perplexity and KL to fp32 torch of every graph, run by ONNX Runtime."""
    from retarget.eval.corpus import corpus_text
    from retarget.eval.metrics import Evaluator, torch_logits_fn
    from retarget.export.runtime import OrtCausalLM
    from retarget.models.load import default_model_path

    tokens = smollm2.tokenizer(corpus_text(), add_special_tokens=False)["input_ids"][:ACCURACY_TOKENS]
    evaluator = Evaluator(tokens, window=ACCURACY_TOKENS)
    evaluator.reference(torch_logits_fn(smollm2.model), "fp32 (torch)")
    out = {}
    if llama_cpp_version():
        score = evaluator.score(llama_cpp_logits(default_model_path()), LLAMA_CPP)
        out[LLAMA_CPP] = {"perplexity": score.perplexity, "kl_to_fp32": score.kl_to_reference, "tokens": score.tokens}
    for label, path in graphs.items():
        cached = path.parent / "pareto-accuracy.json"
        if cached.exists() and json.loads(cached.read_text())["tokens"] == len(tokens):
            out[label] = json.loads(cached.read_text())
            continue
        genai = (path.parent / "genai_config.json").exists() and label.startswith("genai")
        score = evaluator.score(genai_graph_logits(path) if genai else OrtCausalLM(path).logits, label)
        out[label] = {"perplexity": score.perplexity, "kl_to_fp32": score.kl_to_reference, "tokens": score.tokens}
        cached.write_text(json.dumps(out[label]) + "\n")
    return out


def llama_cpp_logits(gguf: Path) -> Any:
    """LogitsFn of llama.cpp on the GGUF: every position's logits of one evaluation of the window."""
    import torch
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=ACCURACY_TOKENS, n_batch=ACCURACY_TOKENS, n_threads=THREADS,
                n_threads_batch=THREADS, logits_all=True, verbose=False)

    def run(ids: torch.Tensor) -> torch.Tensor:
        llm.reset()
        llm.eval(ids[0].tolist())
        return torch.from_numpy(np.array(llm.scores[: ids.shape[1]]))

    return run


def genai_graph_logits(path: Path) -> Any:
    """LogitsFn over a genai builder graph (its cache dims are symbolic: the geometry comes from genai_config)."""
    import onnxruntime as ort
    import torch

    from retarget.export.runtime import session_options

    decoder = json.loads((path.parent / "genai_config.json").read_text())["model"]["decoder"]
    session = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    empty = np.zeros((1, decoder["num_key_value_heads"], 0, decoder["head_size"]), np.float32)
    past = {i.name: empty for i in session.get_inputs() if i.name.startswith("past_key_values")}

    def run(ids: torch.Tensor) -> torch.Tensor:
        feeds = {"input_ids": ids.numpy().astype(np.int64), "attention_mask": np.ones(ids.shape, np.int64), **past}
        return torch.from_numpy(session.run(["logits"], feeds)[0][0])

    return run


def pareto_front(rows: dict[str, dict]) -> set[str]:
    """Rows no other row beats on both decode tokens/s (higher) and KL (lower)."""
    def point(r: dict) -> tuple[float, float]:
        return r["decode_tokens_per_s"]["value"], r["kl_to_fp32"]

    return {name for name, row in rows.items()
            if not any(point(o)[0] >= point(row)[0] and point(o)[1] <= point(row)[1] and point(o) != point(row)
                       for o in rows.values())}


def markdown(rows: dict[str, dict], meta: dict) -> str:
    front = pareto_front(rows)
    lines = [f"# CPU Pareto: SmolLM2-135M, batch 1 ({meta['date']})", "",
             f"`{meta['command']}` on {meta['machine']['cpu']} ({meta['machine']['cores']} cores, {THREADS} threads "
             f"per engine), onnxruntime {meta['machine']['versions']['onnxruntime']}, onnxruntime-genai "
             f"{meta['onnxruntime_genai']}, llama-cpp-python {meta['llama_cpp_python'] or 'not installed'}. "
             f"Decode and prefill: medians over {ROUNDS} interleaved rounds ({PROMPT}-token prompt, {DECODE_TOKENS} "
             f"greedy steps; every turn in a process of its own, after a warm-up turn); KL / perplexity: "
             f"{ACCURACY_TOKENS} corpus tokens against fp32 torch. "
             f"{meta['contention']}", "",
             "| artifact | loop | MiB | KL to fp32 | ppl | decode tok/s | prefill tok/s | Pareto |",
             "|---|---|---:|---:|---:|---:|---:|:-:|"]
    for name, row in sorted(rows.items(), key=lambda kv: -kv[1]["decode_tokens_per_s"]["value"]):
        lines.append(f"| {row['artifact']} | {row['loop']} | {row['bytes'] / 2**20:.1f} | {row['kl_to_fp32']:.4f} | "
                     f"{row['perplexity']:.2f} | {row['decode_tokens_per_s']['value']:.1f} | "
                     f"{row['prefill_tokens_per_s']['value']:.0f} | {'●' if name in front else ''} |")
    return "\n".join(lines + ["", *meta["goals"]]) + "\n"


def goals(rows: dict[str, dict]) -> list[str]:
    """The speed goals as measured ratios, the genai loop for both sides where the peer runs in it: the default
    artifact (`auto` on the GGUF) >= 1.2x the builder's at lower KL; the most accurate 4-bit recipe >= the
    builder; `keep` >= 1.3x llama.cpp on the same weights."""
    from retarget.plan.recipe import GGUF_AUTO_RECIPE

    def dec(name: str) -> float | None:
        return rows[name]["decode_tokens_per_s"]["value"] if name in rows else None

    def versus(ours: str, peer: str, floor: float, what: str) -> str:
        ratio = dec(ours) / dec(peer)
        return (f"- {what} ({ours}): decode {ratio:.2f}x {peer} (goal >= {floor}x: "
                f"{'met' if ratio >= floor else 'missed'}); KL {rows[ours]['kl_to_fp32']:.4f} vs "
                f"{rows[peer]['kl_to_fp32']:.4f}")

    builder, llama = "genai builder int4 RTN (g32 sym) / genai loop", f"{LLAMA_CPP} / llama.cpp"
    lines = []
    int4 = [n for n, r in rows.items() if r["loop"] == "genai loop" and "int4" in r["artifact"]
            and r["artifact"].startswith("retarget")]
    if dec(builder):
        if dec(default := f"retarget {GGUF_AUTO_RECIPE} / genai loop"):
            lines.append(versus(default, builder, 1.2, "the default"))
        if int4:
            lines.append(versus(min(int4, key=lambda n: rows[n]["kl_to_fp32"]), builder, 1.0,
                                "the most accurate int4 recipe"))
    if not dec(llama):
        return [*lines, "- llama.cpp: not measured in this run (llama-cpp-python not installed; `make bench` "
                        "builds it)"]
    lines += [versus(f"retarget keep / {loop}", llama, 1.3, "keep") for loop in ("genai loop", "retarget runtime")
              if dec(f"retarget keep / {loop}")]
    return lines


def main() -> None:
    import tempfile

    import torch

    from retarget.models.load import default_model_path, load_model
    from retarget.quantize.api import untie_lm_head

    torch.manual_seed(0)
    smollm2 = load_model("default")
    untie_lm_head(smollm2.model)
    recipes = [r for r in os.environ.get("RETARGET_PARETO_RECIPES", ",".join(DEFAULT_RECIPES)).split(",") if r]
    reuse = os.environ.get("RETARGET_PARETO_REUSE")  # a work folder of an earlier run: its artifacts are reused
    work = Path(reuse) if reuse else Path(tempfile.mkdtemp(prefix="retarget-pareto-"))
    graphs, engines = {}, {}
    if Path(GENAI_PYTHON).exists():
        print("building the genai builder's artifacts", flush=True)
        for label, folder in build_genai(smollm2, work).items():
            graphs[label] = folder / "model.onnx"
            engines[f"{label} / genai loop"] = EngineSpec("genai", str(folder))
    print("ONNX Runtime's quantizer", flush=True)
    ort_quantizer = graphs["ORT quantizer RTN int4-g128"] = build_ort_quantizer(smollm2, work)
    engines["ORT quantizer RTN int4-g128 / retarget runtime"] = EngineSpec("ort", str(ort_quantizer))
    for recipe in recipes:
        print(f"building {recipe}", flush=True)
        folder = build_recipe(smollm2, recipe, work / recipe)
        graphs[f"retarget {recipe}"] = folder / "model.onnx"
        engines[f"retarget {recipe} / retarget runtime"] = EngineSpec("ort", str(folder / "model.onnx"))
        engines[f"retarget {recipe} / genai loop"] = EngineSpec("genai", str(folder))
    if llama_cpp_version():
        engines[f"{LLAMA_CPP} / llama.cpp"] = EngineSpec("llama.cpp", str(default_model_path()))
    print("accuracy", flush=True)
    scores = accuracy(smollm2, graphs)
    if os.environ.get("RETARGET_PARETO_BUILD_ONLY"):
        print(f"built and scored in {work}; time them with RETARGET_PARETO_REUSE={work}")
        return
    print("speed", flush=True)
    speed = summarize(interleaved(engines, ROUNDS))
    rows = {}
    for name, measured in speed.items():
        artifact, loop = name.split(" / ")
        path = graphs.get(artifact)
        score = scores[artifact]
        size = initializer_bytes(path) if path else default_model_path().stat().st_size
        rows[name] = {"artifact": artifact, "loop": loop, "bytes": size, **score, **measured}
    load = os.getloadavg()
    settings = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("RETARGET_"))
    meta = {"command": f"make pareto ({settings + ' ' if settings else ''}python bench/pareto.py)",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": provenance.machine(), "onnxruntime_genai": _version("onnxruntime-genai"),
            "llama_cpp_python": llama_cpp_version(), "threads_per_engine": THREADS,
            "contention": f"Load average when the rounds ended: {load[0]:.1f} / {load[2]:.1f} over 1 / 15 minutes "
                          f"on {len(os.sched_getaffinity(0))} cores.",
            "not_measured": [] if llama_cpp_version() else ["llama.cpp (llama-cpp-python not installed)"]}
    meta["goals"] = goals(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pareto.json").write_text(json.dumps({**meta, "rows": rows}, indent=2, default=str) + "\n")
    (RESULTS / "pareto.md").write_text(markdown(rows, meta))
    plot(rows, meta, RESULTS / "pareto.png")
    if not reuse:
        shutil.rmtree(work, ignore_errors=True)
    print((RESULTS / "pareto.md").read_text())


def plot(rows: dict[str, dict], meta: dict, path: Path) -> None:
    """KL (log) against decode tokens/s, marker area by size, the front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6.5))
    floor = 1e-4  # fp32 has KL 0: drawn at the floor of the log axis
    for name, row in rows.items():
        colour = "tab:blue" if row["artifact"].startswith("retarget") else "tab:orange"
        marker = "o" if row["loop"] == "genai loop" else "s"
        x, y = row["decode_tokens_per_s"]["value"], max(row["kl_to_fp32"], floor)
        ax.scatter(x, y, s=row["bytes"] / 2**20 * 2, c=colour, marker=marker, alpha=0.6)
        ax.annotate(name.replace("retarget ", ""), (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    front = sorted((rows[n]["decode_tokens_per_s"]["value"], max(rows[n]["kl_to_fp32"], floor))
                   for n in pareto_front(rows))
    ax.plot(*zip(*front, strict=True), "k--", lw=0.8, label="Pareto front")
    ax.set(xlabel="decode tokens/s (median, batch 1)", ylabel="KL to fp32 (nats/token, log)", yscale="log",
           title=f"SmolLM2-135M on {meta['machine']['cpu']} ({THREADS} threads), {meta['date'][:10]}\n"
                 "blue retarget, orange peers; o genai loop, s own runtime; area ~ size")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
