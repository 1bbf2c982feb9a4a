"""Which lowering carries the quantized weights into the graph: `lower_weights` looks the recipe's lowering up
in retarget.plan.recipe.LOWERING_REGISTRY (which also says which ONNX Runtime providers run it) and dispatches
on its writer family."""

from __future__ import annotations

from functools import partial

import onnx
from onnx import numpy_helper

from retarget.errors import RetargetError
from retarget.export.activations import OPSET as ACTIVATION_OPSET
from retarget.export.activations import ActivationQuant, with_activations
from retarget.export.graph import Builder, module_name_of, replace_matmuls, require_opset
from retarget.export.matmulnbits import lower_tied_embedding, lowered_nodes
from retarget.export.qdq import lower_tied_embedding_qdq, qdq_nodes, required_opset
from retarget.quantize.weight import QuantizedWeight


def lowering_family(lowering: str) -> str:
    """The writer family of the registered LOWERING ('qdq-fp8' -> 'qdq'); one line naming --lowering if unknown."""
    from retarget.plan.recipe import LOWERING_REGISTRY

    registered = LOWERING_REGISTRY.get(lowering)
    if registered is None:
        raise RetargetError(f"unknown lowering {lowering!r}; known: {', '.join(LOWERING_REGISTRY)}",
                            field="--lowering")
    return registered.family


def lower_weights(model: onnx.ModelProto, qweights: dict[str, QuantizedWeight], lowering: str = "matmulnbits",
                  accuracy_level: int = 0, activations: dict[str, ActivationQuant] | None = None) -> int:
    """Replace the MatMul of every module in QWEIGHTS by LOWERING's nodes, with the inputs of the modules in
    ACTIVATIONS quantized first (QDQ, retarget.export.activations); returns how many were lowered."""
    family = lowering_family(lowering)
    if family == "float" and not qweights:
        return 0
    if family == "matmulnbits":
        not_int = next((name for name, qw in qweights.items() if qw.element != "int"), None)
        if not_int is not None:
            raise RetargetError(f"MatMulNBits carries integer weights only; {not_int} is "
                                f"{qweights[not_int].element}", field="--lowering")
        build: Builder = partial(lowered_nodes, accuracy_level=accuracy_level)
        require_opset(model, 1, "com.microsoft")
        opset = 0
    elif family == "qdq":
        build = qdq_nodes
        opset = max((required_opset(qw) for qw in qweights.values()), default=0)
    else:
        raise RetargetError(f"unknown lowering {lowering!r}; known: matmulnbits, qdq", field="--lowering")
    if activations:
        build = with_activations(build, activations)
        opset = max(opset, ACTIVATION_OPSET)
    count = replace_matmuls(model, qweights, build)
    require_opset(model, opset)
    return count


def lower_tied_embedding_for(model: onnx.ModelProto, lowering: str, head: QuantizedWeight | None = None,
                             embedding: str = "model.embed_tokens") -> bool:
    """Point a tied input embedding at lm_head's quantized table, in LOWERING's form. Where that form cannot
    (FP8 or 4-bit lm_head tables: ONNX's Gather takes neither), the float table is replaced by HEAD's
    dequantized values, which is what the tied torch model looks up. True if the table is stored quantized."""
    family = lowering_family(lowering)
    if family == "matmulnbits" and lower_tied_embedding(model):
        return True
    if family == "qdq" and lower_tied_embedding_qdq(model):
        return True
    if head is not None:
        gather = next((n for n in model.graph.node if n.op_type == "Gather" and module_name_of(n) == embedding), None)
        table = next((t for t in model.graph.initializer if gather is not None and t.name == gather.input[0]), None)
        if table is not None and tuple(table.dims) == head.shape:
            table.CopyFrom(numpy_helper.from_array(head.dequantize().numpy(), table.name))
    return False
