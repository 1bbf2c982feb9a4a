"""Lower our quantized weights to standard ONNX: a DequantizeLinear on the stored codes feeding the MatMul.

    Y = MatMul(A, DequantizeLinear(Wq [K, N], scale, zero_point, axis, block_size))

The weight keeps the exporter's [K, N] layout (the MatMul's right-hand side), so the pattern is the one ORT's
quantizer writes with quant_format=QDQ and the one TensorRT, OpenVINO and QNN read as a quantized weight.
Layouts, by QuantizedWeight element and groups (G = ceil(K / group_size)):

    int, one group per row        per-channel: axis 1, scale [N]        int8/uint8 (int4/uint4 for <= 4 bits)
    int, G > 1                    blocked (opset 21): axis 0, block_size = group_size, scale [G, N]
    e4m3, one scale per tensor    per-tensor: scalar scale              float8e4m3fn (opset 19)
    e4m3, per channel / blocked   as int; a 128 x 128 block's scale is repeated over its 128 columns
    e2m1, E8M0 scales (MXFP4)     blocked, float8e8m0 scale, output_dtype float (opset 24)
    e2m1, E4M3 x tensor (NVFP4)   DequantizeLinear(E4M3 block factors, tensor scale) gives the block scales of a
                                  blocked DequantizeLinear over the float4e2m1 codes (opset 23)

Integer codes: symmetric weights become signed codes (q - 2**(bits-1)) with no zero point (TensorRT reads only
symmetric); integer zero points are stored as unsigned zero points; float zero points (llama.cpp Q4_1
minimums) become a zero-point-free DequantizeLinear plus the block-sum term of MatMulNBits' lowering.
3-bit codes travel in 4-bit containers, 5..7-bit codes in 8-bit ones (the same numbers, a wider type).
UE8M0 FP8 scales are stored as float32 (powers of two: exact), which every FP8-capable runtime reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from retarget.errors import RetargetError
from retarget.export.graph import Lowered, module_name_of, require_opset
from retarget.export.matmulnbits import zero_free, zero_offset_nodes
from retarget.quantize.weight import QuantizedWeight

# ORT session option: the accuracy_level of the MatMulNBits that ORT fuses 4-bit DequantizeLinear -> MatMul into
# (DQMatMulToMatMulNBits); ORT's default is 4, int8 activations, so "0" is needed for an exact product
QDQ_ACCURACY_LEVEL = "session.qdq_matmulnbits_accuracy_level"
# default-domain opset each form needs
OPSET = {"per-channel": 13, "per-tensor": 13, "blocked": 21, "int4": 21, "e4m3": 19, "e2m1": 23, "e8m0": 24}
_INT_TYPES = {(4, True): TensorProto.INT4, (4, False): TensorProto.UINT4,
              (8, True): TensorProto.INT8, (8, False): TensorProto.UINT8}


def pack_nibbles(values: np.ndarray) -> bytes:
    """4-bit elements of VALUES in row-major order, two per byte, the first in the low nibble (onnx.proto)."""
    flat = (values.reshape(-1).astype(np.int16) & 0xF).astype(np.uint8)
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    return (flat[0::2] | (flat[1::2] << 4)).tobytes()


def code_tensor(name: str, data_type: int, values: np.ndarray) -> onnx.TensorProto:
    """An initializer of DATA_TYPE from VALUES (its element codes: integers, or float bit patterns)."""
    if data_type in (TensorProto.INT4, TensorProto.UINT4, TensorProto.FLOAT4E2M1):
        raw = pack_nibbles(values)
    else:
        raw = np.ascontiguousarray(values).astype(np.uint8 if values.dtype != np.int8 else np.int8).tobytes()
    return helper.make_tensor(name, data_type, list(values.shape), vals=raw, raw=True)


def qdq_form(qw: QuantizedWeight) -> str:
    """'per-tensor', 'per-channel' or 'blocked': how QW's scales map onto DequantizeLinear."""
    n, _ = qw.shape
    if qw.scale.shape[1] > 1:
        return "blocked"
    return "per-tensor" if qw.block_rows >= n else "per-channel"


def required_opset(qw: QuantizedWeight) -> int:
    """The default-domain opset QW's DequantizeLinear needs."""
    if qw.element == "e2m1":
        return OPSET["e8m0"] if qw.scale_format == "e8m0" else OPSET["e2m1"]
    if qw.element == "int" and qw.bits <= 4:
        return OPSET["int4"]
    if qw.element == "e4m3":
        return max(OPSET["e4m3"], OPSET[qdq_form(qw)])
    return OPSET[qdq_form(qw)]


