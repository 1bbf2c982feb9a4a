"""Mixture-of-experts lowering: the router as one MatMul, every expert of the layer in ONE com.microsoft.MoE
node (ONNX Runtime picks the top-k experts per token, runs them, and sums their outputs by routing weight).

ORT's CPU MoE (measured on 1.32): softmax over the router logits, top-k, optionally renormalized
(normalize_routing_weights); activation 'swiglu' with gate/up interleaved in fc1 (swiglu_fusion=1, the only
layout the CPU kernel takes): gate * sigmoid(alpha * gate) * (up + beta), with swiglu_limit clamping as
gpt-oss; per-expert biases on both matmuls. Sigmoid routing normalized over the top k is softmax routing of
log(sigmoid(logits)). Expert weights quantized by the recipe are dequantized into the node (MoE holds float
experts); the quantized ones go into QMoE (retarget.export.decoder.qmoe) where its formats allow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from retarget.export.decoder.blocks import MoE
from retarget.export.decoder.graph import array
from retarget.export.decoder.mlp import GatedMlpLowering
from retarget.export.decoder.registry import Unsupported, lowers
from retarget.quantize.weight import QuantizedWeight

if TYPE_CHECKING:
    from retarget.export.decoder.build import DecoderGraph


def _matrix(g: DecoderGraph, key: str, value: torch.Tensor) -> torch.Tensor:
    """The [out, in] matrix the model multiplies by: the recipe's dequantized weight under KEY if quantized
    (consumed from the graph's pending quantized weights), else VALUE."""
    qw: QuantizedWeight | None = g.qweights.pop(key, None)
    return value.detach().float() if qw is None else qw.dequantize().float()


def expert_weights(g: DecoderGraph, block: MoE) -> dict[str, np.ndarray | None]:
    """fc1 [E, 2I, H] (gate and up rows interleaved), fc1_bias [E, 2I], fc2 [E, H, I], fc2_bias [E, H] of BLOCK's
    experts, in MoE's layout ([out, in] per expert)."""
    experts, path = block.module.experts, f"{block.path}.experts"
    if block.fused_experts is None:
        gate, up, down = (torch.stack([_matrix(g, f"{path}.{e}.{name}", getattr(m, name).weight)
                                       for e, m in enumerate(experts)]) for name in block.expert_names)
        fc1 = torch.stack([gate, up], dim=2).flatten(1, 2)  # rows g0, u0, g1, u1, ...
        return {"fc1": array(fc1), "fc1_bias": None, "fc2": array(down), "fc2_bias": None}
    count = experts.gate_up_proj.shape[0]
    gate_up = torch.stack([_matrix(g, f"{path}.gate_up_proj.{e}", experts.gate_up_proj[e].T) for e in range(count)])
    down = torch.stack([_matrix(g, f"{path}.down_proj.{e}", experts.down_proj[e].T) for e in range(count)])
    bias = getattr(experts, "gate_up_proj_bias", None)
    if block.fused_experts == "halves":  # [gate | up] -> interleaved rows
        inter = gate_up.shape[1] // 2
        gate_up = torch.stack([gate_up[:, :inter], gate_up[:, inter:]], dim=2).flatten(1, 2)
        if bias is not None:
            bias = torch.stack([bias[:, :inter], bias[:, inter:]], dim=2).flatten(1, 2)
    down_bias = getattr(experts, "down_proj_bias", None)
    return {"fc1": array(gate_up), "fc1_bias": None if bias is None else array(bias), "fc2": array(down),
            "fc2_bias": None if down_bias is None else array(down_bias)}


@lowers(MoE)
class MoELowering:
    def check(self, block: MoE, layer: int, kv_cache: str | None) -> None:
        if block.activation not in ("silu", "swiglu_clamp"):
            raise Unsupported(f"layer {layer}: MoE expert activation {block.activation!r} of {block.path} has no "
                              "lowering (ORT's CPU MoE runs SwiGLU)", field="hidden_act")
        if block.routing == "sigmoid" and not block.normalize:
            raise Unsupported(f"layer {layer}: MoE routing by unnormalized sigmoid weights ({block.path}) has no "
                              "lowering yet", field="router")

    def __call__(self, g: DecoderGraph, block: MoE, x: str, layer: int) -> str:
        path, module = block.path, block.module
        hidden = int(module.experts.down_proj.shape[-1]) if block.fused_experts else \
            int(getattr(module.experts[0], block.expert_names[2]).weight.shape[0])
        rows = g.op("Reshape", [x, g.const(f"{path}.rows_shape", np.array([-1, hidden], np.int64))],
                    [f"/{path}/rows"], path)[0]
        router = getattr(module, block.router)
        logits = g.linear(rows, router.weight, f"{path}.{block.router}", getattr(router, "bias", None))
        if block.routing == "sigmoid":  # normalized sigmoid weights are softmax weights of log(sigmoid)
            logits = g.op("Log", [g.op("Sigmoid", [logits], [f"/{path}/router_sigmoid"], f"{path}.router")[0]],
                          [f"/{path}/router_log_sigmoid"], f"{path}.router")[0]
        weights = expert_weights(g, block)
        names = {k: g.const(f"{path}.experts.{k}", v) for k, v in weights.items() if v is not None}
        inputs = [rows, logits, names["fc1"], names.get("fc1_bias", ""), names["fc2"], names.get("fc2_bias", "")]
        attrs = {"k": block.top_k, "normalize_routing_weights": int(block.normalize), "activation_type": "swiglu",
                 "swiglu_fusion": 1, "activation_alpha": block.alpha,
                 "activation_beta": 1.0 if block.activation == "swiglu_clamp" else 0.0}
        if block.limit is not None:
            attrs["swiglu_limit"] = block.limit
        out = g.op("MoE", [i for i in inputs], [f"/{path}/experts"], f"{path}.experts", **attrs)[0]
        if block.scaling != 1.0:
            out = g.op("Mul", [out, g.const(f"{path}.scaling", np.array(block.scaling, np.float32))],
                       [f"/{path}/scaled"], f"{path}.scaling")[0]
        if block.shared is not None:
            shared = GatedMlpLowering()(g, block.shared, rows, layer)
            if block.shared_gate:
                gate = module.shared_expert_gate
                weight = g.op("Sigmoid", [g.linear(rows, gate.weight, f"{path}.shared_expert_gate", gate.bias)],
                              [f"/{path}/shared_weight"], f"{path}.shared_expert_gate")[0]
                shared = g.op("Mul", [shared, weight], [f"/{path}/shared_gated"], path)[0]
            out = g.op("Add", [out, shared], [f"/{path}/with_shared"], path)[0]
        shape = g.op("Shape", [x], [f"/{path}/shape"], f"{path}.shape")[0]
        return g.op("Reshape", [out, shape], [f"/{path}/output"], path)[0]
