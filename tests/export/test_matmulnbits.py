"""MatMulNBits packing, checked by running one-node graphs in ONNX Runtime against a numpy reference."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from retarget.errors import RetargetError
from retarget.export.matmulnbits import lower_tied_embedding, lowered_nodes, pack_matmulnbits
from retarget.quantize.weight import QuantizedWeight, quantize_rtn


def run_single_node(qw: QuantizedWeight, a: np.ndarray, accuracy_level: int = 0) -> np.ndarray:
    nodes, inits = lowered_nodes(qw, "A", "Y", "w", accuracy_level)
    n, k = qw.shape
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [None, k])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, n])], inits)
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"A": a})[0]


def numpy_reference(qw: QuantizedWeight, a: np.ndarray) -> np.ndarray:
    codes, scale, zero = qw.codes.numpy().astype(np.float64), qw.scale.numpy(), qw.zero.numpy()
    k = codes.shape[1]
    g = np.arange(k) // qw.group_size
    w = (codes - zero[:, g]) * scale[:, g]
    return a.astype(np.float64) @ w.T


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("group_size", [32, 64, 128, None])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("k", [576, 200])  # 576 % 128 != 0 and 200 is not a multiple of any block: short last group
def test_rtn_weights_match_numpy(bits: int, group_size: int | None, symmetric: bool, k: int) -> None:
    gen = torch.Generator().manual_seed(bits * 1000 + k)
    w = torch.randn(123, k, generator=gen)
    qw = quantize_rtn(w, bits, group_size or k, symmetric)
    a = np.random.default_rng(0).standard_normal((5, k)).astype(np.float32)
    np.testing.assert_allclose(run_single_node(qw, a), numpy_reference(qw, a), rtol=1e-4, atol=1e-3)


def test_float_zero_points_match_numpy() -> None:
    """llama.cpp Q4_1-style blocks: float scale and float zero point (-min / scale) per 32 weights."""
    rng = np.random.default_rng(1)
    n, k, g, bits = 64, 160, 32, 4
    codes = torch.from_numpy(rng.integers(0, 2**bits, (n, k), dtype=np.uint8))
    scale = torch.from_numpy(rng.uniform(0.001, 0.1, (n, k // g)).astype(np.float32))
    zero = torch.from_numpy(rng.uniform(0, 2**bits - 1, (n, k // g)).astype(np.float32))
    qw = QuantizedWeight(codes, scale, zero, bits, g)
    a = rng.standard_normal((3, k)).astype(np.float32)
    np.testing.assert_allclose(run_single_node(qw, a), numpy_reference(qw, a), rtol=1e-4, atol=1e-4)


def test_int8_activation_level_stays_close() -> None:
    """accuracy_level 4 quantizes A to int8 per block: small, bounded error against the exact product."""
    qw = quantize_rtn(torch.randn(96, 256, generator=torch.Generator().manual_seed(3)), 4, 32, False)
    a = np.random.default_rng(2).standard_normal((4, 256)).astype(np.float32)
    exact = numpy_reference(qw, a)
    approx = run_single_node(qw, a, accuracy_level=4)
    rel = np.linalg.norm(approx - exact) / np.linalg.norm(exact)
    assert 0 < rel < 0.02


def test_fp16_exact_scales_and_minimums_are_stored_as_fp16() -> None:
    """GGUF-like blocks (fp16 scale d and minimum m): stored as float16 + Cast, same numbers."""
    rng = np.random.default_rng(5)
    n, k, g = 48, 128, 32
    d = rng.uniform(0.001, 0.05, (n, k // g)).astype(np.float16).astype(np.float32)
    m = -rng.uniform(0, 0.2, (n, k // g)).astype(np.float16).astype(np.float32)
    codes = torch.from_numpy(rng.integers(0, 16, (n, k), dtype=np.uint8))
    qw = QuantizedWeight(codes, torch.from_numpy(d), torch.from_numpy(-m / d), 4, g)
    nodes, inits = lowered_nodes(qw, "A", "Y", "w")
    assert {t.name for t in inits} >= {"w.scales.fp16", "w.block_offsets.fp16"}
    assert [n.op_type for n in nodes].count("Cast") == 2
    a = rng.standard_normal((2, k)).astype(np.float32)
    np.testing.assert_allclose(run_single_node(qw, a), numpy_reference(qw, a), rtol=1e-4, atol=1e-4)


def test_8bit_float_zero_points_refused() -> None:
    qw = QuantizedWeight(torch.zeros(4, 32, dtype=torch.uint8), torch.ones(4, 1), torch.full((4, 1), 3.5), 8, 32)
    with pytest.raises(RetargetError, match="integer zero points"):
        pack_matmulnbits(qw)


@pytest.mark.parametrize(("bits", "group", "symmetric"), [(8, 32, True), (4, 32, True), (4, 32, False),
                                                          (4, 64, False)])
def test_tied_embedding_reads_lm_head_blocks(bits: int, group: int, symmetric: bool) -> None:
    """A Gather over the float table becomes GatherBlockQuantized over lm_head's MatMulNBits blocks; the rows
    it returns are lm_head's dequantized rows (an odd number of blocks packs a half-filled zero-point byte)."""
    vocab, k = 64, 192
    qw = quantize_rtn(torch.randn(vocab, k, generator=torch.Generator().manual_seed(4)), bits, group, symmetric)
    table = qw.dequantize().numpy()
    nodes, inits = lowered_nodes(qw, "H", "logits", "lm_head")
    gather = helper.make_node("Gather", ["model.embed_tokens.weight", "ids"], ["H"],
                              name="/model/embed_tokens/Gather")
    inits.append(numpy_helper.from_array(table, "model.embed_tokens.weight"))
    graph = helper.make_graph([gather, *nodes], "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [None])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, vocab])], inits)
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    assert lower_tied_embedding(model)
    assert "model.embed_tokens.weight" not in {t.name for t in model.graph.initializer}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = np.array([0, 5, 63])
    np.testing.assert_allclose(sess.run(None, {"ids": ids})[0], table[ids] @ table.T, rtol=1e-4, atol=1e-3)
