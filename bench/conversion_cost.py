"""The accuracy price of running a model off its native format, measured on real weights.

Each model is first quantized to the native format (a stand-in: SmolLM2-135M and all-MiniLM-L6-v2 ship in
BF16/FP32, so their FP8 / MXFP4 versions are made here), then converted the way a device without that format
forces (dequantize the native weights, quantize again):

    fp8-block128        -> w8a8-int8            (Ascend 910B, A100: no FP8; INT8 W8A8)
    fp8-block128        -> gptq-int4-g128-asym  (W4A16 with GPTQ, calibrated on the converted weights)
    fp8-block128-ue8m0  -> fp8-block128         (power-of-two UE8M0 scales -> float32 scales)
    mxfp4               -> int4-g32-sym         (no MXFP4 kernel: 4-bit blocks requantised to int4 g32)

Scores: SmolLM2 perplexity and KL to the float model on the first TOKENS tokens of the evaluation corpus;
MiniLM mean cosine similarity of sentence embeddings to the float model's. For each conversion the table also
scores the target quantized straight from float, so the price of the conversion itself (converted minus
direct) is separated from the price of the target format.

    python bench/conversion_cost.py      # writes bench/results/conversion-cost.{json,md}
    python bench/conversion_cost.py --skip gptq-int4-g128-asym   # without the (slow) GPTQ target
    python bench/conversion_cost.py --only gptq-int4-g128-asym   # just that target, merged into the results

A partial run (--only, --skip) replaces the rows it measures and keeps the others; every row names the run
(date, command, machine) it was measured in.
"""

from __future__ import annotations

import copy
import datetime
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

from retarget import provenance
from retarget.eval.corpus import corpus_text
from retarget.eval.embedding import EmbeddingScorer
from retarget.eval.metrics import Evaluator, torch_logits_fn
from retarget.outdir import write_files
from retarget.quantize import QuantLinear, calibration_tokens, collect_stats, config_from_name, quantize_
from retarget.quantize.api import linear_layers, untie_lm_head

CONVERSIONS = (("fp8-block128", "w8a8-int8"), ("fp8-block128", "gptq-int4-g128-asym"),
               ("fp8-block128-ue8m0", "fp8-block128"), ("mxfp4", "int4-g32-sym"))
TOKENS, WINDOW = 1024, 512
RESULTS = Path(__file__).parent / "results"


def dequantized(model: nn.Module) -> nn.Module:
    """MODEL with every QuantLinear replaced by an nn.Linear holding its dequantized float32 weight."""
    for name, module in list(model.named_modules()):
        if isinstance(module, QuantLinear):
            linear = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
            linear.weight.data = module.reference_weight(torch.float32).clone()
            if module.bias is not None:
                linear.bias.data = module.bias.float().clone()
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, leaf, linear)
    return model


def quantized(model: nn.Module, recipe: str, tokenizer, seq_len: int) -> nn.Module:
    config = config_from_name(recipe)
    q = copy.deepcopy(model)
    stats = None
    if config.needs_calibration:
        stats = collect_stats(q, calibration_tokens(tokenizer, seq_len=seq_len),
                              linear_layers(q, include_lm_head=False), seq_len=seq_len)
    quantize_(q, config, None, stats=stats)
    return q


def variants(model: nn.Module, tokenizer, seq_len: int, conversions: tuple[tuple[str, str], ...]):
    """(label, model) for every native format, conversion and direct target quantization."""
    natives = {n: quantized(model, n, tokenizer, seq_len) for n in dict.fromkeys(n for n, _ in conversions)}
    for name, q in natives.items():
        yield name, "native", q
    for native, target in conversions:
        yield f"{native} -> {target}", "converted", quantized(dequantized(copy.deepcopy(natives[native])), target,
                                                              tokenizer, seq_len)
    for target in dict.fromkeys(t for _, t in conversions):
        yield target, "direct", quantized(model, target, tokenizer, seq_len)


def selected(only: list[str], skip: list[str]) -> tuple[tuple[str, str], ...]:
    """The CONVERSIONS whose target is in ONLY (all when empty) and not in SKIP."""
    unknown = sorted(set(only + skip) - {t for _, t in CONVERSIONS})
    if unknown:
        raise ValueError(f"unknown target {unknown[0]!r} (--only/--skip); known: "
                         f"{', '.join(dict.fromkeys(t for _, t in CONVERSIONS))}")
    return tuple((n, t) for n, t in CONVERSIONS if (not only or t in only) and t not in skip)


