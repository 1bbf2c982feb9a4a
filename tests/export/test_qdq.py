"""QDQ lowerings (DequantizeLinear -> MatMul), run as one-layer graphs in ONNX Runtime's CPU provider (or, where
it has no kernel, ONNX's reference evaluator) against A @ W.T with W from an independent numpy dequantization."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from retarget.export.qdq import QDQ_ACCURACY_LEVEL, lower_tied_embedding_qdq, qdq_nodes, required_opset
from retarget.quantize.weight import QuantizedWeight, quantize_rtn


def one_layer(qw: QuantizedWeight) -> onnx.ModelProto:
    nodes, inits = qdq_nodes(qw, "A", "Y", "w")
    n, k = qw.shape
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [None, k])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, n])], inits)
    opset = required_opset(qw)  # the least the weight's form needs: the checker refuses anything older
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version={13: 7, 19: 9, 21: 10, 23: 11, 24: 12}[opset])
    onnx.checker.check_model(model, full_check=True)
    return model


def run_ort(qw: QuantizedWeight, a: np.ndarray) -> np.ndarray:
    """ORT fuses 4-bit DequantizeLinear -> MatMul into MatMulNBits at int8-activation accuracy (level 4) unless
    told otherwise: level 0 keeps the product exact."""
    opts = ort.SessionOptions()
    opts.add_session_config_entry(QDQ_ACCURACY_LEVEL, "0")
    sess = ort.InferenceSession(one_layer(qw).SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"A": a})[0]


def numpy_reference(qw: QuantizedWeight, values: np.ndarray, a: np.ndarray) -> np.ndarray:
    """A @ W.T with W[n, k] = (VALUES[n, k] - zero[n, k // g]) * scale[n, k // g], in float64."""
    g = np.arange(values.shape[1]) // qw.group_size
    w = (values.astype(np.float64) - qw.zero.numpy()[:, g]) * qw.scale.numpy()[:, g]
    return a.astype(np.float64) @ w.T


def ops(qw: QuantizedWeight) -> list[str]:
    return [n.op_type for n in qdq_nodes(qw, "A", "Y", "w")[0]]


@pytest.mark.parametrize("bits", [3, 4, 8])
@pytest.mark.parametrize("group_size", [32, 128, None])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("k", [576, 200])  # 200: a short last group for every block size
def test_integer_weights_match_numpy(bits: int, group_size: int | None, symmetric: bool, k: int) -> None:
    w = torch.randn(96, k, generator=torch.Generator().manual_seed(bits * 1000 + k))
    qw = quantize_rtn(w, bits, group_size or k, symmetric)
    a = np.random.default_rng(0).standard_normal((5, k)).astype(np.float32)
    np.testing.assert_allclose(run_ort(qw, a), numpy_reference(qw, qw.codes.numpy(), a), rtol=1e-4, atol=1e-3)
    assert ops(qw) == ["DequantizeLinear", "MatMul"]


def test_layouts_are_the_standard_ones() -> None:
    """int8 per channel: axis 1, scale [N], signed codes without zero point; int4 g32 asym: blocked along K."""
    w = torch.randn(64, 96, generator=torch.Generator().manual_seed(0))
    nodes, inits = qdq_nodes(quantize_rtn(w, 8, 96, True), "A", "Y", "w")
    dq = nodes[0]
    assert {a.name: a.i for a in dq.attribute} == {"axis": 1} and len(dq.input) == 2
    assert [(t.data_type, list(t.dims)) for t in inits] == [(TensorProto.INT8, [96, 64]), (TensorProto.FLOAT, [64])]
    nodes, inits = qdq_nodes(quantize_rtn(w, 4, 32, False), "A", "Y", "w")
    assert {a.name: a.i for a in nodes[0].attribute} == {"axis": 0, "block_size": 32}
    assert [(t.data_type, list(t.dims)) for t in inits] == [
        (TensorProto.UINT4, [96, 64]), (TensorProto.FLOAT, [3, 64]), (TensorProto.UINT4, [3, 64])]


def test_float_zero_points_add_the_block_sum_term() -> None:
    """llama.cpp Q4_1-style blocks (float zero points): zero-point-free blocked QDQ plus the offset term."""
    rng = np.random.default_rng(1)
    n, k, g = 64, 160, 32
    codes = torch.from_numpy(rng.integers(0, 16, (n, k), dtype=np.uint8))
    scale = torch.from_numpy(rng.uniform(0.001, 0.1, (n, k // g)).astype(np.float32))
    zero = torch.from_numpy(rng.uniform(0, 15, (n, k // g)).astype(np.float32))
    qw = QuantizedWeight(codes, scale, zero, 4, g)
    a = rng.standard_normal((3, k)).astype(np.float32)
    np.testing.assert_allclose(run_ort(qw, a), numpy_reference(qw, codes.numpy(), a), rtol=1e-4, atol=1e-4)
    assert ops(qw)[:2] == ["DequantizeLinear", "MatMul"] and ops(qw)[-1] == "Add"


@pytest.mark.parametrize("make", [lambda w: quantize_rtn(w, 8, w.shape[1], True),  # int8 per channel
                                  lambda w: quantize_rtn(w, 8, 32, True),  # int4 recipes' lm_head: int8 g32
                                  lambda w: quantize_rtn(w, 8, 32, False)])
def test_tied_embedding_reads_lm_head_codes(make: Callable[[torch.Tensor], QuantizedWeight]) -> None:
    """A Gather over the float table becomes a Gather over lm_head's codes and scales plus DequantizeLinear."""
    vocab, k = 64, 96
    qw = make(torch.randn(vocab, k, generator=torch.Generator().manual_seed(4)))
    table = qw.dequantize().numpy()
    nodes, inits = qdq_nodes(qw, "X", "logits", "lm_head")
    gather = helper.make_node("Gather", ["model.embed_tokens.weight", "ids"], ["H"], name="/model/embed_tokens/Gather")
    inits.append(numpy_helper.from_array(table, "model.embed_tokens.weight"))
    graph = helper.make_graph([gather, *nodes], "g",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, None]),
                               helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, None, k])],
                              [helper.make_tensor_value_info("H", TensorProto.FLOAT, [1, None, k]),
                               helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, None, vocab])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    assert lower_tied_embedding_qdq(model)
    onnx.checker.check_model(model, full_check=True)
    assert "model.embed_tokens.weight" not in {t.name for t in model.graph.initializer}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = np.array([[0, 5, 63]])
    rows, logits = sess.run(None, {"ids": ids, "X": table[ids]})
    np.testing.assert_array_equal(rows, table[ids])
    np.testing.assert_allclose(logits, table[ids] @ table.T, rtol=1e-4, atol=1e-3)
