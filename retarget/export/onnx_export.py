"""Export a transformers causal LM to ONNX with KV cache (optimum-onnx), then lower our quantized weights.

The float model is exported once; every MatMul whose module was quantized is then replaced by a
MatMulNBits node built from our own codes (never ONNX Runtime's quantizer), and the graph is saved
with its weights in one external-data file next to it.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path

import onnx
from torch import nn

from retarget.errors import RetargetError
from retarget.export.activations import ActivationQuant
from retarget.export.client_metadata import optional_logits_to_keep
from retarget.export.llama_graph import llama_graph, unsupported_reason
from retarget.export.lowering import lower_tied_embedding_for, lower_weights
from retarget.quantize.weight import QuantizedWeight

MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"


def export_float(model: nn.Module, out_dir: Path) -> Path:
    """optimum-onnx export, task text-generation-with-past; returns the path of the float graph."""
    from optimum.exporters.onnx import onnx_export_from_model

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        onnx_export_from_model(model, str(out_dir), task="text-generation-with-past", do_validation=False,
                               no_post_process=True)
    return out_dir / MODEL_FILE


def check_kv_cache_model(model: nn.Module) -> None:
    """Refuse (one line, --recipe) a quantized KV cache for a model the direct graph cannot build."""
    reason = unsupported_reason(model)
    if reason is not None:
        raise RetargetError(f"a quantized KV cache (kv-int8, kv-fp8) is lowered to ONNX for Llama decoders only; "
                            f"this model: {reason}", field="--recipe")


def export_quantized(model: nn.Module, qweights: dict[str, QuantizedWeight], out_dir: Path,
                     accuracy_level: int = 0, tied_embedding: bool = False, lowering: str = "matmulnbits",
                     activations: dict[str, ActivationQuant] | None = None,
                     kv_cache: str | None = None) -> dict[str, int]:
    """Write OUT_DIR/model.onnx (+ model.onnx.data): MODEL's graph with QWEIGHTS lowered by LOWERING
    (retarget.export.lowering: MatMulNBits by default, or QDQ) and, for TIED_EMBEDDING, the embedding reading
    lm_head's quantized table. ACTIVATIONS: the modules whose inputs are quantized too (W8A8), as QDQ.
    Llama-family models lowered to MatMulNBits are built directly (retarget.export.llama_graph: ORT's
    GroupQueryAttention and fused norms, projections fused where their formats agree); others via optimum.
    KV_CACHE ('int8' or 'e4m3') stores the cache quantized, which only the direct graph does (with any
    weight lowering, weight-only recipes)."""
    linears = len(qweights)
    if kv_cache is not None:
        check_kv_cache_model(model)
        if activations:
            raise RetargetError("a quantized KV cache combines with weight-only recipes, not quantized activations",
                                field="--recipe")
        proto, qweights = llama_graph(model, qweights, kv_cache)
    elif lowering == "matmulnbits" and not activations and unsupported_reason(model) is None:
        proto, qweights = llama_graph(model, qweights)  # ORT's fused ops: fewer nodes, much faster decode
    else:
        with tempfile.TemporaryDirectory(prefix="retarget-export-") as tmp:
            proto = onnx.load(str(export_float(model, Path(tmp))))
    optional_logits_to_keep(proto)  # standard clients (optimum, onnxruntime-genai) run without it
    lowered = lower_weights(proto, qweights, lowering, accuracy_level, activations)
    embedding_quantized = tied_embedding and lower_tied_embedding_for(proto, lowering, qweights.get("lm_head"))
    onnx.save_model(proto, str(out_dir / MODEL_FILE), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=DATA_FILE, size_threshold=1024)
    onnx.checker.check_model(str(out_dir / MODEL_FILE), full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    return {"matmulnbits_nodes": ops.count("MatMulNBits"), "float_matmul_nodes": ops.count("MatMul"),
            "dequantize_linear_nodes": ops.count("DequantizeLinear"), "lowering": lowering,
            "opset": next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
            "lowered": lowered, "linears_lowered": linears, "embedding_quantized": embedding_quantized,
            "bytes": sum(f.stat().st_size for f in out_dir.glob("model.onnx*"))}


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
