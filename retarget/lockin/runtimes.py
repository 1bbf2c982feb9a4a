"""Runtime evidence for the lock-in report: for each cell, the ONNX Runtime operators the model's recipe
exports to and which execution providers of the device's vendor run them natively (retarget.runtimes).

The operators are those of an ONNX Runtime GenAI-style export (GroupQueryAttention, RotaryEmbedding,
SkipSimplifiedLayerNormalization; MatMulNBits for 4-bit weights; QMoE / MoE experts); architecture features
with no ONNX Runtime operator (MLA, Mamba scans, linear attention) are named as such.
"""

from __future__ import annotations

from typing import Any

from retarget.models.spec import ModelSpec
from retarget.runtimes import describe, providers, providers_for_vendor

ASSUMPTION = ("operators of an ONNX Runtime GenAI-style export of each recipe; providers: those of the device's "
              "vendor, CPU last (retarget/runtimes/ep_ops.json)")
_QUANTIZED = ("int", "mxfp4", "nvfp4", "fp8")


def recipe_ops(spec: ModelSpec, recipe: dict[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """((domain, op) the recipe's export uses, features that have no ONNX Runtime operator)."""
    ms = "com.microsoft"
    ops = [(ms, "SkipSimplifiedLayerNormalization"), (ms, "RotaryEmbedding")]
    kinds = {g.attention.kind for g in spec.blocks if g.attention is not None}
    if kinds & {"gqa", "mha", "mqa", "sliding", "sinks"}:   # local_window_size and head_sink included
        ops.append((ms, "GroupQueryAttention"))
    weight, expert = recipe["weight_format"], recipe["expert_format"]
    if weight.startswith(("int4", "int3", "int2", "mxfp4", "nvfp4")) or weight.endswith("a16"):
        ops.append((ms, "MatMulNBits"))
    elif weight == "int8":
        ops += [("ai.onnx", "DynamicQuantizeLinear"), ("ai.onnx", "MatMulInteger")]
    elif weight == "fp8":
        ops += [("ai.onnx", "DequantizeLinear"), ("ai.onnx", "MatMul")]
    else:
        ops.append(("ai.onnx", "MatMul"))
    if spec.is_moe:
        ops.append((ms, "QMoE" if expert.startswith(_QUANTIZED) else "MoE"))
    missing = sorted(kinds & {"mla", "linear"})
    if spec.ssm_layers:
        missing.append("mamba scan")
    return list(dict.fromkeys(ops)), missing


def annotate_runtimes(matrix: dict[str, Any], specs: dict[str, ModelSpec]) -> None:
    """Add `runtimes` to every cell's recipe: the providers considered, one line per operator, the verdict
    of each provider per operator ('native', 'absent' or 'unknown': its list was not checked) and the
    features with no operator."""
    vendors = {p["id"]: p["vendor"] for p in matrix["profiles"]}
    table = providers()
    for m in matrix["models"]:
        spec = specs[m["name"]]
        for device, cell in m["cells"].items():
            names = providers_for_vendor(vendors[device])
            ops, missing = recipe_ops(spec, cell["recipe"])
            lines = [describe(d, op, names) for d, op in ops]
            lines += [f"{f}: no ONNX Runtime operator (exported as plain ops)" for f in missing]
            verdicts = [{"domain": d, "op": op, "verdicts": {table[n].short: table[n].verdict(d, op) for n in names}}
                        for d, op in ops]
            cell["recipe"]["runtimes"] = {"providers": names, "ops": lines, "verdicts": verdicts,
                                          "no_operator": missing}
    matrix["runtime_evidence"] = {"assumption": ASSUMPTION, "provenance": "published operator lists",
                                  "sources": {n: {"short": p.short, "sources": list(p.sources)}
                                              for n, p in table.items()}}
