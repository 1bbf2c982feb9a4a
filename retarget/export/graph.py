"""Graph surgery shared by every weight lowering: find the MatMul of each quantized Linear by its node name,
put the lowering's nodes in its place, drop the float weight, and raise the opset the new nodes need."""

from __future__ import annotations

from collections.abc import Callable

import onnx
from onnx import helper

from retarget.errors import RetargetError
from retarget.quantize.weight import QuantizedWeight

# (nodes, initializers) computing Y = A @ dequant(QW).T: builder(qw, a, y, prefix)
Lowered = tuple[list[onnx.NodeProto], list[onnx.TensorProto]]
Builder = Callable[[QuantizedWeight, str, str, str], Lowered]

# the IR version each default-domain opset needs (onnx docs/Versioning.md): 21 int4 + blocked Q/DQ,
# 23 float4e2m1, 24 float8e8m0, 25 int2
IR_FOR_OPSET = {18: 8, 19: 9, 20: 9, 21: 10, 22: 10, 23: 11, 24: 12, 25: 13}


def module_name_of(node: onnx.NodeProto) -> str:
    """'/model/layers.0/self_attn/q_proj/MatMul' -> 'model.layers.0.self_attn.q_proj' (exporter naming)."""
    return ".".join(p for p in node.name.split("/")[:-1] if p)


def replace_matmuls(model: onnx.ModelProto, qweights: dict[str, QuantizedWeight], build: Builder) -> int:
    """Replace each MatMul whose module is in QWEIGHTS by BUILD's nodes; drop the float weights.

    Raises if a quantized module has no MatMul in the graph, or the shapes disagree. Returns the count.
    Initializers BUILD returns under a name already in the graph are shared, not added twice.
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    todo = dict(qweights)
    new_nodes: list[onnx.NodeProto] = []
    dropped: set[str] = set()
    for node in graph.node:
        name = module_name_of(node) if node.op_type == "MatMul" else ""
        qw = todo.pop(name, None)
        if qw is None:
            new_nodes.append(node)
            continue
        weight = inits.get(node.input[1])
        if weight is None or tuple(weight.dims) != (qw.shape[1], qw.shape[0]):
            raise RetargetError(f"MatMul weight of {name} is not a [K, N] = {qw.shape[::-1]} initializer",
                                field=name)
        lowered, extra = build(qw, node.input[0], node.output[0], name)
        new_nodes.extend(lowered)
        graph.initializer.extend(t for t in extra if t.name not in inits)
        inits.update((t.name, t) for t in extra)
        dropped.add(node.input[1])
    if todo:
        raise RetargetError(f"no MatMul found for {len(todo)} quantized layers, e.g. {next(iter(todo))}")
    del graph.node[:]
    graph.node.extend(new_nodes)
    still_used = {i for n in graph.node for i in n.input}
    kept = [t for t in graph.initializer if t.name not in dropped or t.name in still_used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return len(qweights)


def require_opset(model: onnx.ModelProto, version: int, domain: str = "") -> None:
    """Import DOMAIN at VERSION or later (and the IR version a newer default opset needs).

    Raising the default opset of an exported graph keeps its meaning when every op it holds kept its
    semantics across the versions skipped (18 -> 25 only widen types for the ops optimum emits);
    `onnx.checker.check_model(full_check=True)` on the result is the test of that.
    """
    entry = next((o for o in model.opset_import if o.domain == domain), None)
    if entry is None:
        model.opset_import.append(helper.make_opsetid(domain, version))
    elif entry.version < version:
        entry.version = version
    if domain == "":
        model.ir_version = max(model.ir_version, IR_FOR_OPSET.get(version, model.ir_version))
