"""The node and initializer list one decoder graph is written into, with exporter-style node names
('/model/layers.0/self_attn/q_proj/MatMul') so the weight lowerings find each projection by its module."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from retarget.export.qdq import code_tensor

# ONNX Runtime's contrib operators the lowerings use (domain com.microsoft); every other op is standard ONNX
# (RotaryEmbedding is both: ORT's, with its rotary_embedding_dim and interleaved attributes, is meant)
CONTRIB_OPS = {"GroupQueryAttention", "SkipSimplifiedLayerNormalization", "QuickGelu", "RotaryEmbedding", "MoE",
               "QMoE", "MatMulNBits", "MoEGroupRouter", "LinearAttention", "CausalConvWithState", "GatedRMSNorm"}


def array(tensor: torch.Tensor) -> np.ndarray:
    """A float32 numpy copy of TENSOR (a parameter or buffer)."""
    return np.ascontiguousarray(tensor.detach().float().numpy())


class GraphBuilder:
    """Nodes and initializers of one graph."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._names: set[str] = set()
        self._node_names: set[str] = set()

    def const(self, name: str, value: np.ndarray) -> str:
        """An initializer NAME (added once: a second call with the same name reuses the first)."""
        if name not in self._names:
            self._names.add(name)
            self.inits.append(numpy_helper.from_array(value, name))
        return name

    def fp8_const(self, name: str, codes: np.ndarray, scales: np.ndarray, axis: int, block_size: int) -> str:
        """A float32 weight NAME kept as FP8 in the artifact: float8e4m3fn CODES (E4M3 bit patterns) and float32
        SCALES, one per BLOCK_SIZE elements along AXIS, dequantized by one blocked DequantizeLinear (opset 21;
        ORT 1.32's CPU provider runs it, exactly)."""
        self._names.update((f"{name}.qweight", f"{name}.scales"))
        self.inits += [code_tensor(f"{name}.qweight", TensorProto.FLOAT8E4M3FN, np.ascontiguousarray(codes)),
                       numpy_helper.from_array(np.ascontiguousarray(scales, np.float32), f"{name}.scales")]
        return self.op("DequantizeLinear", [f"{name}.qweight", f"{name}.scales"], [name], name, axis=axis,
                       block_size=block_size)[0]

    def op(self, op_type: str, inputs: list[str], outputs: list[str], scope: str, **attrs) -> list[str]:
        """Append an OP_TYPE node named '/SCOPE/OP_TYPE' (domain com.microsoft for CONTRIB_OPS, else ONNX's);
        SCOPE's dots become slashes, so a MatMul's name gives its module ('model.layers.0.mlp.down_proj')."""
        domain = "com.microsoft" if op_type in CONTRIB_OPS else ""
        path = "/" + scope.replace(".", "/") if scope else ""
        name, count = f"{path}/{op_type}", 1
        while name in self._node_names:  # a second node of the type in one scope: '/scope/Reshape_1'
            name, count = f"{path}/{op_type}_{count}", count + 1
        self._node_names.add(name)
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=name, domain=domain, **attrs))
        return outputs

    def linear(self, x: str, weight: torch.Tensor, module: str, bias: torch.Tensor | None = None) -> str:
        """x @ weight.T (+ bias) as the MatMul a weight lowering looks for (module name from the node name)."""
        w = self.const(f"{module}.weight", np.ascontiguousarray(array(weight).T))
        y = self.op("MatMul", [x, w], [f"/{module}/output"], module)[0]
        if bias is None:
            return y
        return self.op("Add", [y, self.const(f"{module}.bias", array(bias))], [f"/{module}/biased"],
                       f"{module}.bias")[0]

    def rms_norm(self, x: str, weight: np.ndarray, eps: float, scope: str) -> str:
        """RMSNorm over the last axis (ONNX opset 23 RMSNormalization)."""
        return self.op("RMSNormalization", [x, self.const(f"{scope}.weight", weight)], [f"/{scope}/output"], scope,
                       epsilon=eps, axis=-1)[0]