def _scale_and_attrs(qw: QuantizedWeight, values: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """VALUES [N, G] (a per-group tensor) laid out for QW's form, and the DequantizeLinear attributes."""
    form = qdq_form(qw)
    if form == "per-tensor":
        return values[0, 0].reshape(()), {}
    if form == "per-channel":
        return np.ascontiguousarray(values[:, 0]), {"axis": 1}
    return np.ascontiguousarray(values.T), {"axis": 0, "block_size": qw.group_size}


def _int_weight(qw: QuantizedWeight, prefix: str) -> tuple[list[onnx.TensorProto], dict[str, int], bool]:
    """Initializers (codes, scale[, zero point]) of an integer weight, the attributes, and whether the
    float zero points still need their offset term."""
    container = 4 if qw.bits <= 4 else 8
    codes = qw.codes.numpy().T  # [K, N]
    float_zero = not qw.integer_zero
    if float_zero:
        qw = zero_free(qw)
    signed = qw.symmetric and not float_zero
    scale, attrs = _scale_and_attrs(qw, qw.scale.numpy().astype(np.float32))
    if signed:
        codes = codes.astype(np.int16) - 2 ** (qw.bits - 1)
        codes = codes.astype(np.int8)
    inits = [code_tensor(f"{prefix}.qweight", _INT_TYPES[container, signed], codes),
             numpy_helper.from_array(scale, f"{prefix}.scales")]
    if not signed and not float_zero and bool((qw.zero != 0).any()):
        zero, _ = _scale_and_attrs(qw, qw.zero.numpy())
        inits.append(code_tensor(f"{prefix}.zero_points", _INT_TYPES[container, False], zero.astype(np.uint8)))
    return inits, attrs, float_zero


def _float_weight(qw: QuantizedWeight, prefix: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto],
                                                              dict[str, int]]:
    """Scale nodes, initializers (codes, scale) and attributes of an E4M3 or E2M1 weight."""
    codes = qw.codes.numpy().T
    scale = qw.scale.numpy().astype(np.float32)
    element_type = TensorProto.FLOAT8E4M3FN if qw.element == "e4m3" else TensorProto.FLOAT4E2M1
    inits = [code_tensor(f"{prefix}.qweight", element_type, codes)]
    nodes: list[onnx.NodeProto] = []
    if qw.element == "e2m1" and qw.scale_format == "e8m0":  # MXFP4: scale = 2 ** (code - 127)
        exponents, attrs = _scale_and_attrs(qw, np.log2(scale).round() + 127)
        inits.append(code_tensor(f"{prefix}.scales", TensorProto.FLOAT8E8M0, exponents.astype(np.uint8)))
        attrs["output_dtype"] = TensorProto.FLOAT
    elif qw.element == "e2m1" and qw.scale_format == "e4m3":  # NVFP4: scale = e4m3 factor * tensor scale
        block_scales, attrs = _scale_and_attrs(qw, scale)
        factors = _e4m3_factor_codes(block_scales, qw.tensor_scale)
        inits += [code_tensor(f"{prefix}.scale_factors", TensorProto.FLOAT8E4M3FN, factors),
                  numpy_helper.from_array(np.array(qw.tensor_scale, np.float32), f"{prefix}.tensor_scale")]
        nodes.append(helper.make_node("DequantizeLinear", [f"{prefix}.scale_factors", f"{prefix}.tensor_scale"],
                                      [f"{prefix}.scales"], name=f"{prefix}/ScaleDequantizeLinear"))
    else:
        values, attrs = _scale_and_attrs(qw, scale)
        inits.append(numpy_helper.from_array(values, f"{prefix}.scales"))
    return nodes, inits, attrs


def _e4m3_factor_codes(scale: np.ndarray, tensor_scale: float) -> np.ndarray:
    """E4M3 bit patterns f with value(f) * TENSOR_SCALE == SCALE in float32 (what DequantizeLinear computes);
    raises if SCALE is not of that two-level form."""
    import torch

    from retarget.quantize.float_formats import decode, encode_e4m3

    codes = encode_e4m3(torch.from_numpy(scale) / tensor_scale)
    if not torch.equal(decode(codes, "e4m3") * np.float32(tensor_scale), torch.from_numpy(scale)):
        raise RetargetError("NVFP4 block scales are not E4M3 values times the tensor scale", field="scale")
    return codes.numpy()


