"""FLOPs of one forward of an exported decoder graph, per op class, at the shapes ONNX Runtime runs its nodes at.

The graph is run once on the CPU provider with profiling on and graph optimizations off (so the profiled nodes
are the graph's own), for NEW_TOKENS tokens after a cache of PAST positions (zeros: the FLOPs do not depend on
values); each node's FLOPs come from its profiled output shapes, its first input's shape, its attributes and the
static shapes of its constant (weight) inputs. 2 FLOPs per multiply-accumulate, as in retarget.perf.ops:

* linear: a MatMul / Gemm with one operand that depends on no graph input (a weight, or a weight through
  DequantizeLinear), MatMulNBits, and CausalConvWithState's depthwise taps (channels x kernel per token).
* head: the same for the lm_head (only the positions logits_to_keep keeps).
* moe: MoE / QMoE, the top-k experts each token runs (fc1 and fc2; shared experts are ordinary MatMuls).
* attention: GroupQueryAttention (4 * head_dim per (query, key) pair and head under the causal mask and its
  local window), and MatMuls of two activations (MLA's absorbed scores and latent context).
* scan: LinearAttention per token and state element: 2 for the rank-1 update k (x) v, 2 for the readout q . S,
  and 1 for the decay of the 'gated' rule.

Elementwise work (norms, RoPE, softmax, gates, MoEGroupRouter's scoring) is not counted, here or in the perf
model.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from retarget.errors import RetargetError
from retarget.export.runtime import CACHE_TYPES, LAST_ONLY

OP_CLASSES = ("linear", "head", "moe", "attention", "scan")
SCAN_FLOPS = {"linear": 4, "gated": 5}  # per token and state element, by LinearAttention's update_rule


@dataclass(frozen=True)
class ProfiledNode:
    """One node as ONNX Runtime ran it: the node, its inputs' shapes (ORT leaves out the weights it prepacked)
    and its outputs' shapes."""

    node: onnx.NodeProto
    inputs: list[list[int]]
    outputs: list[list[int]]

    @property
    def first_input(self) -> list[int]:
        return self.inputs[0]

    def weight(self, name: str, g: GraphShapes) -> list[int]:
        """The shape of input NAME: static for a constant, else as profiled (every input listed: none prepacked)."""
        if name in g.shapes:
            return g.shapes[name]
        given = [i for i in self.node.input if i]
        if name not in given or len(given) != len(self.inputs):
            raise RetargetError(f"input {name!r} of {self.node.name} has no known shape", field="graph")
        return self.inputs[given.index(name)]

    def attr(self, name: str, default: object = None) -> object:
        found = [onnx.helper.get_attribute_value(a) for a in self.node.attribute if a.name == name]
        return found[0] if found else default

    @property
    def tokens(self) -> int:
        """Rows of the first input: batch x sequence positions."""
        return math.prod(self.first_input[:-1])


class GraphShapes:
    """The static shapes of the graph's constant tensors (initializers, and what DequantizeLinear, Transpose or
    Cast make of them alone) and which tensors depend on no graph input."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.shapes = {t.name: list(t.dims) for t in graph.initializer}
        self.constant = set(self.shapes)
        for node in graph.node:  # topological order
            if node.op_type == "Constant" or all(not i or i in self.constant for i in node.input):
                self.constant.update(node.output)
                if node.op_type in ("DequantizeLinear", "Cast", "Identity") and node.input[0] in self.shapes:
                    self.shapes[node.output[0]] = self.shapes[node.input[0]]
                elif node.op_type == "Transpose" and node.input[0] in self.shapes:
                    perm = [a.ints for a in node.attribute if a.name == "perm"][0]
                    self.shapes[node.output[0]] = [self.shapes[node.input[0]][p] for p in perm]

    def weight(self, name: str) -> list[int]:
        if name not in self.shapes:
            raise RetargetError(f"weight {name!r} has no static shape", field="graph")
        return self.shapes[name]


def _matmul(p: ProfiledNode, g: GraphShapes) -> tuple[str, float]:
    macs = math.prod(p.outputs[0]) * p.first_input[-1]
    return ("linear" if any(i in g.constant for i in p.node.input[:2]) else "attention"), 2.0 * macs


def _gemm(p: ProfiledNode, g: GraphShapes) -> tuple[str, float]:
    k = p.first_input[0] if p.attr("transA", 0) else p.first_input[-1]
    return "linear", 2.0 * math.prod(p.outputs[0]) * k


def _matmul_nbits(p: ProfiledNode, g: GraphShapes) -> tuple[str, float]:
    return "linear", 2.0 * math.prod(p.outputs[0]) * int(p.attr("K"))  # type: ignore[arg-type]


def _conv(p: ProfiledNode, g: GraphShapes) -> tuple[str, float]:
    channels, _, kernel = g.weight(p.node.input[1])
    return "linear", 2.0 * p.tokens * channels * kernel


def _moe(p: ProfiledNode, g: GraphShapes) -> tuple[str, float]:
    """Rows x k x (fc1 + fc2) multiply-accumulates per expert; QMoE's packed [E, N, K * bits / 8] unpacked."""
    unpack = 8 / int(p.attr("expert_weight_bits", 8)) if p.node.op_type == "QMoE" else 1  # type: ignore[arg-type]
    fc2 = p.node.input[4] if p.node.op_type == "MoE" else p.node.input[5]
    per_expert = sum(math.prod(p.weight(name, g)[1:]) * unpack for name in (p.node.input[2], fc2))
    return "moe", 2.0 * p.tokens * int(p.attr("k")) * per_expert  # type: ignore[arg-type]


