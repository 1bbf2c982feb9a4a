"""Multi-head latent attention (DeepSeek-V2/V3, Kimi K2) over a cache of what DeepSeek caches: per token and
layer the normalized KV latent c (kv_lora_rank values) and the rotated decoupled RoPE key (qk_rope_head_dim),
one tensor past_key_values.N.latent [batch, 1, past, kv_lora_rank + qk_rope_head_dim], instead of per-head
keys and values.

Attention runs in the absorbed form for prompts and decode alike (standard ONNX ops; no fused ONNX Runtime
kernel takes a latent cache):

    q = q_b(norm(q_a(x)))  ->  per head [q_nope | q_rope]           (or q_proj without a q LoRA)
    [c | k_rope] = kv_a(x);  c = norm(c);  k_rope = RoPE(k_rope)   ->  present = past ++ [c | k_rope]
    scores = [q_nope @ W_UK | RoPE(q_rope)] @ present^T * scale     (W_UK: kv_b's key rows, absorbed into q)
    out = o_proj((softmax(scores + causal) @ c) @ W_UV^T)          (W_UV: kv_b's value rows, after attention)

RoPE is ONNX Runtime's RotaryEmbedding, interleaved (pairs of adjacent channels) when the config says
rope_interleave: transformers de-interleaves and rotates halves, which permutes q_rope and k_rope alike and
leaves every score unchanged. kv_b's weight is split per head into W_UK and W_UV: FP8 (E4M3) codes stay FP8
behind blocked DequantizeLinears, other quantized formats are dequantized to float; the other projections are
ordinary MatMuls the weight lowerings replace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from retarget.export.decoder.blocks import Block, Rope
from retarget.export.decoder.cache import BATCH, PAST, CacheTensor
from retarget.export.decoder.graph import array
from retarget.export.decoder.registry import Unsupported, lowers

if TYPE_CHECKING:
    from retarget.export.decoder.build import DecoderGraph

@dataclass(frozen=True)
class LatentAttention(Block):
    """DeepSeek's MLA: HEADS query heads of NOPE_DIM + ROPE_DIM channels scored against a shared latent of
    KV_RANK channels plus one ROPE_DIM key; values of V_DIM per head decompressed from the latent.
    q_rank None: queries come straight from q_proj. q_scale, kv_scale: LongCat's LoRA scales on q and on the
    normalized latent (folded into the two low-rank norms' weights)."""

    heads: int = 0
    q_rank: int | None = None
    kv_rank: int = 0
    nope_dim: int = 0
    rope_dim: int = 0
    v_dim: int = 0
    scale: float = 1.0
    rope: Rope | None = None
    norm_eps: float = 1e-6
    q_scale: float = 1.0
    kv_scale: float = 1.0

    @property
    def cache_width(self) -> int:
        """Values cached per token: the latent and the RoPE key."""
        return self.kv_rank + self.rope_dim


def causal_mask(g: DecoderGraph) -> str:
    """Additive [new, total] mask: 0 where the key's position <= the query's, -1e30 after (built once)."""
    name = "/causal_mask"
    if name not in g.outputs:
        one, zero = g.const("one", np.array(1, np.int64)), g.const("zero_i", np.array(0, np.int64))
        first = g.op("Squeeze", [g.first_position()], [f"{name}/first"], "causal_mask")[0]
        queries = g.op("Range", [first, "/total64", one], [f"{name}/queries"], "causal_mask")[0]
        queries = g.op("Unsqueeze", [queries, g.const("last_axis", np.array([-1], np.int64))],
                       [f"{name}/query_column"], "causal_mask")[0]
        keys = g.op("Range", [zero, "/total64", one], [f"{name}/keys"], "causal_mask")[0]
        future = g.op("Greater", [keys, queries], [f"{name}/future"], "causal_mask")[0]
        g.op("Where", [future, g.const("minus_inf", np.array(-1e30, np.float32)),
                       g.const("zero_f", np.array(0, np.float32))], [name], "causal_mask")
        g.outputs.add(name)
    return name


@lowers(LatentAttention)
class LatentAttentionLowering:
    """q (low-rank or direct) and kv_a projections, RoPE, the latent cache, absorbed attention, o_proj."""

    def check(self, block: LatentAttention, layer: int, kv_cache: str | None) -> None:
        if kv_cache is not None:
            raise Unsupported(f"layer {layer}: a quantized KV cache (kv-int8, kv-fp8) is not lowered for multi-head "
                              f"latent attention ({block.path}) yet; its latent cache stays float32", field="--recipe")

    def cache(self, block: LatentAttention, layer: int) -> list[CacheTensor]:
        return [CacheTensor("latent", (BATCH, 1, PAST, block.cache_width))]

    def __call__(self, g: DecoderGraph, block: LatentAttention, x: str, layer: int) -> str:
        module, path, heads = block.module, block.path, block.heads
        qk_dim = block.nope_dim + block.rope_dim
        w_uk, w_uv = self._absorbed(g, block)
        # queries: [B, H, S, nope] absorbed into the latent, [B, H, S, rope] rotated
        if block.q_rank is None:
            q = g.linear(x, module.q_proj.weight, f"{path}.q_proj")
        else:
            q = g.linear(x, module.q_a_proj.weight, f"{path}.q_a_proj", module.q_a_proj.bias)
            q = g.rms_norm(q, array(module.q_a_layernorm.weight) * np.float32(block.q_scale), block.norm_eps,
                           f"{path}.q_a_layernorm")
            q = g.linear(q, module.q_b_proj.weight, f"{path}.q_b_proj")
        q = g.op("Reshape", [q, g.const(f"{path}.q_heads", np.array([0, 0, heads, qk_dim], np.int64))],
                 [f"/{path}/q_heads"], path)[0]
        q = g.op("Transpose", [q], [f"/{path}/q_bhsd"], path, perm=[0, 2, 1, 3])[0]
        q_nope, q_rope = g.op("Split", [q, g.const(f"{path}.q_split", np.array([block.nope_dim, block.rope_dim]))],
                              [f"/{path}/q_nope", f"/{path}/q_rope"], path, axis=-1)
        q_latent = g.op("MatMul", [q_nope, w_uk], [f"/{path}/q_latent"], f"{path}.absorbed_k")[0]
        q = g.op("Concat", [q_latent, self._rope(g, block, q_rope, heads, "q")], [f"/{path}/q_absorbed"], path,
                 axis=-1)[0]
        # the new tokens' cache rows [B, 1, S, kv_rank + rope]
        kv = g.linear(x, module.kv_a_proj_with_mqa.weight, f"{path}.kv_a_proj_with_mqa", module.kv_a_proj_with_mqa.bias)
        latent, k_rope = g.op("Split", [kv, g.const(f"{path}.kv_split", np.array([block.kv_rank, block.rope_dim]))],
                              [f"/{path}/latent_raw", f"/{path}/k_rope"], path, axis=-1)
        latent = g.rms_norm(latent, array(module.kv_a_layernorm.weight) * np.float32(block.kv_scale),
                            block.norm_eps, f"{path}.kv_a_layernorm")
        rows = g.op("Concat", [latent, self._rope(g, block, k_rope, 1, "k")], [f"/{path}/cache_rows"], path, axis=-1)[0]
        rows = g.op("Unsqueeze", [rows, g.const("one_axis", np.array([1], np.int64))], [f"/{path}/cache_rows4"],
                    path)[0]
        cache = g.op("Concat", [f"past_key_values.{layer}.latent", rows], [f"present.{layer}.latent"], path,
                     axis=2)[0]
        # absorbed attention over the whole cache, then W_UV per head
        keys = g.op("Transpose", [cache], [f"/{path}/keys_t"], path, perm=[0, 1, 3, 2])[0]
        scores = g.op("MatMul", [q, keys], [f"/{path}/scores"], f"{path}.scores")[0]
        scores = g.op("Mul", [scores, g.const(f"{path}.scale", np.array(block.scale, np.float32))],
                      [f"/{path}/scaled"], path)[0]
        scores = g.op("Add", [scores, causal_mask(g)], [f"/{path}/masked"], path)[0]
        probs = g.op("Softmax", [scores], [f"/{path}/probs"], path, axis=-1)[0]
        values = g.op("Slice", [cache, g.const("zero1", np.array([0], np.int64)),
                                g.const(f"{path}.kv_rank", np.array([block.kv_rank], np.int64)),
                                g.const("last_axis", np.array([-1], np.int64))], [f"/{path}/latent_values"], path)[0]
        context = g.op("MatMul", [probs, values], [f"/{path}/context_latent"], f"{path}.context")[0]
        out = g.op("MatMul", [context, w_uv], [f"/{path}/context"], f"{path}.absorbed_v")[0]
        out = g.op("Transpose", [out], [f"/{path}/context_bshd"], path, perm=[0, 2, 1, 3])[0]
        out = g.op("Reshape", [out, g.const(f"{path}.flat", np.array([0, 0, heads * block.v_dim], np.int64))],
                   [f"/{path}/attention"], path)[0]
        return g.linear(out, module.o_proj.weight, f"{path}.o_proj", module.o_proj.bias)

    @staticmethod
    def _absorbed(g: DecoderGraph, block: LatentAttention) -> tuple[str, str]:
        """W_UK [H, nope, kv_rank] and W_UV^T [H, kv_rank, v] from kv_b_proj (the weight is consumed here, not by
        a MatMul lowering): FP8 codes split per head behind blocked DequantizeLinears when the recipe made it
        E4M3, the dequantized weight for other formats, else float."""
        key = f"{block.path}.kv_b_proj"
        qw = g.qweights.pop(key, None)
        heads, nope, rows = block.heads, block.nope_dim, block.nope_dim + block.v_dim
        if qw is not None and qw.element == "e4m3":  # scales are per row and K-group: any row split keeps them
            codes = qw.codes.numpy().reshape(heads, rows, block.kv_rank)
            scales = qw.scale.numpy().reshape(heads, rows, -1)
            return (g.fp8_const(f"{key}.absorbed_k", codes[:, :nope], scales[:, :nope], 2, qw.group_size),
                    g.fp8_const(f"{key}.absorbed_v", codes[:, nope:].transpose(0, 2, 1),
                                scales[:, nope:].transpose(0, 2, 1), 1, qw.group_size))
        weight = block.module.kv_b_proj.weight.detach().float() if qw is None else qw.dequantize().float()
        per_head = weight.reshape(heads, rows, block.kv_rank)
        w_uk = np.ascontiguousarray(array(per_head[:, :block.nope_dim]))
        w_uv = np.ascontiguousarray(array(per_head[:, block.nope_dim:].transpose(1, 2)))
        return g.const(f"{key}.absorbed_k", w_uk), g.const(f"{key}.absorbed_v", w_uv)

    @staticmethod
    def _rope(g: DecoderGraph, block: LatentAttention, x: str, heads: int, which: str) -> str:
        """RotaryEmbedding on X ([B, H, S, rope] queries or [B, S, rope] keys) at the new tokens' positions."""
        cos, sin = g.rope_tables(block.rope)
        return g.op("RotaryEmbedding", [x, g.first_position(), cos, sin], [f"/{block.path}/{which}_rotated"],
                    f"{block.path}.{which}_rope", interleaved=int(block.rope.interleaved),
                    **({"num_heads": 1, "rotary_embedding_dim": block.rope_dim} if heads == 1 else {}))[0]

