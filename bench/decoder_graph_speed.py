"""Decode and prefill speed of retarget's decoder graph (retarget.export.decoder) against optimum-onnx's generic
export of the same float32 model, per tiny family and for the bundled SmolLM2-135M, in one run on this machine:
ONNX Runtime's CPU provider, batch 1, the two sessions measured one after the other for each model.

    python bench/decoder_graph_speed.py [NAME ...]   # writes bench/results/decoder-graph.json and .md

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

from retarget import provenance
from retarget.export.decoder import build_decoder
from retarget.export.onnx_export import export_float, nodes_per_layer
from retarget.export.runtime import OrtCausalLM
from retarget.quantize.api import untie_lm_head

FAMILIES = ["llama", "qwen3", "gemma-3", "gpt-oss", "qwen3-moe", "mixtral", "olmoe", "glm-4.5", "llama-4"]
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


def main(names: list[str]) -> None:
    from retarget.models.load import load_model
    from retarget.models.tiny import build_tiny

    rows = [measure(f"tiny:{name}", build_tiny(name)) for name in names or FAMILIES]
    if not names:
        rows.append(measure("SmolLM2-135M", load_model("default").model))
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": provenance.machine(), "rows": rows}
    RESULTS.write_text(json.dumps(result, indent=2))
    RESULTS.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main(sys.argv[1:])