def _gqa(p: ProfiledNode, g: GraphShapes) -> tuple[str, float]:
    """Pairs under the causal mask and local_window_size; present key [B, kv_heads, total, head_dim]."""
    batch, _, total, head_dim = p.outputs[1]
    new = p.first_input[1]
    window = int(p.attr("local_window_size", -1))  # type: ignore[arg-type]
    keys = np.arange(total - new + 1, total + 1)
    pairs = float(np.minimum(keys, window).sum() if window > 0 else keys.sum())
    return "attention", 4.0 * batch * pairs * int(p.attr("num_heads")) * head_dim  # type: ignore[arg-type]


def _scan(p: ProfiledNode, g: GraphShapes) -> tuple[str, float]:
    """present state [B, kv_heads, d_k, d_v]: SCAN_FLOPS per element and token."""
    rule = str(p.attr("update_rule", b"linear"), "utf-8") if isinstance(p.attr("update_rule"), bytes) \
        else str(p.attr("update_rule", "linear"))
    if rule not in SCAN_FLOPS:
        raise RetargetError(f"LinearAttention update_rule {rule!r} has no FLOP count", field="update_rule")
    state = math.prod(p.outputs[1][1:])
    return "scan", float(SCAN_FLOPS[rule] * p.tokens * state)


COUNTERS: dict[str, Callable[[ProfiledNode, GraphShapes], tuple[str, float]]] = {
    "MatMul": _matmul, "Gemm": _gemm, "MatMulNBits": _matmul_nbits, "CausalConvWithState": _conv, "MoE": _moe,
    "QMoE": _moe, "GroupQueryAttention": _gqa, "LinearAttention": _scan,
}


def _feeds(session: ort.InferenceSession, past: int, new_tokens: int) -> dict[str, ort.OrtValue]:
    """Batch 1: NEW_TOKENS token ids after a zero cache of PAST positions (fixed-size states: zeros)."""
    feeds = {"input_ids": np.zeros((1, new_tokens), np.int64),
             "attention_mask": np.ones((1, past + new_tokens), np.int64), "logits_to_keep": LAST_ONLY}
    values = {n: ort.OrtValue.ortvalue_from_numpy(v) for n, v in feeds.items()}
    for spec in session.get_inputs():
        if spec.name.startswith("past_key_values"):
            container, element, _ = CACHE_TYPES[spec.type]
            shape = [1 if axis == 0 else past if isinstance(dim, str) else dim for axis, dim in enumerate(spec.shape)]
            values[spec.name] = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(np.zeros(shape, container), element)
    missing = {i.name for i in session.get_inputs()} - set(values)
    if missing:
        raise RetargetError(f"inputs {sorted(missing)} are not a retarget decoder's", field="inputs")
    known = {i.name for i in [*session.get_inputs(), *session.get_overridable_initializers()]}
    return {name: value for name, value in values.items() if name in known}


def _profile(path: Path, past: int, new_tokens: int) -> dict[str, tuple[list[list[int]], list[list[int]]]]:
    """Node name -> (input shapes, output shapes) as ORT ran one forward."""
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.enable_profiling, options.profile_file_prefix = True, str(Path(tmp) / "profile")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session.run_with_ort_values(["logits"], _feeds(session, past, new_tokens))
        events = json.loads(Path(session.end_profiling()).read_text())
    shapes = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            args = event["args"]
            inputs = [next(iter(s.values())) for s in args.get("input_type_shape", [])]
            outputs = [next(iter(s.values())) for s in args.get("output_type_shape", [])]
            shapes[event["name"].removesuffix("_kernel_time")] = (inputs, outputs)
    return shapes


def graph_flops(path: Path, past: int, new_tokens: int = 1) -> dict[str, float]:
    """FLOPs per op class (OP_CLASSES) of one forward of the decoder at PATH: NEW_TOKENS tokens of one sequence
    after PAST cached positions, logits for the last position only."""
    graph = onnx.load(str(path), load_external_data=False).graph
    shapes, profiled = GraphShapes(graph), _profile(path, past, new_tokens)
    totals: dict[str, float] = defaultdict(float, {c: 0.0 for c in OP_CLASSES})
    for node in graph.node:
        counter = COUNTERS.get(node.op_type)
        if counter is None:
            continue
        if node.name not in profiled:
            raise RetargetError(f"node {node.name!r} ({node.op_type}) did not run", source=str(path))
        op_class, flops = counter(ProfiledNode(node, *profiled[node.name]), shapes)
        if op_class == "linear" and [part for part in node.name.split("/") if part][:1] == ["lm_head"]:
            op_class = "head"
        totals[op_class] += flops
    return dict(totals)
