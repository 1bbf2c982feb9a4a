"""Attention lowering: ONNX Runtime's GroupQueryAttention, which applies rotary (half-split or interleaved,
partial when the cos/sin tables are narrower than the head), a sliding window, attention sinks and score
softcapping itself, over a KV cache it appends to in place (a partial rotary it cannot take runs as
RotaryEmbedding before it). Q/K RMSNorms run before it as RMSNormalization
(per head: on a [B, S, heads, head_dim] view): GroupQueryAttention's own q_norm_weight inputs are refused by
ORT 1.32's CPU provider (CUDA and WebGPU only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from onnx import TensorProto

from retarget.export.decoder.blocks import Attention
from retarget.export.decoder.graph import array
from retarget.export.decoder.registry import Unsupported, lowers

if TYPE_CHECKING:
    from retarget.export.decoder.build import DecoderGraph

# GroupQueryAttention's optional input positions (com.microsoft opset 1)
COS, SIN, ATTENTION_BIAS, HEAD_SINK = 7, 8, 10, 11
NORMS_AFTER_ROTARY = ("l2", "head_rotated")


def _outside_rotary(block: Attention) -> bool:
    """Rotary as RotaryEmbedding on q and k before GroupQueryAttention: a partial rotary it cannot apply itself
    (it needs rotary_dim / 2 to be a multiple of 8), or one a norm must follow (Llama 4, Hunyuan)."""
    if block.rope is None:
        return False
    return block.qk_norm in NORMS_AFTER_ROTARY or (block.rope.dim < block.head_dim and (block.rope.dim // 2) % 8 != 0)


def _positions(g: DecoderGraph) -> str:
    """float32 [S]: the positions of the new tokens."""
    if "/new_positions" not in g.outputs:
        length = g.op("Shape", ["input_ids"], ["/positions/length"], "positions", start=1, end=2)[0]
        end = g.op("Add", [g.first_position(), length], ["/positions/end"], "positions")[0]
        scalars = [g.op("Squeeze", [t], [f"{t}_scalar"], "positions")[0] for t in (g.first_position(), end)]
        steps = g.op("Range", [*scalars, g.const("one", np.array(1, np.int64))], ["/positions/int"], "positions")[0]
        g.op("Cast", [steps], ["/new_positions"], "positions", to=TensorProto.FLOAT)
        g.outputs.add("/new_positions")
    return "/new_positions"


def _temperature(g: DecoderGraph, floor_scale: float, attn_scale: float) -> str:
    """[1, S, 1]: 1 + attn_scale * log(1 + floor((position + 1) / floor_scale)) per new token."""
    name = f"/temperature_{floor_scale:g}_{attn_scale:g}"
    if name not in g.outputs:
        scope = "temperature"
        c = {k: g.const(f"temperature.{k}", np.array(v, np.float32))
             for k, v in {"one": 1.0, "floor_scale": floor_scale, "attn_scale": attn_scale}.items()}
        shifted = g.op("Div", [g.op("Add", [_positions(g), c["one"]], [f"{name}/next"], scope)[0], c["floor_scale"]],
                       [f"{name}/scaled"], scope)[0]
        log = g.op("Log", [g.op("Add", [g.op("Floor", [shifted], [f"{name}/floor"], scope)[0], c["one"]],
                                [f"{name}/plus_one"], scope)[0]], [f"{name}/log"], scope)[0]
        tuned = g.op("Add", [g.op("Mul", [log, c["attn_scale"]], [f"{name}/times"], scope)[0], c["one"]],
                     [f"{name}/flat"], scope)[0]
        g.op("Reshape", [tuned, g.const("temperature.shape", np.array([1, -1, 1], np.int64))], [name], scope)
        g.outputs.add(name)
    return name


def _chunk_bias(g: DecoderGraph, chunk: int) -> str:
    """attention_bias [1, 1, S, total]: 0 where the key lies in the query's CHUNK-token block, -1e30 elsewhere."""
    name = f"/chunk_bias_{chunk}"
    if name not in g.outputs:
        scope = "chunk_bias"
        size = g.const(f"chunk_bias.{chunk}", np.array(chunk, np.int64))
        total = g.op("Squeeze", [g.op("Shape", ["attention_mask"], [f"{name}/total1"], scope, start=1, end=2)[0]],
                     [f"{name}/total"], scope)[0]
        keys = g.op("Range", [g.const("zero_i", np.array(0, np.int64)), total, g.const("one", np.array(1, np.int64))],
                    [f"{name}/keys"], scope)[0]
        queries = g.op("Cast", [_positions(g)], [f"{name}/queries"], scope, to=TensorProto.INT64)[0]
        q_chunk = g.op("Unsqueeze", [g.op("Div", [queries, size], [f"{name}/q_div"], scope)[0],
                                     g.const("last_axis", np.array([-1], np.int64))], [f"{name}/q_chunk"], scope)[0]
        k_chunk = g.op("Div", [keys, size], [f"{name}/k_chunk"], scope)[0]
        same = g.op("Equal", [q_chunk, k_chunk], [f"{name}/same"], scope)[0]
        bias = g.op("Where", [same, g.const("zero_f", np.array(0, np.float32)),
                              g.const("minus_inf", np.array(-1e30, np.float32))], [f"{name}/bias2d"], scope)[0]
        g.op("Unsqueeze", [bias, g.const("head_axes", np.array([0, 1], np.int64))], [name], scope)
        g.outputs.add(name)
    return name


