"""Falcon-H1's layer parts: attention and a Mamba-2 mixer side by side on the same normed input (outputs summed,
each with its muP multiplier), and its MLP with gate and down multipliers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from retarget.export.decoder.blocks import Attention, Block, GatedMlp
from retarget.export.decoder.cache import CacheTensor, layer_cache
from retarget.export.decoder.mlp import activation
from retarget.export.decoder.registry import lowering_for, lowers
from retarget.export.decoder.ssm import Mamba2

if TYPE_CHECKING:
    from retarget.export.decoder.build import DecoderGraph


def _scale(g: DecoderGraph, x: str, factor: float, name: str, scope: str) -> str:
    """X * FACTOR (nothing when FACTOR is 1)."""
    if factor == 1.0:
        return x
    return g.op("Mul", [x, g.const(f"{scope}.{name}", np.array(factor, np.float32))], [f"/{scope}/{name}"], scope)[0]


@dataclass(frozen=True)
class ParallelMixers(Block):
    """ATTENTION(x * ATTENTION_IN) * ATTENTION_OUT + SSM(x) * SSM_OUT; caches both parts' tensors."""

    attention: Attention | None = None
    ssm: Mamba2 | None = None
    attention_in: float = 1.0
    attention_out: float = 1.0
    ssm_out: float = 1.0


@lowers(ParallelMixers)
class ParallelMixersLowering:
    def check(self, block: ParallelMixers, layer: int, kv_cache: str | None) -> None:
        for part in (block.attention, block.ssm):
            lowering_for(part, layer).check(part, layer, kv_cache)

    def cache(self, block: ParallelMixers, layer: int) -> list[CacheTensor]:
        return layer_cache(block.attention, layer) + layer_cache(block.ssm, layer)

    def __call__(self, g: DecoderGraph, block: ParallelMixers, x: str, layer: int) -> str:
        path = block.path
        attn_in = _scale(g, x, block.attention_in, "attention_in", path)
        attn = lowering_for(block.attention, layer)(g, block.attention, attn_in, layer)
        ssm = lowering_for(block.ssm, layer)(g, block.ssm, x, layer)
        return g.op("Add", [_scale(g, attn, block.attention_out, "attention_out", path),
                            _scale(g, ssm, block.ssm_out, "ssm_out", path)], [f"/{path}/mixed"], path)[0]


@dataclass(frozen=True)
class ScaledMlp(GatedMlp):
    """GATE_SCALE * gate before the activation, DOWN_SCALE * the output (Falcon-H1's mlp_multipliers)."""

    gate_scale: float = 1.0
    down_scale: float = 1.0


@lowers(ScaledMlp)
class ScaledMlpLowering:
    def check(self, block: ScaledMlp, layer: int, kv_cache: str | None) -> None:
        lowering_for(GatedMlp(block.path, block.module, block.activation), layer).check(block, layer, kv_cache)

    def __call__(self, g: DecoderGraph, block: ScaledMlp, x: str, layer: int) -> str:
        path = block.path
        gate_up = g.projection(x, block, "gate_up_proj")
        if len(gate_up) == 1:
            gate_up = g.op("Split", [gate_up[0]], [f"/{path}/gate", f"/{path}/up"], path, axis=-1, num_outputs=2)
        gate = _scale(g, gate_up[0], block.gate_scale, "gate_scaled", path)
        gated = g.op("Mul", [activation(g, gate, block.activation, path), gate_up[1]], [f"/{path}/gated"], path)[0]
        down = block.module.down_proj
        return _scale(g, g.linear(gated, down.weight, f"{path}.down_proj", down.bias), block.down_scale,
                      "down_scaled", path)
