"""Decode and prefill speed of retarget's decoder graph (retarget.export.decoder) against optimum-onnx's generic
export of the same float32 model, per tiny family and for the bundled SmolLM2-135M, in one run on this machine:
ONNX Runtime's CPU provider, batch 1, the two sessions measured one after the other for each model.

    python bench/decoder_graph_speed.py [NAME ...]   # writes bench/results/decoder-graph.json and .md
    python bench/decoder_graph_speed.py --int4 wide-moe   # both graphs with int4-g32-sym weights (MatMulNBits,
                                                          # level 4; our experts in QMoE), rows appended

With --int4 each model is quantized once and the same weights lowered into both graphs (optimum's experts as a
MatMulNBits per expert matrix), the two sessions interleaved over 3 rounds (best round each).

A family optimum cannot export is a row with its one-line error. Nodes per layer count the graph's nodes of
module model.layers.N (optimum's node names carry the same module paths).
"""

from __future__ import annotations

import datetime
import json
import sys
import tempfile
from pathlib import Path

import onnx
import torch

from retarget import provenance
from retarget.export.decoder import build_decoder
from retarget.export.onnx_export import export_float, nodes_per_layer
from retarget.export.runtime import OrtCausalLM
from retarget.quantize.api import untie_lm_head

FAMILIES = ["llama", "qwen3", "gemma-3", "gpt-oss", "qwen3-moe", "mixtral", "olmoe", "glm-4.5", "llama-4"]
# a Qwen3-MoE at working widths (random weights): tiny models' decode is dominated by their 49k-row lm_head,
# which both graphs share; here the expert layers are what a decode step spends its time in
WIDE_MOE = {"hidden_size": 512, "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 4,
            "head_dim": 64, "num_experts": 16, "num_experts_per_tok": 4, "moe_intermediate_size": 256,
            "intermediate_size": 1024, "vocab_size": 4096, "max_position_embeddings": 512}
PROMPT, DECODE = 64, 64
RESULTS = Path(__file__).parent / "results" / "decoder-graph.json"


def _measure(path: Path) -> dict:
    proto = onnx.load(str(path), load_external_data=False)
    speed = OrtCausalLM(path).speed(PROMPT, DECODE)
    return {"nodes": len(proto.graph.node), "nodes_per_layer": nodes_per_layer(proto),
            "decode_tokens_per_s": speed["decode_tokens_per_s"], "prefill_tokens_per_s": speed["prefill_tokens_per_s"]}


def measure(name: str, model) -> dict:
    """Both graphs of MODEL: retarget's and optimum's (or optimum's error)."""
    untie_lm_head(model)
    row: dict = {"model": name, "model_type": model.config.model_type}
    with tempfile.TemporaryDirectory(prefix="retarget-graph-bench-") as tmp:
        ours = Path(tmp) / "ours" / "model.onnx"
        ours.parent.mkdir()
        onnx.save_model(build_decoder(model)[0], str(ours), save_as_external_data=True, location="model.onnx.data")
        row["retarget"] = _measure(ours)
        try:
            row["optimum"] = _measure(export_float(model, Path(tmp) / "optimum"))
        except Exception as err:  # noqa: BLE001 - a family optimum cannot export is a row
            row["optimum"] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"}
    if "decode_tokens_per_s" in row["optimum"]:
        row["decode_speedup"] = row["retarget"]["decode_tokens_per_s"] / row["optimum"]["decode_tokens_per_s"]
    return row


