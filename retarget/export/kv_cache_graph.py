"""The quantized KV cache of retarget.export.decoder: keys and values stored as INT8 or FP8 E4M3 codes
with one float32 scale per [batch, head, token] row, the storage of retarget.quantize.kv_cache.

Per layer the cache is four tensors, past_key_values.N.{key, key_scale, value, value_scale}
([B, kv_heads, past, head_dim] codes, [B, kv_heads, past, 1] scales) -> present.N.* (the same with the
new tokens appended: the cache grows by concatenation). Inside, for the keys (values alike):

    k = RotaryEmbedding(k, past_length)                     # com.microsoft, the model's cos/sin tables
    scale = Max(ReduceMax(Abs(k), head_dim) / qmax, 1e-12)   # qmax 127 (int8) or 448 (e4m3)
    codes = Cast(Clip(Round(k / scale), -127, 127), int8)    # Round: half to even, as torch.round
          | Cast(k / scale, float8e4m3fn, saturate=1)        # nearest even, saturating, as torch's cast
    present.N.key = Concat(past codes, codes); present.N.key_scale = Concat(past scales, scale)
        (FP8: ONNX's Concat has no float8 type, so the codes are joined as their exact float32 values and
        cast back, which reproduces them bit for bit)
    GroupQueryAttention(q, codes * scale, ..., past codes * past scales, do_rotary=0)

so attention reads the quantized values for the prompt's own tokens as well as for cached ones, as
retarget.quantize.activations.fake_quantize computes them in torch. ONNX Runtime's GroupQueryAttention has a
quantized cache of its own (k_quant_type / v_quant_type PER_TENSOR or PER_CHANNEL with k_scale / v_scale
inputs), but its scales are static tensors; these rows' scales are computed at run time, so the
quantization is written out as the plain ops above (docs/onnx-lowerings.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto, ValueInfoProto, helper

from retarget.quantize.activations import QMAX

CODE_TYPES = {"int8": TensorProto.INT8, "e4m3": TensorProto.FLOAT8E4M3FN}
PARTS = ("key", "key_scale", "value", "value_scale")  # per layer, the order of the cache inputs and outputs


def cache_io(layers: int, kv_heads: int, head_dim: int, element: str
             ) -> tuple[list[ValueInfoProto], list[ValueInfoProto]]:
    """The graph inputs (past_key_values.N.*) and outputs (present.N.*) of an ELEMENT cache."""
    inputs, outputs = [], []
    for i in range(layers):
        for part in PARTS:
            kind = TensorProto.FLOAT if part.endswith("scale") else CODE_TYPES[element]
            last = 1 if part.endswith("scale") else head_dim
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{part}", kind,
                                                        ["batch_size", kv_heads, "past_sequence_length", last]))
            outputs.append(helper.make_tensor_value_info(f"present.{i}.{part}", kind,
                                                         ["batch_size", kv_heads, "total_sequence_length", last]))
    return inputs, outputs


class QuantizedCache:
    """Writes the attention of each layer over an ELEMENT cache into B (a retarget.export.decoder GraphBuilder)."""

    def __init__(self, b: Any, element: str, heads: int, kv_heads: int, head_dim: int) -> None:
        if element not in CODE_TYPES:
            raise ValueError(f"KV-cache element must be one of {sorted(CODE_TYPES)}, got {element!r}")
        self.b, self.element = b, element
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        # positions of the new tokens start at the cached length (RotaryEmbedding's position_ids of shape [1])
        self.past_length = b.op("Shape", ["past_key_values.0.key"], ["/past_length"], "past_length", start=2,
                                end=3)[0]
        self.qkv_split = b.const("kv_cache.qkv_split", np.array([heads * head_dim, kv_heads * head_dim,
                                                                 kv_heads * head_dim], np.int64))
        self.rows_shape = b.const("kv_cache.rows_shape", np.array([0, 0, kv_heads, head_dim], np.int64))
        self.flat_shape = b.const("kv_cache.flat_shape", np.array([0, 0, kv_heads * head_dim], np.int64))
        self.last_axis = b.const("kv_cache.last_axis", np.array([-1], np.int64))
        self.qmax = b.const("kv_cache.qmax", np.array(QMAX[element], np.float32))
        self.tiny = b.const("kv_cache.min_scale", np.array(1e-12, np.float32))
        if element == "int8":
            self.int8_bounds = [b.const("kv_cache.int8_min", np.array(-127, np.float32)),
                                b.const("kv_cache.int8_max", np.array(127, np.float32))]

    def _node(self, op_type: str, inputs: list[str], scope: str, tag: str, **attrs) -> str:
        return self.b.op(op_type, inputs, [f"/{scope}/{tag}"], f"{scope}.{tag}", **attrs)[0]

    def attention(self, qkv: list[str], layer: int, attn: str, scale: float, cos: str, sin: str) -> str:
        """Rotary (tables COS, SIN), cache update and GroupQueryAttention of LAYER (scope ATTN) over the
        projections QKV (one fused output, or q, k, v); returns the attention output [B, S, heads * head_dim]."""
        if len(qkv) == 1:
            qkv = self.b.op("Split", [qkv[0], self.qkv_split], [f"/{attn}/q", f"/{attn}/k", f"/{attn}/v"], attn,
                            axis=-1)
        q = self._rotary(qkv[0], self.heads, attn, "q_rotary", cos, sin)
        keys, past_keys = self._store(self._rotary(qkv[1], self.kv_heads, attn, "k_rotary", cos, sin), layer, "key",
                                      attn)
        values, past_values = self._store(qkv[2], layer, "value", attn)
        return self.b.op("GroupQueryAttention",
                         [q, keys, values, past_keys, past_values, "seqlens_k", "total_sequence_length"],
                         [f"/{attn}/attention", f"/{attn}/keys", f"/{attn}/values"], attn,
                         num_heads=self.heads, kv_num_heads=self.kv_heads, do_rotary=0, scale=scale)[0]

    def _rotary(self, x: str, heads: int, attn: str, tag: str, cos: str, sin: str) -> str:
        return self._node("RotaryEmbedding", [x, self.past_length, cos, sin], attn, tag,
                          num_heads=heads, interleaved=0)

    def _store(self, x: str, layer: int, part: str, attn: str) -> tuple[str, str]:
        """Quantize the new rows of X [B, S, kv_heads * head_dim] and append them to the cache; returns the
        new rows dequantized (as X) and the past dequantized [B, kv_heads, past, head_dim]."""
        scope = f"{attn}.{part}_cache"
        rows = self._node("Reshape", [x, self.rows_shape], scope, "rows")  # [B, S, kv_heads, head_dim]
        amax = self._node("ReduceMax", [self._node("Abs", [rows], scope, "abs"), self.last_axis], scope, "amax",
                          keepdims=1)
        scale = self._node("Max", [self._node("Div", [amax, self.qmax], scope, "amax_over_qmax"), self.tiny],
                           scope, "scale")
        scaled = self._node("Div", [rows, scale], scope, "scaled")
        if self.element == "int8":
            rounded = self._node("Clip", [self._node("Round", [scaled], scope, "round"), *self.int8_bounds],
                                 scope, "clip")
            codes = self._node("Cast", [rounded], scope, "codes", to=TensorProto.INT8)
        else:
            codes = self._node("Cast", [scaled], scope, "codes", to=TensorProto.FLOAT8E4M3FN, saturate=1)
        values = self._node("Cast", [codes], scope, "values", to=TensorProto.FLOAT)  # exact: codes are a grid
        new = self._node("Reshape", [self._node("Mul", [values, scale], scope, "dequantized"), self.flat_shape],
                         scope, "new")
        past, present = f"past_key_values.{layer}.{part}", f"present.{layer}.{part}"
        past_values = self._node("Cast", [past], scope, "past_values", to=TensorProto.FLOAT)
        self._append(scale, f"{past}_scale", f"{present}_scale", scope)
        if self.element == "int8":
            self._append(codes, past, present, scope)
        else:  # ONNX's Concat takes no float8: join the (exact) float values and cast them back, exactly
            joined = self._append(values, past_values, f"/{scope}/values_joined", scope)
            self.b.op("Cast", [joined], [present], f"{scope}.present", to=CODE_TYPES[self.element], saturate=1)
        return new, self._node("Mul", [past_values, f"{past}_scale"], scope, "past_dequantized")

    def _append(self, rows: str, past: str, out: str, scope: str) -> str:
        """OUT = PAST [B, kv_heads, past, .] followed by ROWS [B, S, kv_heads, .] (moved heads-first)."""
        tag = out.rsplit("/", 1)[-1].rsplit(".", 1)[-1]
        heads_first = self._node("Transpose", [rows], scope, f"{tag}_heads_first", perm=[0, 2, 1, 3])
        return self.b.op("Concat", [past, heads_first], [out], f"{scope}.{tag}_concat", axis=2)[0]
