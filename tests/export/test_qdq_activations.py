"""QDQ on activations (W8A8 INT8 / FP8): one quantized Linear lowered with its activation QuantizeLinear ->
DequantizeLinear, run in ONNX Runtime's CPU provider against the torch QuantLinear it came from."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from retarget.export.activations import ActivationQuant
from retarget.export.graph import module_name_of
from retarget.export.lowering import lower_weights
from retarget.quantize.modules import QuantLinear
from retarget.quantize.weight import quantize_rtn


def lowered_linear(layer: QuantLinear, lowering: str) -> onnx.ModelProto:
    """A MatMul named like the exporter's, lowered by LOWERING with LAYER's activation quantization."""
    n, k = layer.out_features, layer.in_features
    weight = helper.make_tensor("w", TensorProto.FLOAT, [k, n], np.zeros((k, n), np.float32).ravel())
    node = helper.make_node("MatMul", ["A", "w"], ["Y"], name="/proj/MatMul")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [1, None, k])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, None, n])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    name = module_name_of(node)
    lower_weights(model, {name: layer.qweight}, lowering, activations={name: ActivationQuant.of(layer)})
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("act", ["int8", "e4m3"])
@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("lowering", ["qdq-int8", "matmulnbits"])
@pytest.mark.parametrize("optimize", [False, True])  # as written, and after ORT's QDQ fusions
def test_quantized_activations_match_torch(act: str, static: bool, lowering: str, optimize: bool) -> None:
    gen = torch.Generator().manual_seed(11)
    k, n = 256, 96
    x = torch.randn(1, 7, k, generator=gen) * torch.linspace(0.1, 4.0, k)  # uneven channels, as SmoothQuant meets
    smooth = torch.rand(k, generator=gen) + 0.5
    scale = float((x * smooth).abs().max()) / (127.0 if act == "int8" else 448.0) * 0.8 if static else None  # clips
    layer = QuantLinear(quantize_rtn(torch.randn(n, k, generator=gen), 8, k, True), act=act, act_scale=scale,
                        smooth=smooth)
    opts = ort.SessionOptions()
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(lowered_linear(layer, lowering).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        expected = layer(x).numpy()
    np.testing.assert_allclose(sess.run(None, {"A": x.numpy()})[0], expected, rtol=1e-4, atol=1e-3)