@lowers(Attention)
class GroupQueryAttentionLowering:
    """q/k/v projections (fused when they can be), GroupQueryAttention, o_proj."""

    def check(self, block: Attention, layer: int, kv_cache: str | None) -> None:
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
        if block.qk_norm in ("head", "projection"):
            q, k, v = self._split(g, block, qkv)
            qkv = [self._norm(g, block, q, "q_norm", block.heads), self._norm(g, block, k, "k_norm", block.kv_heads), v]
        if _outside_rotary(block):
            q, k, v = self._split(g, block, qkv)
            qkv = [self._rotary(g, block, q, "q", block.heads), self._rotary(g, block, k, "k", block.kv_heads), v]
        if block.qk_norm in NORMS_AFTER_ROTARY:  # after rotary, as Llama 4 and Hunyuan compute it
            q, k, v = self._split(g, block, qkv)
            qkv = [self._norm(g, block, q, "q_norm", block.heads), self._norm(g, block, k, "k_norm", block.kv_heads), v]
        if block.temperature is not None:
            q, k, v = self._split(g, block, qkv)
            qkv = [g.op("Mul", [q, _temperature(g, *block.temperature)], [f"/{block.path}/q_tuned"], block.path)[0],
                   k, v]
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
        """RMSNorm NAME ('q_norm' / 'k_norm') over X's whole projection ('projection', OLMoE) or each head ('head':
        Qwen3, Gemma 3; 'head_rotated': Hunyuan; 'l2': weightless, Llama 4)."""
        if block.qk_norm == "l2":
            weight = np.ones(block.head_dim, np.float32)
        else:
            module = getattr(block.module, block.qk_norm_names[name == "k_norm"])
            weight = array(module.weight) + np.float32(block.norm_offset)
        scope = f"{block.path}.{name}"
        if block.qk_norm == "projection":
            return g.rms_norm(x, weight, block.norm_eps, scope)
        heads_shape = g.const(f"{scope}.heads_shape", np.array([0, 0, heads, block.head_dim], np.int64))
        flat_shape = g.const(f"{scope}.flat_shape", np.array([0, 0, heads * block.head_dim], np.int64))
        split = g.op("Reshape", [x, heads_shape], [f"/{scope}/heads"], scope)[0]
        return g.op("Reshape", [g.rms_norm(split, weight, block.norm_eps, scope), flat_shape], [f"/{scope}/flat"],
                    scope)[0]

    @staticmethod
    def _rotary(g: DecoderGraph, block: Attention, x: str, name: str, heads: int) -> str:
        """RotaryEmbedding over the first rope.dim channels of each head of X, from the first new position."""
        cos, sin = g.rope_tables(block.rope)
        return g.op("RotaryEmbedding", [x, g.first_position(), cos, sin], [f"/{block.path}/{name}_rotary"],
                    f"{block.path}.{name}_rotary", num_heads=heads, rotary_embedding_dim=block.rope.dim,
                    interleaved=int(block.rope.interleaved))[0]

    @staticmethod
    def _gqa(g: DecoderGraph, block: Attention, qkv: list[str], layer: int) -> str:
        inputs = [*qkv, "", ""] if len(qkv) == 1 else list(qkv)
        inputs += [f"past_key_values.{layer}.key", f"past_key_values.{layer}.value", "seqlens_k",
                   "total_sequence_length"] + [""] * 11
        attrs: dict = {"num_heads": block.heads, "kv_num_heads": block.kv_heads, "scale": block.scale}
        if block.rope is not None and not _outside_rotary(block):
            inputs[COS], inputs[SIN] = g.rope_tables(block.rope)
            attrs |= {"do_rotary": 1, "rotary_interleaved": int(block.rope.interleaved)}
        if block.window is not None:  # same keys as transformers' sliding_window (checked across the window)
            attrs["local_window_size"] = block.window
        if block.softcap is not None:
            attrs["softcap"] = block.softcap
        if block.chunk is not None:
            inputs[ATTENTION_BIAS] = _chunk_bias(g, block.chunk)
        if block.sinks:
            inputs[HEAD_SINK] = g.const(f"{block.path}.sinks", array(block.module.sinks))
        while inputs[-1] == "":
            inputs.pop()
        return g.op("GroupQueryAttention", inputs, [f"/{block.path}/attention", f"present.{layer}.key",
                                                    f"present.{layer}.value"], block.path, **attrs)[0]
