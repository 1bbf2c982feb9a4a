"""Dense gated MLP lowering: down(act(gate(x)) * up(x)), gate and up fused into one MatMul when they can be.
ORT's CPU provider has no SwiGLU kernel: SiLU is QuickGelu at alpha 1 (x * sigmoid(x)), GeGLU's tanh GELU is
ONNX Gelu(approximate='tanh')."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retarget.export.decoder.blocks import GatedMlp
from retarget.export.decoder.registry import Unsupported, lowers

if TYPE_CHECKING:
    from retarget.export.decoder.build import DecoderGraph

ACTIVATIONS = {"silu": ("QuickGelu", {"alpha": 1.0}), "gelu_tanh": ("Gelu", {"approximate": "tanh"}),
               "gelu": ("Gelu", {})}


def activation(g: DecoderGraph, x: str, name: str, scope: str) -> str:
    op_type, attrs = ACTIVATIONS[name]
    return g.op(op_type, [x], [f"/{scope}/act"], f"{scope}.act", **attrs)[0]


@lowers(GatedMlp)
class GatedMlpLowering:
    def check(self, block: GatedMlp, layer: int, kv_cache: str | None) -> None:
        if block.activation not in ACTIVATIONS:
            raise Unsupported(f"layer {layer}: MLP activation {block.activation!r} of {block.path} has no lowering "
                              f"(known: {', '.join(ACTIVATIONS)})", field="hidden_act")

    def __call__(self, g: DecoderGraph, block: GatedMlp, x: str, layer: int) -> str:
        path = block.path
        gate_up = g.projection(x, block, "gate_up_proj")
        if len(gate_up) == 1:
            gate_up = g.op("Split", [gate_up[0]], [f"/{path}/gate", f"/{path}/up"], path, axis=-1, num_outputs=2)
        gated = g.op("Mul", [activation(g, gate_up[0], block.activation, path), gate_up[1]], [f"/{path}/gated"],
                     path)[0]
        down = block.module.down_proj
        return g.linear(gated, down.weight, f"{path}.down_proj", down.bias)