def qdq_nodes(qw: QuantizedWeight, a: str, y: str, prefix: str) -> Lowered:
    """Nodes computing Y = A @ dequant(QW).T as DequantizeLinear -> MatMul, plus their initializers."""
    if qw.element == "int":
        inits, attrs, float_zero = _int_weight(qw, prefix)
        nodes: list[onnx.NodeProto] = []
    else:
        nodes, inits, attrs = _float_weight(qw, prefix)
        float_zero = False
    dq_inputs = [f"{prefix}.qweight", f"{prefix}.scales"] + [t.name for t in inits if t.name.endswith(".zero_points")]
    product = f"{prefix}/integer_part" if float_zero else y
    nodes += [helper.make_node("DequantizeLinear", dq_inputs, [f"{prefix}/weight"], name=f"{prefix}/DequantizeLinear",
                               **attrs),
              helper.make_node("MatMul", [a, f"{prefix}/weight"], [product], name=f"{prefix}/MatMul")]
    if float_zero:
        offset_nodes, offset_inits = zero_offset_nodes(qw, a, product, y, prefix)
        nodes += offset_nodes
        inits += offset_inits
    return nodes, inits


def _dq_rows(dq: onnx.NodeProto, inits: dict[str, onnx.TensorProto], ids: str, embedding: str, rows: str
             ) -> list[onnx.NodeProto]:
    """Gather the ids' columns of an 8-bit integer DequantizeLinear's [K, V] tables, then dequantize those rows."""
    attrs = {a.name: a.i for a in dq.attribute}
    if "block_size" in attrs or attrs.get("axis") == 1:  # blocks along K, or one block per row: along axis 2
        attrs.update(axis=2, block_size=attrs.get("block_size", inits[dq.input[0]].dims[0]))
    nodes: list[onnx.NodeProto] = []
    gathered = [_gather_columns(name, inits[name], ids, embedding, nodes) for name in dq.input]
    return [*nodes, helper.make_node("DequantizeLinear", gathered, [rows],
                                     name=f"{embedding}/DequantizeLinear", **attrs)]


def _gather_columns(name: str, table: onnx.TensorProto, ids: str, embedding: str, nodes: list[onnx.NodeProto]) -> str:
    """Append nodes taking the ids' entries of TABLE ([V] -> [B, L, 1]; [K or G, V] -> [B, L, K or G]; a scalar
    stays); returns the result's name."""
    out = f"{embedding}/{name}_rows"
    if not table.dims:
        return name
    if len(table.dims) == 1:
        nodes += [helper.make_node("Gather", [name, ids], [f"{out}_2d"], name=f"{out}/Gather", axis=0),
                  helper.make_node("Unsqueeze", [f"{out}_2d", f"{embedding}.last_axis"], [out],
                                   name=f"{out}/Unsqueeze")]
    else:
        nodes += [helper.make_node("Gather", [name, ids], [f"{out}_t"], name=f"{out}/Gather", axis=1),
                  helper.make_node("Transpose", [f"{out}_t"], [out], name=f"{out}/Transpose", perm=[1, 2, 0])]
    return out


def _fp8_rows(dq: onnx.NodeProto, inits: dict[str, onnx.TensorProto], ids: str, embedding: str, rows: str
              ) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]] | None:
    """FP8 lm_head (per tensor or channel): ONNX's Gather takes no FP8, so the table is also stored as its E4M3
    bit patterns (uint8 [V, K]), decoded through a 256-entry value table and scaled."""
    from retarget.quantize.float_formats import value_table

    if any(a.name == "block_size" for a in dq.attribute):
        return None
    raw = numpy_helper.to_array(inits[dq.input[0]])
    table = np.ascontiguousarray(np.frombuffer(raw.tobytes(), np.uint8).reshape(raw.shape).T)
    extra = [numpy_helper.from_array(table, f"{embedding}.e4m3_codes"),
             numpy_helper.from_array(value_table("e4m3").numpy(), f"{embedding}.e4m3_values")]
    nodes = [helper.make_node("Gather", [extra[0].name, ids], [f"{embedding}/codes"], name=f"{embedding}/Gather"),
             helper.make_node("Cast", [f"{embedding}/codes"], [f"{embedding}/code_index"], name=f"{embedding}/Cast",
                              to=TensorProto.INT32),
             helper.make_node("Gather", [extra[1].name, f"{embedding}/code_index"], [f"{embedding}/values"],
                              name=f"{embedding}/Decode")]
    scale = _gather_columns(dq.input[1], inits[dq.input[1]], ids, embedding, nodes)
    nodes.append(helper.make_node("Mul", [f"{embedding}/values", scale], [rows],
                                  name=f"{embedding}/Scale"))
    return nodes, extra


