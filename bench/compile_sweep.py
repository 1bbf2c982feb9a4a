"""`retarget compile` with every registered recipe on the bundled SmolLM2-135M, in one run on this machine:
each recipe is quantized, evaluated in torch, exported, lowered, checked for parity and evaluated in ONNX
Runtime exactly as `retarget compile --recipe NAME` does (the model is loaded once and shared).

    make sweep        # writes bench/results/compile-sweep.json and compile-sweep.md

Target: cpu-x86; a recipe whose lowering no CPU provider runs (FP4: TensorRT only) is compiled for
FALLBACK_TARGET instead, where `retarget compile` checks it through ONNX's reference DequantizeLinear
(the report's `ort.runs` says so). A recipe that fails is a row with its one-line error, not a lost run.
`python bench/compile_sweep.py NAME ...` compiles only those recipes; rows of earlier runs are kept, each
with the start time of the run that measured it ("run").
"""

from __future__ import annotations

import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from retarget import provenance
from retarget.compile import compile_model
from retarget.errors import RetargetError
from retarget.models.load import load_model
from retarget.quantize.configs import recipe_names

TARGET = "cpu-x86"
FALLBACK_TARGET = "h100-sxm"
EVAL_TOKENS = 1024
RESULTS = Path(__file__).parent / "results" / "compile-sweep.json"


def _row(report: dict) -> dict:
    """What the sweep table shows of one compile report (values keep their provenance in the JSON). Speed is
    left out: `make bench` measures it with the engines interleaved; a sweep may share the machine."""
    ort, torch_ = report["ort"], report["torch"]
    return {"target": report["target"], "lowering": report["recipe"]["lowering"],
            "accuracy_level": ort["accuracy_level"], "ort_runs": ort["runs"], "onnx_bytes": report["onnx"]["bytes"],
            "parity_max_abs_logit_diff": ort["parity_max_abs_logit_diff"],
            "perplexity_fp32": torch_["fp32"]["perplexity"], "perplexity_torch": torch_["quantized"]["perplexity"],
            "perplexity_ort": ort["quantized"]["perplexity"], "kl_ort": ort["quantized"]["kl_to_fp32"],
            "generation": ort["generation"]["text"]}


def compile_recipe(recipe: str, loaded, console: Console) -> dict:
    """RECIPE compiled for TARGET (FALLBACK_TARGET when TARGET's providers cannot run its lowering)."""
    with tempfile.TemporaryDirectory(prefix="retarget-sweep-") as tmp:
        for target in (TARGET, FALLBACK_TARGET):
            try:
                return _row(compile_model("default", target=target, recipe=recipe, out=Path(tmp) / recipe,
                                          eval_tokens=EVAL_TOKENS, console=console, loaded=loaded))
            except RetargetError as err:
                if err.field != "--target" or target == FALLBACK_TARGET:
                    return {"target": target, "error": str(err)}
            except Exception as err:  # noqa: BLE001 - one failing recipe is a table row
                return {"target": target, "error": f"{type(err).__name__}: {str(err).splitlines()[0]}"}
    raise AssertionError("unreachable")


def markdown(rows: dict[str, dict], meta: dict) -> str:
    """One line per recipe: where it compiled to, size, parity, accuracy in torch and in ONNX Runtime."""
    lines = [f"# `retarget compile` for every recipe: SmolLM2-135M ({meta['date']})", "",
             f"`{meta['command']}` on {meta['machine']['cpu']} ({meta['machine']['cores']} cores), onnxruntime "
             f"{meta['machine']['versions'].get('onnxruntime')}, torch {meta['machine']['versions'].get('torch')}; "
             f"{EVAL_TOKENS} scored tokens, one compile after another (the last run took "
             f"{meta['run_s'] / 60:.0f} min; each row's run is in the JSON). "
             "Parity: max |logit diff| of ONNX Runtime (fp32 activations) against the torch quantized model, "
             "tolerance 1e-2. ppl ORT / KL ORT: the artifact as the target runs it (CPU: MatMulNBits at "
             "accuracy_level 4, int8 activations).", "",
             "| recipe | target | lowering | MiB | parity | ppl torch | ppl ORT | KL ORT |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for name, row in rows.items():
        if "error" in row:
            lines.append(f"| {name} | {row['target']} | failed: {row['error']} | | | | | |")
            continue
        runs = "" if row["ort_runs"] == "the artifact" else " (reference DQ)"
        lines.append(f"| {name} | {row['target']} | {row['lowering']}{runs} | {row['onnx_bytes'] / 2**20:.1f} | "
                     f"{row['parity_max_abs_logit_diff']['value']:.1e} | {row['perplexity_torch']['value']:.3f} | "
                     f"{row['perplexity_ort']['value']:.3f} | {row['kl_ort']['value']:.4f} |")
    fp32 = next((r["perplexity_fp32"]["value"] for r in rows.values() if "perplexity_fp32" in r), None)
    compiled = sum("error" not in r for r in rows.values())
    lines += ["", f"{compiled} of {len(rows)} recipes compiled; fp32 perplexity on these tokens: "
              + (f"{fp32:.3f}." if fp32 else "n/a.")]
    return "\n".join(lines) + "\n"


def _registry_order(name: str) -> int:
    names = recipe_names()
    return names.index(name) if name in names else len(names)


def main(recipes: list[str]) -> None:
    started = time.perf_counter()
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    console = Console(stderr=True)
    loaded = load_model("default")
    rows: dict[str, dict] = json.loads(RESULTS.read_text())["rows"] if RESULTS.is_file() else {}
    for i, recipe in enumerate(recipes, 1):
        console.rule(f"{i}/{len(recipes)} {recipe}")
        rows[recipe] = {**compile_recipe(recipe, loaded, console), "run": date}
        rows = {name: rows[name] for name in sorted(rows, key=_registry_order)}
        meta = {"command": "make sweep (python bench/compile_sweep.py)", "date": date,
                "machine": provenance.machine(), "run_s": time.perf_counter() - started,
                "eval_tokens": EVAL_TOKENS, "target": TARGET, "fallback_target": FALLBACK_TARGET}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({**meta, "rows": rows}, indent=2))
        RESULTS.with_suffix(".md").write_text(markdown(rows, meta))


if __name__ == "__main__":
    main(sys.argv[1:] or recipe_names())
