"""FP8 and FP4 QDQ lowerings as one-layer graphs: FP8 in ONNX Runtime's CPU provider, FP4 (which it has no
kernel for) in ONNX's reference evaluator, against values decoded by ml_dtypes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from test_qdq import numpy_reference, one_layer, run_ort

from retarget.export.lowering import lower_tied_embedding_for
from retarget.export.qdq import qdq_nodes, write_reference_dequantized
from retarget.quantize.fp4 import quantize_mxfp4_weight, quantize_nvfp4
from retarget.quantize.fp8 import quantize_fp8
from retarget.quantize.weight import QuantizedWeight


def float_values(qw: QuantizedWeight) -> np.ndarray:
    """The element values of QW's codes, decoded by ml_dtypes (independent of retarget.quantize.float_formats)."""
    dtype = ml_dtypes.float8_e4m3fn if qw.element == "e4m3" else ml_dtypes.float4_e2m1fn
    return qw.codes.numpy().view(dtype).astype(np.float32)


@pytest.mark.parametrize(("granularity", "ue8m0"), [("tensor", False), ("channel", False), ("block128", False),
                                                    ("block128", True)])
def test_fp8_weights_match_numpy(granularity: str, ue8m0: bool) -> None:
    """FP8 E4M3 in DequantizeLinear (opset 19 per tensor/channel, opset 21 blocked): ORT's CPU provider runs it."""
    w = torch.randn(200, 320, generator=torch.Generator().manual_seed(7))  # 200 rows: a short last row block
    qw = quantize_fp8(w, granularity, ue8m0)
    a = np.random.default_rng(3).standard_normal((4, 320)).astype(np.float32)
    np.testing.assert_allclose(run_ort(qw, a), numpy_reference(qw, float_values(qw), a), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("scheme", ["mxfp4", "nvfp4"])
def test_fp4_weights_match_numpy_in_the_onnx_reference(scheme: str) -> None:
    """FP4 E2M1 DequantizeLinear (opset 23; MXFP4's E8M0 scales opset 24): ORT 1.32's CPU provider has no kernel,
    so ONNX's reference evaluator runs the checked graph; ORT refuses it with NOT_IMPLEMENTED."""
    w = torch.randn(48, 256, generator=torch.Generator().manual_seed(8))
    qw = quantize_mxfp4_weight(w) if scheme == "mxfp4" else quantize_nvfp4(w)
    a = np.random.default_rng(4).standard_normal((3, 256)).astype(np.float32)
    model = one_layer(qw)
    np.testing.assert_allclose(ReferenceEvaluator(model).run(None, {"A": a})[0],
                               numpy_reference(qw, float_values(qw), a), rtol=1e-4, atol=1e-3)
    with pytest.raises(Exception, match="NOT_IMPLEMENTED"):
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])



@pytest.mark.parametrize("scheme", ["mxfp4", "nvfp4"])
def test_reference_dequantized_copy_runs_in_ort(scheme: str, tmp_path: Path) -> None:
    """The CPU check of an FP4 graph: its DequantizeLinear folded by ONNX's reference, the rest run by ORT."""
    w = torch.randn(32, 128, generator=torch.Generator().manual_seed(9))
    qw = quantize_mxfp4_weight(w) if scheme == "mxfp4" else quantize_nvfp4(w)
    onnx.save_model(one_layer(qw), str(tmp_path / "fp4.onnx"))
    variant = write_reference_dequantized(tmp_path / "fp4.onnx", tmp_path / "check.onnx")
    assert "DequantizeLinear" not in {n.op_type for n in onnx.load(str(variant)).graph.node}
    a = np.random.default_rng(5).standard_normal((2, 128)).astype(np.float32)
    out = ort.InferenceSession(str(variant), providers=["CPUExecutionProvider"]).run(None, {"A": a})[0]
    np.testing.assert_allclose(out, numpy_reference(qw, float_values(qw), a), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(("make", "quantized"), [(lambda w: quantize_fp8(w, "channel"), True),
                                                (lambda w: quantize_fp8(w, "tensor"), True),
                                                (lambda w: quantize_fp8(w, "block128"), False)])
def test_fp8_lm_head_serves_the_tied_embedding(make: Callable[[torch.Tensor], QuantizedWeight],
                                               quantized: bool) -> None:
    """ONNX's Gather takes no FP8: per tensor/channel the embedding reads a uint8 copy of lm_head's E4M3 bit
    patterns through a value table; blocked, a float table holding lm_head's dequantized values (what the tied
    torch model looks up) stays."""
    vocab, k = 64, 256  # two 128-blocks along K
    w = torch.randn(vocab, k, generator=torch.Generator().manual_seed(12))
    qw = make(w)
    nodes, inits = qdq_nodes(qw, "X", "logits", "lm_head")
    gather = helper.make_node("Gather", ["model.embed_tokens.weight", "ids"], ["H"], name="/model/embed_tokens/Gather")
    inits.append(numpy_helper.from_array(w.numpy(), "model.embed_tokens.weight"))
    graph = helper.make_graph([gather, *nodes], "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 3]),
                                                      helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3, k])],
                              [helper.make_tensor_value_info("H", TensorProto.FLOAT, [1, 3, k])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    assert lower_tied_embedding_for(model, "qdq-fp8", qw) == quantized
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = np.array([[0, 5, 63]])
    rows = sess.run(["H"], {"ids": ids, "X": np.zeros((1, 3, k), np.float32)})[0]
    np.testing.assert_array_equal(rows, qw.dequantize().numpy()[ids])