def lower_tied_embedding_qdq(model: onnx.ModelProto, embedding: str = "model.embed_tokens", head: str = "lm_head"
                             ) -> bool:
    """Make the embedding Gather read lm_head's QDQ table: an 8-bit integer lm_head's codes and scales are
    gathered from its [K, V] tables and only those rows dequantized; an FP8 one (per tensor or channel) is
    looked up in a uint8 copy of its bit patterns. Needs token ids of rank 2 and an lm_head lowered as one
    DequantizeLinear over initializers; returns False (the float table stays) otherwise (4-bit, blocked FP8).
    """
    graph = model.graph
    gather = next((n for n in graph.node if n.op_type == "Gather" and module_name_of(n) == embedding), None)
    dq = next((n for n in graph.node if n.name == f"{head}/DequantizeLinear"), None)
    inits = {t.name: t for t in graph.initializer}
    if gather is None or dq is None or gather.input[0] not in inits or not set(dq.input) <= set(inits):
        return False
    ids = gather.input[1]
    code_type = inits[dq.input[0]].data_type
    if code_type in (TensorProto.INT8, TensorProto.UINT8):
        nodes, extra = _dq_rows(dq, inits, ids, embedding, gather.output[0]), []
    elif code_type == TensorProto.FLOAT8E4M3FN and (fp8 := _fp8_rows(dq, inits, ids, embedding,
                                                                     gather.output[0])) is not None:
        nodes, extra = fp8
    else:  # ONNX's Gather takes no 4-bit tensors
        return False
    graph.initializer.extend(extra)
    if any(n.op_type == "Unsqueeze" for n in nodes):
        graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), f"{embedding}.last_axis"))
    require_opset(model, OPSET["blocked"])
    position = list(graph.node).index(gather)
    graph.node.remove(gather)
    for offset, node in enumerate(nodes):
        graph.node.insert(position + offset, node)
    table = inits[gather.input[0]]
    if not any(table.name in n.input for n in graph.node):
        graph.initializer.remove(table)
    return True


def _cpu_cannot_dequantize(node: onnx.NodeProto, types: dict[str, int]) -> bool:
    """True for a DequantizeLinear ORT 1.32's CPU provider has no kernel for (float4e2m1 codes, E8M0 scales)."""
    return node.op_type == "DequantizeLinear" and any(
        types.get(name) in (TensorProto.FLOAT4E2M1, TensorProto.FLOAT8E8M0) for name in node.input)


def write_reference_dequantized(model_path: Path, variant_path: Path) -> Path:
    """Copy MODEL_PATH with every DequantizeLinear that ORT's CPU provider cannot run (and the scale
    DequantizeLinear feeding it) replaced by its output, computed by ONNX's reference implementation.

    ORT then runs the rest of the graph, so comparing the copy with the torch model checks the FP4 graph's
    codes, scales and layout on a CPU. The copy holds those weights in float32 (external data next to it)."""
    from onnx.reference import ReferenceEvaluator

    model = onnx.load(str(model_path))
    graph = model.graph
    consts = {t.name: t for t in graph.initializer}
    types = {name: t.data_type for name, t in consts.items()}
    folded = {n.output[0] for n in graph.node if _cpu_cannot_dequantize(n, types)}
    folded |= {n.output[0] for n in graph.node
               if n.op_type == "DequantizeLinear" and any(n.output[0] in m.input for m in graph.node
                                                          if m.output[0] in folded)}
    kept = []
    for node in graph.node:
        if node.output[0] not in folded or not set(node.input) <= set(consts):
            kept.append(node)
            continue
        inputs = [consts[name] for name in node.input]
        single = helper.make_graph([node], "dq", [], [helper.make_tensor_value_info(node.output[0], 0, None)], inputs)
        value = ReferenceEvaluator(helper.make_model(single, opset_imports=model.opset_import)).run(None, {})[0]
        consts[node.output[0]] = numpy_helper.from_array(np.asarray(value, np.float32), node.output[0])
    used = {name for node in kept for name in node.input}
    del graph.node[:]
    graph.node.extend(kept)
    new_inits = [t for t in consts.values() if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    onnx.save_model(model, str(variant_path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=f"{variant_path.name}.data", size_threshold=1024)
    return variant_path
