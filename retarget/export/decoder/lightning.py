"""MiniMax's lightning attention: linear attention with a fixed per-head decay, as ONNX Runtime's LinearAttention
(com.microsoft, CPU kernel in 1.32) over a [heads, head_dim, head_dim] state per layer:

    q, k, v = split_per_head(silu(qkv_proj(x)))
    y, state = LinearAttention(q, k, v, state, decay=-slope_h, update_rule='gated', scale=1)
               # S_t = exp(-slope_h) S_{t-1} + k_t (x) v_t,  y_t = q_t . S_t
    out = out_proj(sigmoid(output_gate(x)) * RMSNorm(y))

transformers computes the prompt block by block (block_size tokens, the decay inside a block as a matrix) and the
decode token by token; both are this recurrence, so one op serves prompt and decode steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from retarget.export.decoder.blocks import Block
from retarget.export.decoder.cache import BATCH, CacheTensor
from retarget.export.decoder.graph import array
from retarget.export.decoder.mlp import activation
from retarget.export.decoder.registry import Unsupported, lowers
from retarget.export.decoder.ssm import scan

if TYPE_CHECKING:
    from retarget.export.decoder.build import DecoderGraph


@dataclass(frozen=True)
class LightningAttention(Block):
    """HEADS heads of HEAD_DIM; ACTIVATION on the fused q/k/v projection; RMSNorm (NORM_EPS) over the output."""

    heads: int = 0
    head_dim: int = 0
    activation: str = "silu"
    norm_eps: float = 1e-6


@lowers(LightningAttention)
class LightningAttentionLowering:
    def check(self, block: LightningAttention, layer: int, kv_cache: str | None) -> None:
        if kv_cache is not None:
            raise Unsupported(f"layer {layer}: a quantized KV cache has no lowering for lightning attention's "
                              f"state ({block.path})", field="--recipe")

    def cache(self, block: LightningAttention, layer: int) -> list[CacheTensor]:
        return [CacheTensor("ssm_state", (BATCH, block.heads, block.head_dim, block.head_dim))]

    def __call__(self, g: DecoderGraph, block: LightningAttention, x: str, layer: int) -> str:
        module, path, heads, dim = block.module, block.path, block.heads, block.head_dim
        qkv = activation(g, g.linear(x, module.qkv_proj.weight, f"{path}.qkv_proj"), block.activation, path)
        per_head = g.op("Reshape", [qkv, g.const(f"{path}.qkv_heads", np.array([0, 0, heads, 3 * dim], np.int64))],
                        [f"/{path}/qkv_heads"], path)[0]
        split = g.op("Split", [per_head, g.const(f"{path}.qkv_split", np.array([dim] * 3, np.int64))],
                     [f"/{path}/{n}_heads" for n in "qkv"], path, axis=-1)
        flat = g.const(f"{path}.flat", np.array([0, 0, heads * dim], np.int64))
        q, k, v = (g.op("Reshape", [t, flat], [f"/{path}/{n}"], path)[0] for t, n in zip(split, "qkv", strict=True))
        y = scan(g, path, q, k, v, self._decay(g, block, x), (heads, heads), layer, None)
        y = g.rms_norm(y, array(module.norm.weight), block.norm_eps, f"{path}.norm")
        gate = g.op("Sigmoid", [g.linear(x, module.output_gate.weight, f"{path}.output_gate")],
                    [f"/{path}/gate"], path)[0]
        gated = g.op("Mul", [y, gate], [f"/{path}/gated"], path)[0]
        return g.linear(gated, module.out_proj.weight, f"{path}.out_proj")

    @staticmethod
    def _decay(g: DecoderGraph, block: LightningAttention, x: str) -> str:
        """[B, S, heads]: the log decay -slope_h of every head at every new token."""
        path = block.path
        tokens = g.op("Shape", [x], [f"/{path}/tokens"], path, start=0, end=2)[0]
        shape = g.op("Concat", [tokens, g.const(f"{path}.heads", np.array([block.heads], np.int64))],
                     [f"/{path}/decay_shape"], path, axis=0)[0]
        slopes = -array(block.module.slope_rate).reshape(-1)
        return g.op("Expand", [g.const(f"{path}.log_decay", slopes), shape], [f"/{path}/decay"], path)[0]
