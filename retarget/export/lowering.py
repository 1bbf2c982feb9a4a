"""Which lowering carries the quantized weights into the graph: `lower_weights` dispatches on the recipe's
lowering name (retarget.plan.recipe.LOWERINGS says which ONNX Runtime providers run each one)."""

from __future__ import annotations

import onnx

from retarget.errors import RetargetError
from retarget.export.graph import replace_matmuls, require_opset
from retarget.export.matmulnbits import lower_matmuls, lower_tied_embedding
from retarget.export.qdq import lower_tied_embedding_qdq, qdq_nodes, required_opset
from retarget.quantize.weight import QuantizedWeight


def lowering_family(lowering: str) -> str:
    """'qdq-fp8' -> 'qdq'; 'matmulnbits' -> 'matmulnbits'."""
    return lowering.split("-")[0]


def lower_weights(model: onnx.ModelProto, qweights: dict[str, QuantizedWeight], lowering: str = "matmulnbits",
                  accuracy_level: int = 0) -> int:
    """Replace the MatMul of every module in QWEIGHTS by LOWERING's nodes; returns how many were lowered."""
    family = lowering_family(lowering)
    if family == "float" and not qweights:
        return 0
    if family == "matmulnbits":
        not_int = next((name for name, qw in qweights.items() if qw.element != "int"), None)
        if not_int is not None:
            raise RetargetError(f"MatMulNBits carries integer weights only; {not_int} is "
                                f"{qweights[not_int].element}", field="--lowering")
        return lower_matmuls(model, qweights, accuracy_level)
    if family == "qdq":
        count = replace_matmuls(model, qweights, qdq_nodes)
        require_opset(model, max((required_opset(qw) for qw in qweights.values()), default=0))
        return count
    raise RetargetError(f"unknown lowering {lowering!r}; known: matmulnbits, qdq", field="--lowering")


def lower_tied_embedding_for(model: onnx.ModelProto, lowering: str) -> bool:
    """Point a tied input embedding at lm_head's quantized table, in LOWERING's form; False if it stays float."""
    family = lowering_family(lowering)
    if family == "matmulnbits":
        return lower_tied_embedding(model)
    return family == "qdq" and lower_tied_embedding_qdq(model)
