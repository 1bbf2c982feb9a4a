"""Attention lowering: ONNX Runtime's GroupQueryAttention, which applies rotary (half-split or interleaved,
partial when the cos/sin tables are narrower than the head), a sliding window, attention sinks and score
softcapping itself, over a KV cache it appends to in place. Q/K RMSNorms run before it as RMSNormalization
(per head: on a [B, S, heads, head_dim] view): GroupQueryAttention's own q_norm_weight inputs are refused by
ORT 1.32's CPU provider (CUDA and WebGPU only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from retarget.export.decoder.blocks import Attention
from retarget.export.decoder.graph import array
from retarget.export.decoder.registry import Unsupported, lowers

if TYPE_CHECKING:
    from retarget.export.decoder.build import DecoderGraph

# GroupQueryAttention's optional input positions (com.microsoft opset 1)
COS, SIN, HEAD_SINK = 7, 8, 11


@lowers(Attention)
class GroupQueryAttentionLowering:
    """q/k/v projections (fused when they can be), GroupQueryAttention, o_proj."""

    def check(self, block: Attention, layer: int, kv_cache: str | None) -> None:
        rope = block.rope
        if rope is not None and rope.dim < block.head_dim and (rope.dim // 2) % 8:
            raise Unsupported(f"layer {layer}: partial rotary over {rope.dim} of {block.head_dim} channels "
                              f"({block.path}); GroupQueryAttention needs rotary_dim / 2 to be a multiple of 8",
                              field="partial_rotary_factor")
        if kv_cache is None:
            return
        features = {"a sliding window": block.window, "q/k norms": block.qk_norm, "attention sinks": block.sinks,
                    "softcapping": block.softcap, "no rotary embedding": block.rope is None,
                    "partial or interleaved rotary": block.rope is not None
                    and (block.rope.dim != block.head_dim or block.rope.interleaved)}
        what = next((name for name, present in features.items() if present), None)
        if what is not None:
            raise Unsupported(f"layer {layer}: a quantized KV cache (kv-int8, kv-fp8) is lowered for plain rotary "
                              f"attention only; {block.path} has {what}", field="--recipe")

    def __call__(self, g: DecoderGraph, block: Attention, x: str, layer: int) -> str:
        module, path = block.module, block.path
        qkv = g.projection(x, block, "qkv_proj")
        if block.qk_norm is not None:
            q, k, v = self._split(g, block, qkv)
            qkv = [self._norm(g, block, q, "q_norm", block.heads), self._norm(g, block, k, "k_norm", block.kv_heads), v]
        if g.kv_cache is not None:
            attended = g.kv_cache.attention(qkv, layer, path, block.scale, *g.rope_tables(block.rope))
        else:
            attended = self._gqa(g, block, qkv, layer)
        return g.linear(attended, module.o_proj.weight, f"{path}.o_proj", module.o_proj.bias)

    @staticmethod
    def _split(g: DecoderGraph, block: Attention, qkv: list[str]) -> list[str]:
        if len(qkv) == 3:
            return qkv
        sizes = np.array([block.heads * block.head_dim, *[block.kv_heads * block.head_dim] * 2], np.int64)
        return g.op("Split", [qkv[0], g.const(f"{block.path}.qkv_split", sizes)],
                    [f"/{block.path}/q", f"/{block.path}/k", f"/{block.path}/v"], block.path, axis=-1)

    @staticmethod
    def _norm(g: DecoderGraph, block: Attention, x: str, name: str, heads: int) -> str:
        """RMSNorm NAME over X's whole projection ('projection', OLMoE) or each head ('head': Qwen3, Gemma 3)."""
        weight = array(getattr(block.module, name).weight) + np.float32(block.norm_offset)
        scope = f"{block.path}.{name}"
        if block.qk_norm == "projection":
            return g.rms_norm(x, weight, block.norm_eps, scope)
        heads_shape = g.const(f"{scope}.heads_shape", np.array([0, 0, heads, block.head_dim], np.int64))
        flat_shape = g.const(f"{scope}.flat_shape", np.array([0, 0, heads * block.head_dim], np.int64))
        split = g.op("Reshape", [x, heads_shape], [f"/{scope}/heads"], scope)[0]
        return g.op("Reshape", [g.rms_norm(split, weight, block.norm_eps, scope), flat_shape], [f"/{scope}/flat"],
                    scope)[0]

    @staticmethod
    def _gqa(g: DecoderGraph, block: Attention, qkv: list[str], layer: int) -> str:
        inputs = [*qkv, "", ""] if len(qkv) == 1 else list(qkv)
        inputs += [f"past_key_values.{layer}.key", f"past_key_values.{layer}.value", "seqlens_k",
                   "total_sequence_length"] + [""] * 11
        attrs: dict = {"num_heads": block.heads, "kv_num_heads": block.kv_heads, "scale": block.scale}
        if block.rope is not None:
            inputs[COS], inputs[SIN] = g.rope_tables(block.rope)
            attrs |= {"do_rotary": 1, "rotary_interleaved": int(block.rope.interleaved)}
        if block.window is not None:  # same keys as transformers' sliding_window (checked across the window)
            attrs["local_window_size"] = block.window
        if block.softcap is not None:
            attrs["softcap"] = block.softcap
        if block.sinks:
            inputs[HEAD_SINK] = g.const(f"{block.path}.sinks", array(block.module.sinks))
        while inputs[-1] == "":
            inputs.pop()
        return g.op("GroupQueryAttention", inputs, [f"/{block.path}/attention", f"present.{layer}.key",
                                                    f"present.{layer}.value"], block.path, **attrs)[0]
