"""Export a transformers causal LM to ONNX with KV cache, then lower our quantized weights.

The float graph is built directly from the model's block descriptions (retarget.export.decoder: ONNX
Runtime's fused attention, norm and MoE operators); every MatMul whose module was quantized is then replaced
by the recipe's lowering built from our own codes (never ONNX Runtime's quantizer), and the graph is saved
with its weights in one external-data file next to it. optimum-onnx's generic export (`export_float`) remains
as the comparison point of the speed benchmarks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import onnx
from torch import nn

from retarget.errors import RetargetError
from retarget.export.activations import ActivationQuant
from retarget.export.client_metadata import optional_logits_to_keep
from retarget.export.decoder import build_decoder, check
from retarget.export.graph import module_name_of
from retarget.export.lowering import lower_tied_embedding_for, lower_weights
from retarget.quantize.weight import QuantizedWeight

MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
LAYER = re.compile(r"model\.layers\.(\d+)\.")


def export_float(model: nn.Module, out_dir: Path) -> Path:
    """optimum-onnx export, task text-generation-with-past; returns the path of the float graph."""
    from optimum.exporters.onnx import onnx_export_from_model

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        onnx_export_from_model(model, str(out_dir), task="text-generation-with-past", do_validation=False,
                               no_post_process=True)
    return out_dir / MODEL_FILE


def check_exportable(model: nn.Module, kv_cache: str | None = None,
                     activations: dict[str, ActivationQuant] | None = None) -> None:
    """Refuse, before anything is built or written, a model or op the decoder graph cannot lower (one line
    naming the op and the layer), or a quantized KV cache with quantized activations."""
    if kv_cache is not None and activations:
        raise RetargetError("a quantized KV cache combines with weight-only recipes, not quantized activations",
                            field="--recipe")
    check(model, kv_cache)


def export_quantized(model: nn.Module, qweights: dict[str, QuantizedWeight], out_dir: Path,
                     accuracy_level: int = 0, tied_embedding: bool = False, lowering: str = "matmulnbits",
                     activations: dict[str, ActivationQuant] | None = None,
                     kv_cache: str | None = None) -> dict[str, int]:
    """Write OUT_DIR/model.onnx (+ model.onnx.data): MODEL's graph with QWEIGHTS lowered by LOWERING
    (retarget.export.lowering: MatMulNBits by default, or QDQ) and, for TIED_EMBEDDING, the embedding reading
    lm_head's quantized table. ACTIVATIONS: the modules whose inputs are quantized too (W8A8), as QDQ.
    The graph is retarget.export.decoder's (projections fused where their formats agree, MoE experts in one
    node). KV_CACHE ('int8' or 'e4m3') stores the cache quantized (weight-only recipes)."""
    linears = len(qweights)
    check_exportable(model, kv_cache, activations)
    proto, qweights = build_decoder(model, qweights, kv_cache)
    optional_logits_to_keep(proto)  # standard clients (optimum, onnxruntime-genai) run without it
    lowered = lower_weights(proto, qweights, lowering, accuracy_level, activations)
    embedding_quantized = tied_embedding and lower_tied_embedding_for(proto, lowering, qweights.get("lm_head"))
    onnx.save_model(proto, str(out_dir / MODEL_FILE), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=DATA_FILE, size_threshold=1024)
    onnx.checker.check_model(str(out_dir / MODEL_FILE), full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    return {"nodes": len(ops), "nodes_per_layer": nodes_per_layer(proto),
            "moe_nodes": ops.count("MoE") + ops.count("QMoE"), "qmoe_nodes": ops.count("QMoE"),
            "matmulnbits_nodes": ops.count("MatMulNBits"), "float_matmul_nodes": ops.count("MatMul"),
            "dequantize_linear_nodes": ops.count("DequantizeLinear"), "lowering": lowering,
            "opset": next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
            "lowered": lowered, "linears_lowered": linears, "embedding_quantized": embedding_quantized,
            "bytes": sum(f.stat().st_size for f in out_dir.glob("model.onnx*"))}


def export_artifact(reference: nn.Module, quantized: nn.Module, qweights: dict[str, QuantizedWeight], plan: Any,
                    folder: Path) -> dict[str, Any]:
    """The artifact FOLDER/model.onnx of REFERENCE with QWEIGHTS lowered as PLAN (a retarget.plan.Recipe) says,
    the activations QUANTIZED's modules quantize quantized too, and for those the float-activation parity twin
    FOLDER/parity/model.onnx (retarget.eval.verify); returns export_quantized's summary of the artifact."""
    from retarget.export.activations import activation_quant
    from retarget.quantize.api import ties_embedding

    activations = activation_quant(quantized)
    export_args = {"tied_embedding": ties_embedding(quantized), "lowering": plan.lowering, "kv_cache": plan.kv_element}
    info = export_quantized(reference, qweights, folder, plan.accuracy_level, activations=activations, **export_args)
    if any(a.element is not None for a in activations.values()):
        (folder / "parity").mkdir()
        export_quantized(reference, qweights, folder / "parity", 0, **export_args,
                         activations={n: dataclasses.replace(a, element=None) for n, a in activations.items()})
    return info


def nodes_per_layer(proto: onnx.ModelProto) -> float:
    """Mean number of nodes per decoder layer (nodes of module model.layers.N, the lowerings' included)."""
    layers = Counter(m.group(1) for n in proto.graph.node if (m := LAYER.match(module_name_of(n))))
    return sum(layers.values()) / max(len(layers), 1)


def write_accuracy_variant(model_path: Path, accuracy_level: int, variant_path: Path) -> Path:
    """Copy MODEL_PATH's graph (sharing its external data file) with every MatMulNBits at ACCURACY_LEVEL
    (the attribute added where a node has none)."""
    proto = onnx.load(str(model_path), load_external_data=False)
    for node in proto.graph.node:
        if node.op_type == "MatMulNBits":
            kept = [a for a in node.attribute if a.name != "accuracy_level"]
            del node.attribute[:]
            node.attribute.extend([*kept, onnx.helper.make_attribute("accuracy_level", accuracy_level)])
    onnx.save_model(proto, str(variant_path))
    return variant_path
