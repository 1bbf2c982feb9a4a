"""Quantized activations in standard ONNX: QuantizeLinear -> DequantizeLinear on a Linear's input, ahead of its
weight lowering (W8A8 INT8 / FP8). The numbers are those of retarget.quantize.activations.fake_quantize:

    x = A * smooth                                       (SmoothQuant's per-input-channel factor, if any)
    dynamic: s = max(max|x| over the last axis / qmax, 1e-12), per token: QuantizeLinear with block_size K
             along the last axis (opset 21), so one scale per row, computed in the graph
    static:  s = the calibrated per-tensor scale; INT8 first clips to +-127 s (torch's restricted range;
             QuantizeLinear alone would allow -128)
    x' = DequantizeLinear(QuantizeLinear(x, s, output_dtype = int8 | float8e4m3fn), s)

Runtimes that fuse QDQ (TensorRT; ORT's QDQ selectors for static INT8) turn the pair and the weight's
DequantizeLinear into an integer / FP8 GEMM; ORT's CPU provider runs the per-token form as written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from retarget.export.graph import Builder, Lowered
from retarget.quantize.activations import QMAX
from retarget.quantize.modules import QuantLinear

ELEMENT_TYPES = {"int8": TensorProto.INT8, "e4m3": TensorProto.FLOAT8E4M3FN}
OPSET = 21  # blocked QuantizeLinear with output_dtype


@dataclass(frozen=True)
class ActivationQuant:
    """How a Linear's input is quantized: ELEMENT 'int8' or 'e4m3', per token (SCALE None) or with a static
    per-tensor SCALE, after multiplying by SMOOTH (float32 [K]) if given."""

    element: str | None
    scale: float | None = None
    smooth: np.ndarray | None = None

    @classmethod
    def of(cls, module: nn.Module) -> ActivationQuant | None:
        """The activation quantization of a QuantLinear (None if its input stays float, or not a QuantLinear)."""
        if not isinstance(module, QuantLinear) or (module.act is None and module.smooth is None):
            return None
        scale, smooth = module.act_scale, module.smooth
        return cls(module.act, None if scale is None else float(scale),
                   None if smooth is None else smooth.detach().float().numpy())


def activation_nodes(act: ActivationQuant, a: str, k: int, prefix: str) -> tuple[Lowered, str]:
    """Nodes quantizing A (last axis K) as ACT describes, and the name of the result."""
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    x = a
    if act.smooth is not None:
        inits.append(numpy_helper.from_array(act.smooth.astype(np.float32), f"{prefix}.smooth"))
        nodes.append(helper.make_node("Mul", [a, f"{prefix}.smooth"], [f"{prefix}/smoothed"], name=f"{prefix}/Smooth"))
        x = f"{prefix}/smoothed"
    if act.element is None:
        return (nodes, inits), x
    qmax = QMAX[act.element]
    scale = f"{prefix}.act_scale"
    attrs: dict[str, int] = {}
    if act.scale is None:
        inits += [numpy_helper.from_array(np.array([-1], np.int64), f"{prefix}.last_axis"),
                  numpy_helper.from_array(np.array(qmax, np.float32), f"{prefix}.act_qmax"),
                  numpy_helper.from_array(np.array(1e-12, np.float32), f"{prefix}.act_min_scale")]
        nodes += [helper.make_node("Abs", [x], [f"{prefix}/act_abs"], name=f"{prefix}/ActAbs"),
                  helper.make_node("ReduceMax", [f"{prefix}/act_abs", f"{prefix}.last_axis"], [f"{prefix}/act_amax"],
                                   name=f"{prefix}/ActAmax", keepdims=1),
                  helper.make_node("Div", [f"{prefix}/act_amax", f"{prefix}.act_qmax"], [f"{prefix}/act_ratio"],
                                   name=f"{prefix}/ActRatio"),
                  helper.make_node("Max", [f"{prefix}/act_ratio", f"{prefix}.act_min_scale"], [scale],
                                   name=f"{prefix}/ActScale")]
        attrs = {"axis": -1, "block_size": k}
    else:
        inits.append(numpy_helper.from_array(np.array(act.scale, np.float32), scale))
        if act.element == "int8":
            bound = np.float32(qmax) * np.float32(act.scale)
            inits += [numpy_helper.from_array(np.array(-bound, np.float32), f"{prefix}.act_low"),
                      numpy_helper.from_array(np.array(bound, np.float32), f"{prefix}.act_high")]
            nodes.append(helper.make_node("Clip", [x, f"{prefix}.act_low", f"{prefix}.act_high"],
                                          [f"{prefix}/act_clipped"], name=f"{prefix}/ActClip"))
            x = f"{prefix}/act_clipped"
    nodes += [helper.make_node("QuantizeLinear", [x, scale], [f"{prefix}/act_q"], name=f"{prefix}/ActQuantizeLinear",
                               output_dtype=ELEMENT_TYPES[act.element], **attrs),
              helper.make_node("DequantizeLinear", [f"{prefix}/act_q", scale], [f"{prefix}/act_dq"],
                               name=f"{prefix}/ActDequantizeLinear", **attrs)]
    return (nodes, inits), f"{prefix}/act_dq"


def with_activations(build: Builder, activations: dict[str, ActivationQuant]) -> Builder:
    """BUILD, with the input of every module in ACTIVATIONS quantized first."""

    def wrapped(qw, a, y, prefix):  # noqa: ANN001, ANN202 (a Builder)
        act = activations.get(prefix)
        if act is None:
            return build(qw, a, y, prefix)
        (nodes, inits), x = activation_nodes(act, a, qw.shape[1], prefix)
        weight_nodes, weight_inits = build(qw, x, y, prefix)
        return nodes + weight_nodes, inits + weight_inits

    return wrapped


def activation_quant(model: nn.Module) -> dict[str, ActivationQuant]:
    """Every module of MODEL whose input is quantized or smoothed, by name."""
    found = {name: ActivationQuant.of(module) for name, module in model.named_modules()}
    return {name: act for name, act in found.items() if act is not None}
