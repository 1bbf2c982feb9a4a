"""Lower our quantized weights into ONNX Runtime's `com.microsoft.MatMulNBits` (not ORT's own quantizer).

MatMulNBits (https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md#com.microsoft.MatMulNBits):
    Y[M, N] = A[M, K] @ dequant(B).T
    B:           uint8 [N, n_blocks, block_size * bits / 8]; 4-bit codes two to a byte, element 2i in the
                 low nibble of byte i
    scales:      [N * n_blocks], the type of A
    zero_points: optional; uint8 [N * ceil(n_blocks * bits / 8)] packed like B, or the type of A (float
                 zero points, which carry llama.cpp Q4_1 minimums over exactly); absent means 2**(bits - 1)
    n_blocks = ceil(K / block_size); block_size is a power of two >= 16; the last block is padded.
A per-channel weight (one group spanning K) is re-blocked with its scale repeated (same numbers), in the
largest power-of-two block <= 128 that tiles K (K = 576: 64), so that a tied embedding can read lm_head's
blocks through GatherBlockQuantized; 128 with a padded last block when none does.

Float zero points are exact in ORT but take a slow CPU path (measured here: 17 ms against 0.8 ms for a
6144 x 576 weight at M = 1). When K is a whole number of blocks they are lowered instead as
    W = (q - z) * s = q * s + b,   b = -z * s   (llama.cpp Q4_1: b is the block minimum m)
    Y = MatMulNBits(A, q, s, zero point 0) + (A @ S) @ B,   S[k, g] = [k in block g],  B[g, n] = b[n, g]
which is the same product, with every weight still 4-bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from retarget.errors import RetargetError
from retarget.export.graph import Lowered, module_name_of, replace_matmuls, require_opset
from retarget.quantize.weight import QuantizedWeight

PER_CHANNEL_BLOCK = 128


@dataclass
class PackedNBits:
    """The arrays and attributes of one MatMulNBits node."""

    b: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray | None
    k: int
    n: int
    bits: int
    block_size: int


def _pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack the last axis of uint8 codes: 8-bit as is, 4-bit two per byte (low nibble first)."""
    if bits == 8:
        return codes.astype(np.uint8)
    if bits == 4:
        if codes.shape[-1] % 2:
            codes = np.concatenate([codes, np.zeros((*codes.shape[:-1], 1), np.uint8)], axis=-1)
        return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    raise RetargetError(f"MatMulNBits lowering supports 4 and 8 bits, not {bits}", field="bits")


