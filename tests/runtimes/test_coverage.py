"""Runtime coverage: op types read from a model, the CPU verdicts checked against onnxruntime itself (a session
loads exactly when every node has a CPU kernel), and the published lists' sources."""

import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from retarget.runtimes import coverage, describe, op_types, providers, providers_for_vendor


def _model(nodes, inputs, outputs):
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs), opset_imports=opsets)


def _loads(model) -> bool:
    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - onnxruntime raises its own NOT_IMPLEMENTED / FAIL types
        return False
    return True


def _vec(name):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [2, 4])


def test_cpu_verdicts_agree_with_onnxruntime():
    ok = _model([helper.make_node("MatMul", ["x", "w"], ["h"]),
                 helper.make_node("QuickGelu", ["h"], ["y"], domain="com.microsoft")],
                [_vec("x"), helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 4])], [_vec("y")])
    bad = _model([helper.make_node("GemmFloat8", ["x", "w"], ["y"], domain="com.microsoft")],
                 [_vec("x"), helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 4])], [_vec("y")])
    assert op_types(ok) == {("ai.onnx", "MatMul"): 1, ("com.microsoft", "QuickGelu"): 1}
    ok_cov = coverage(ok, ["CPUExecutionProvider"])
    bad_cov = coverage(bad, ["CPUExecutionProvider"])
    assert ok_cov["providers"]["CPUExecutionProvider"]["native_nodes"] == 2 and _loads(ok)
    assert bad_cov["providers"]["CPUExecutionProvider"]["leaves"] == ["GemmFloat8"] and not _loads(bad)


def test_op_types_reads_subgraphs(tmp_path):
    then = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [], [_vec("t")])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [_vec("e")])
    model = _model([helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)],
                   [helper.make_tensor_value_info("c", TensorProto.BOOL, []), _vec("x")], [_vec("y")])
    onnx.save(model, tmp_path / "m.onnx")
    assert set(op_types(tmp_path / "m.onnx")) == {("ai.onnx", "If"), ("ai.onnx", "Relu"), ("ai.onnx", "Neg")}


def test_published_lists_give_the_known_lock_in_facts():
    """QMoE runs on CUDA (contrib registry) but not on Ascend's CANN provider, which registers plain ONNX ops
    only; TensorRT's ONNX parser takes no com.microsoft op; DirectML's list was not read for MatMul."""
    names = ["CUDAExecutionProvider", "CPUExecutionProvider", "CANNExecutionProvider"]
    assert describe("com.microsoft", "QMoE", names) == "QMoE: native on CUDA and CPU; falls back to CPU on CANN"
    table = providers()
    assert table["TensorrtExecutionProvider"].verdict("com.microsoft", "MatMulNBits") == "absent"
    assert table["DmlExecutionProvider"].verdict("ai.onnx", "MatMul") == "unknown"
    assert table["MIGraphXExecutionProvider"].verdict("com.microsoft", "GroupQueryAttention") == "native"
    assert providers_for_vendor("Huawei") == ["CANNExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize("name", [n for n in providers() if n != "CPUExecutionProvider"])
def test_every_published_list_names_its_source(name):
    p = providers()[name]
    assert p.sources and all(s["url"].startswith("https://") and s["what"] for s in p.sources)
    assert p.complete and any(p.ops.values())