def measure_int4(name: str, model) -> dict:
    """Decode speed of both graphs with the same int4-g32-sym weights, interleaved over 3 rounds."""
    import copy

    from retarget.export.lowering import lower_weights
    from retarget.quantize import config_from_name, quantize_
    from retarget.quantize.api import quantized_weights

    untie_lm_head(model)
    quantized = copy.deepcopy(model)
    quantize_(quantized, config_from_name("int4-g32-sym"))
    qweights = quantized_weights(quantized)
    row: dict = {"model": f"{name}, int4-g32-sym", "model_type": model.config.model_type}
    with tempfile.TemporaryDirectory(prefix="retarget-graph-bench-") as tmp:
        ours, renamed = build_decoder(model, qweights)
        theirs = onnx.load(str(export_float(model, Path(tmp) / "optimum")))
        paths = {}
        for label, (proto, weights) in {"retarget": (ours, renamed), "optimum": (theirs, dict(qweights))}.items():
            lower_weights(proto, weights, "matmulnbits", 4)
            paths[label] = Path(tmp) / f"{label}.onnx"
            onnx.save_model(proto, str(paths[label]), save_as_external_data=True, location=f"{label}.onnx.data")
            row[label] = {"nodes": len(proto.graph.node), "nodes_per_layer": nodes_per_layer(proto)}
        runtimes = {label: OrtCausalLM(path) for label, path in paths.items()}
        for _ in range(3):
            for label, runtime in runtimes.items():
                speed = runtime.speed(PROMPT, DECODE, repeats=1)
                for key in ("decode_tokens_per_s", "prefill_tokens_per_s"):
                    row[label][key] = max(row[label].get(key, 0.0), speed[key])
    row["decode_speedup"] = row["retarget"]["decode_tokens_per_s"] / row["optimum"]["decode_tokens_per_s"]
    return row


def markdown(result: dict) -> str:
    machine = result["machine"]
    lines = ["# Decoder graph vs optimum-onnx's generic export (float32, batch 1, ONNX Runtime CPU)", "",
             f"Measured {result['date']} on {machine['cpu']} ({machine['cores']} cores), "
             f"onnxruntime {machine['versions'].get('onnxruntime')}, transformers "
             f"{machine['versions'].get('transformers')}; prompt {PROMPT} tokens, {DECODE} decode steps.", "",
             "| model | model_type | nodes/layer (retarget) | nodes/layer (optimum) | decode t/s (retarget) | "
             "decode t/s (optimum) | speedup | prefill t/s (retarget) |", "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        ours, theirs = row["retarget"], row["optimum"]
        if "error" in theirs:
            optimum = f"– | export fails: {theirs['error'][:80]} | –"
        else:
            optimum = (f"{theirs['nodes_per_layer']:.0f} | {theirs['decode_tokens_per_s']:.0f} | "
                       f"{row['decode_speedup']:.1f}x")
        head, tail = optimum.split(" | ", 1)
        lines.append(f"| {row['model']} | {row['model_type']} | {ours['nodes_per_layer']:.0f} | {head} | "
                     f"{ours['decode_tokens_per_s']:.0f} | {tail} | {ours['prefill_tokens_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


def _wide_moe():
    from transformers import AutoModelForCausalLM, Qwen3MoeConfig

    torch.manual_seed(0)
    config = Qwen3MoeConfig(**WIDE_MOE)
    config._attn_implementation = "eager"
    return AutoModelForCausalLM.from_config(config).eval()


def main(names: list[str], int4: bool = False) -> None:
    from retarget.models.load import load_model
    from retarget.models.tiny import build_tiny

    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": provenance.machine(), "rows": []}
    models = [(f"tiny:{name}", lambda name=name: build_tiny(name)) for name in names or FAMILIES if name != "wide-moe"]
    if not names or "wide-moe" in names:
        models.insert(0, ("qwen3-moe, hidden 512, 16 experts", _wide_moe))
    if not names:
        models.append(("SmolLM2-135M", lambda: load_model("default").model))
    if int4 and RESULTS.exists():  # appended to the float rows of an earlier run
        result["rows"] = json.loads(RESULTS.read_text())["rows"]
    for label, build in models:  # written after every row: a long run keeps what it measured
        row = measure_int4(label, build()) if int4 else measure(label, build())
        result["rows"].append({**row, "run": result["date"]})
        RESULTS.write_text(json.dumps(result, indent=2))
        RESULTS.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main([a for a in sys.argv[1:] if a != "--int4"], int4="--int4" in sys.argv)