def _block_size(qw: QuantizedWeight) -> tuple[int, np.ndarray, np.ndarray]:
    """(block_size, scale [N, n_blocks], zero [N, n_blocks]); a per-channel weight is re-blocked."""
    scale, zero = qw.scale.numpy(), qw.zero.numpy()
    g = qw.group_size
    if g >= 16 and g & (g - 1) == 0:
        return g, scale, zero
    k = qw.shape[1]
    if scale.shape[1] != 1:
        raise RetargetError(f"group size {g} is not a power of two >= 16", field="group_size")
    block = next((b for b in (PER_CHANNEL_BLOCK, 64, 32, 16) if k % b == 0), PER_CHANNEL_BLOCK)
    blocks = -(-k // block)
    return block, np.repeat(scale, blocks, axis=1), np.repeat(zero, blocks, axis=1)


def pack_matmulnbits(qw: QuantizedWeight) -> PackedNBits:
    """Pack a QuantizedWeight [N, K] into MatMulNBits inputs."""
    n, k = qw.shape
    block, scale, zero = _block_size(qw)
    n_blocks = scale.shape[1]
    codes = qw.codes.numpy()
    pad = n_blocks * block - k
    if pad:
        codes = np.concatenate([codes, np.zeros((n, pad), np.uint8)], axis=1)
    b = _pack_codes(codes.reshape(n, n_blocks, block), qw.bits)
    if qw.symmetric:
        zp = None
    elif qw.integer_zero:
        zp = _pack_codes(zero.astype(np.uint8), qw.bits).reshape(-1)
    elif qw.bits == 4:
        zp = zero.astype(np.float32).reshape(-1)
    else:  # ORT's CPU kernel refuses it: "does not support 8-bit weights with floating-point zero points"
        raise RetargetError("8-bit MatMulNBits needs integer zero points", field="zero")
    return PackedNBits(b, scale.astype(np.float32).reshape(-1), zp, k, n, qw.bits, block)


def float_constant(values: np.ndarray, name: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """A float32 constant NAME, stored as float16 + Cast when that loses nothing (GGUF scales and minimums
    are fp16 to begin with), so the file is as small as the source; ORT folds the Cast at load."""
    values = values.astype(np.float32)
    half = values.astype(np.float16)
    if not np.allclose(half.astype(np.float32), values, rtol=1e-6, atol=0):
        return [], [numpy_helper.from_array(values, name)]
    cast = helper.make_node("Cast", [f"{name}.fp16"], [name], name=f"{name}/Cast", to=onnx.TensorProto.FLOAT)
    return [cast], [numpy_helper.from_array(half, f"{name}.fp16")]


def matmulnbits_node(packed: PackedNBits, a: str, y: str, prefix: str, accuracy_level: int = 0
                     ) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """A MatMulNBits node reading A and writing Y, plus its initializers (named after PREFIX) and the Cast
    nodes of any scales stored as float16."""
    nodes, inits = float_constant(packed.scales, f"{prefix}.scales")
    inits.append(numpy_helper.from_array(packed.b, f"{prefix}.qweight"))
    inputs = [a, f"{prefix}.qweight", f"{prefix}.scales"]
    if packed.zero_points is not None:
        inits.append(numpy_helper.from_array(packed.zero_points, f"{prefix}.zero_points"))
        inputs.append(inits[-1].name)
    nodes.append(helper.make_node("MatMulNBits", inputs, [y], name=f"{prefix}/MatMulNBits", domain="com.microsoft",
                                  K=packed.k, N=packed.n, bits=packed.bits, block_size=packed.block_size,
                                  accuracy_level=accuracy_level))
    return nodes, inits


def zero_free(qw: QuantizedWeight) -> QuantizedWeight:
    """QW's codes and scales with zero point 0: the integer part q * s of W = q * s - z * s."""
    return QuantizedWeight(qw.codes, qw.scale, torch.zeros_like(qw.zero), qw.bits, qw.group_size)


def zero_offset_nodes(qw: QuantizedWeight, a: str, integer_part: str, y: str, prefix: str) -> Lowered:
    """Nodes adding the float zero points' term to INTEGER_PART = A @ (q * s).T, writing Y:
    Y = INTEGER_PART + (A @ S) @ B with S[k, g] = [k in block g] and B[g, n] = -z[n, g] * s[n, g].
    Needs K to be a whole number of groups."""
    n, k = qw.shape
    if k % qw.group_size:
        raise RetargetError(f"float zero points need K = {k} to be a whole number of {qw.group_size}-groups",
                            field="zero")
    groups = k // qw.group_size
    offset = (-qw.zero * qw.scale).numpy().astype(np.float32)  # [N, G]: what each block adds per unit of A
    # block sums as A @ S with S[k, g] = 1 if k // group_size == g: works for A of any rank; shared by name
    summer = f"block_summer_k{k}_g{qw.group_size}"
    s = (np.arange(k)[:, None] // qw.group_size == np.arange(groups)[None, :]).astype(np.float32)
    nodes, inits = float_constant(np.ascontiguousarray(offset.T), f"{prefix}.block_offsets")
    inits.append(numpy_helper.from_array(s, summer))
    nodes += [
        helper.make_node("MatMul", [a, summer], [f"{prefix}/a_block_sums"], name=f"{prefix}/BlockSum"),
        helper.make_node("MatMul", [f"{prefix}/a_block_sums", f"{prefix}.block_offsets"], [f"{prefix}/offset_part"],
                         name=f"{prefix}/OffsetMatMul"),
        helper.make_node("Add", [integer_part, f"{prefix}/offset_part"], [y], name=f"{prefix}/Add"),
    ]
    return nodes, inits


def lowered_nodes(qw: QuantizedWeight, a: str, y: str, prefix: str, accuracy_level: int = 0) -> Lowered:
    """Nodes computing Y = A @ dequant(QW).T; float zero points become an integer product plus a block-sum term."""
    if qw.integer_zero or qw.bits != 4 or qw.shape[1] % qw.group_size:
        return matmulnbits_node(pack_matmulnbits(qw), a, y, prefix, accuracy_level)
    nodes, inits = matmulnbits_node(pack_matmulnbits(zero_free(qw)), a, f"{prefix}/integer_part", prefix,
                                    accuracy_level)
    offset_nodes, offset_inits = zero_offset_nodes(qw, a, f"{prefix}/integer_part", y, prefix)
    return nodes + offset_nodes, inits + offset_inits


def lower_matmuls(model: onnx.ModelProto, qweights: dict[str, QuantizedWeight], accuracy_level: int = 0) -> int:
    """Replace each MatMul whose module is in QWEIGHTS by a MatMulNBits node; drop the float weights.

    Raises if a quantized module has no MatMul in the graph, or the shapes disagree. Returns the count.
    """
    count = replace_matmuls(model, qweights, lambda qw, a, y, prefix: lowered_nodes(qw, a, y, prefix, accuracy_level))
    require_opset(model, 1, "com.microsoft")
    return count


def lower_tied_embedding(model: onnx.ModelProto, embedding: str = "model.embed_tokens", head: str = "lm_head") -> bool:
    """Make the embedding Gather read lm_head's MatMulNBits blocks through `com.microsoft.GatherBlockQuantized`.

    For tied embeddings (SmolLM2, and llama.cpp's token_embd = output): the vocabulary table is stored
    once, quantized, as in the GGUF. GatherBlockQuantized reads uint8 data in MatMulNBits' layout (4-bit codes
    two to a byte, zero points packed the same way, absent ones 2**(bits - 1)), so B reshapes to the table
    [V, K * bits / 8]. Needs 4- or 8-bit blocks that tile K exactly; returns False (the float table stays)
    otherwise.
    """
    graph = model.graph
    gather = next((n for n in graph.node if n.op_type == "Gather" and module_name_of(n) == embedding), None)
    matmul = next((n for n in graph.node if n.op_type == "MatMulNBits" and n.name == f"{head}/MatMulNBits"), None)
    if gather is None or matmul is None:
        return False
    attrs = {a.name: a.i for a in matmul.attribute}
    inits = {t.name: t for t in graph.initializer}
    k, n, block, bits = attrs["K"], attrs["N"], attrs["block_size"], attrs["bits"]
    if bits not in (4, 8) or k % block or gather.input[0] not in inits:
        return False
    blocks = k // block
    shapes = [numpy_helper.from_array(np.array([n, k * bits // 8], np.int64), f"{head}.as_table_shape"),
              numpy_helper.from_array(np.array([n, blocks], np.int64), f"{head}.as_table_scales_shape")]
    reshapes = [helper.make_node("Reshape", [matmul.input[1], shapes[0].name], [f"{head}/table"],
                                 name=f"{embedding}/TableReshape"),
                helper.make_node("Reshape", [matmul.input[2], shapes[1].name], [f"{head}/table_scales"],
                                 name=f"{embedding}/ScalesReshape")]
    inputs = [f"{head}/table", gather.input[1], f"{head}/table_scales"]
    if len(matmul.input) > 3:  # uint8 zero points, packed like the codes
        zero_point_shape = np.array([n, -(-blocks * bits // 8)], np.int64)
        shapes.append(numpy_helper.from_array(zero_point_shape, f"{head}.as_table_zp_shape"))
        reshapes.append(helper.make_node("Reshape", [matmul.input[3], shapes[-1].name], [f"{head}/table_zp"],
                                         name=f"{embedding}/ZeroPointReshape"))
        inputs.append(f"{head}/table_zp")
    lookup = helper.make_node("GatherBlockQuantized", inputs, list(gather.output),
                              name=f"{embedding}/GatherBlockQuantized", domain="com.microsoft",
                              gather_axis=0, quantize_axis=1, block_size=block, bits=bits)
    # lm_head's float16 scale Casts sit at the end of the graph: move them ahead of the embedding lookup
    producers = [node for node in graph.node if set(node.output) & set(matmul.input[2:])]
    for node in producers:
        graph.node.remove(node)
    position = list(graph.node).index(gather)
    graph.node.remove(gather)
    for offset, node in enumerate([*producers, *reshapes, lookup]):
        graph.node.insert(position + offset, node)
    graph.initializer.extend(shapes)
    table = inits[gather.input[0]]
    if not any(table.name in n.input for n in graph.node):
        graph.initializer.remove(table)
    return True