def measure(conversions: tuple[tuple[str, str], ...]) -> tuple[dict[str, dict], float]:
    """Rows {name: {name, kind, smollm2, minilm}} of every variant of CONVERSIONS, and SmolLM2's float
    perplexity."""
    from retarget.models.encoder import load_encoder
    from retarget.models.load import load_model

    rows: dict[str, dict] = {}
    lm = load_model("default")
    untie_lm_head(lm.model)
    tokens = lm.tokenizer(corpus_text(), add_special_tokens=False)["input_ids"][:TOKENS]
    ev = Evaluator(tokens, window=WINDOW)
    ref = ev.reference(torch_logits_fn(lm.model))
    start = time.perf_counter()
    for label, kind, model in variants(lm.model, lm.tokenizer, 256, conversions):
        score = ev.score(torch_logits_fn(model), label)
        rows.setdefault(label, {"name": label, "kind": kind})["smollm2"] = {
            **score.to_dict(), "perplexity_ratio": score.perplexity / ref.perplexity}
        print(f"[{time.perf_counter() - start:7.1f} s] SmolLM2 {label}", rows[label]["smollm2"], file=sys.stderr,
              flush=True)
    enc = load_encoder()
    scorer = EmbeddingScorer(enc)
    for label, kind, model in variants(enc.model, enc.tokenizer, 128, conversions):
        rows.setdefault(label, {"name": label, "kind": kind})["minilm"] = scorer.score(model).to_dict()
        print(f"[{time.perf_counter() - start:7.1f} s] MiniLM {label}", rows[label]["minilm"], file=sys.stderr,
              flush=True)
    return rows, ref.perplexity


def merged(old: dict | None, rows: dict[str, dict], run: dict, reference: dict) -> dict:
    """The results file: OLD's rows (if any) with ROWS, measured in RUN, replacing those of the same name,
    and the conversion price of every conversion row recomputed from the rows it now sits next to."""
    runs = [r for r in (old or {}).get("runs", []) if r["date"] != run["date"]]
    if old and "runs" not in old:   # a file written before runs were recorded: one run, its fields on top
        runs = [{k: old[k] for k in ("date", "command", "wall_s", "machine")}]
        for row in old["rows"]:
            row["run"] = old["date"]
    all_rows = {r["name"]: r for r in (old or {}).get("rows", [])}
    all_rows.update({name: {**row, "run": run["date"]} for name, row in rows.items()})
    for native, target in CONVERSIONS:
        row = all_rows.get(f"{native} -> {target}")
        if row is None or target not in all_rows:
            continue
        row["native"], row["target"] = native, target
        for model, key in (("smollm2", "perplexity_ratio"), ("minilm", "mean_cosine")):
            if model in row and model in all_rows[target]:
                # what converting adds on top of the target format itself
                row[model]["conversion_price"] = row[model][key] - all_rows[target][model][key]
    order = {kind: i for i, kind in enumerate(("native", "converted", "direct"))}
    used = {r["run"] for r in all_rows.values()}
    return {"provenance": "measured", "tokens": TOKENS, "window": WINDOW, "reference": reference,
            "runs": [r for r in [*runs, run] if r["date"] in used],
            "rows": sorted(all_rows.values(), key=lambda r: order[r["kind"]])}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="measure only conversions to this target")
    parser.add_argument("--skip", action="append", default=[], help="a target recipe to leave out")
    args = parser.parse_args()
    try:
        conversions = selected(args.only, args.skip)
    except ValueError as err:
        print(f"conversion_cost.py: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    start = time.perf_counter()
    rows, ref_ppl = measure(conversions)
    run = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "command": " ".join(["python bench/conversion_cost.py", *sys.argv[1:]]),
           "wall_s": round(time.perf_counter() - start, 1), "machine": provenance.machine()}
    path = RESULTS / "conversion-cost.json"
    old = json.loads(path.read_text()) if path.exists() and (args.only or args.skip) else None
    out = merged(old, rows, run, {"smollm2_perplexity": ref_ppl, "minilm": "float32 model, cosine 1"})
    RESULTS.mkdir(exist_ok=True)
    write_files({path: json.dumps(out, indent=1) + "\n", RESULTS / "conversion-cost.md": markdown(out)})


def markdown(out: dict) -> str:
    runs = {r["date"]: i + 1 for i, r in enumerate(out["runs"])}
    lines = ["# Accuracy price of format conversions", "",
             f"SmolLM2-135M: perplexity ratio to the float model and KL on {out['tokens']} tokens; "
             "all-MiniLM-L6-v2: mean cosine to the float embeddings. Native formats are stand-ins made from the "
             "float weights; 'conversion price' = converted minus the target quantized straight from float. "
             "Measured in these runs:", ""]
    lines += [f"{runs[r['date']]}. {r['date']} on {r['machine'].get('cpu', 'this machine')} "
              f"({r['machine'].get('cores')} cores, torch {r['machine']['versions'].get('torch')}): "
              f"`{r['command']}`, {r['wall_s']} s" for r in out["runs"]]
    lines += ["", "| variant | kind | SmolLM2 ppl ratio | SmolLM2 KL | MiniLM cosine | price (ppl ratio / cosine) "
              "| run |", "|---|---|---|---|---|---|---|"]
    for r in out["rows"]:
        s, m = r.get("smollm2", {}), r.get("minilm", {})
        price = (f"{s['conversion_price']:+.4f} / {m['conversion_price']:+.5f}" if "conversion_price" in s else "")
        lines.append(f"| {r['name']} | {r['kind']} | {s.get('perplexity_ratio', float('nan')):.4f} | "
                     f"{s.get('kl_to_reference', float('nan')):.4f} | {m.get('mean_cosine', float('nan')):.5f} | "
                     f"{price} | {runs[r['run']]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
