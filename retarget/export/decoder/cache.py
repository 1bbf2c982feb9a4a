"""What each layer caches between calls, declared by its mixer's lowering.

A lowering may define `cache(block, layer) -> list[CacheTensor]`; the graph then has one input
past_key_values.LAYER.NAME and one output present.LAYER.NAME per tensor. Attention without that method caches
per-head key and value [batch, kv_heads, past, head_dim]. A tensor with a PAST axis grows by the new tokens
each call (present has TOTAL there); one without is a fixed-size state (SSM and conv states), replaced each
call. ONNX Runtime's session (retarget.export.runtime) reads these shapes from the graph's inputs, so any
declared layout runs, and reports bytes per token and bytes per sequence from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from onnx import TensorProto, ValueInfoProto, helper

from retarget.export.decoder.blocks import Block, Decoder
from retarget.export.decoder.registry import lowering_for

BATCH, PAST, TOTAL = "batch_size", "past_sequence_length", "total_sequence_length"


@dataclass(frozen=True)
class CacheTensor:
    """One cached tensor of a layer: NAME ('key', 'latent', 'ssm_state', ...) and its SHAPE as a graph input
    (ints, BATCH, and PAST on the axis that grows with the tokens; no PAST: a fixed-size state)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: int = TensorProto.FLOAT

    @property
    def per_token(self) -> bool:
        return PAST in self.shape


def layer_cache(block: Block, layer: int) -> list[CacheTensor]:
    """The tensors LAYER's mixer BLOCK caches: what its lowering declares, else per-head key and value."""
    declared = getattr(lowering_for(block, layer), "cache", None)
    if declared is not None:
        return declared(block, layer)
    shape = (BATCH, block.kv_heads, PAST, block.head_dim)
    return [CacheTensor("key", shape), CacheTensor("value", shape)]


def cache_io(decoder: Decoder) -> tuple[list[ValueInfoProto], list[ValueInfoProto]]:
    """The graph's past_key_values.N.* inputs and present.N.* outputs, layer by layer."""
    inputs, outputs = [], []
    for layer in decoder.layers:
        for t in layer_cache(layer.mixer, layer.index):
            present = tuple(TOTAL if d == PAST else d for d in t.shape)
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{layer.index}.{t.name}", t.dtype, t.shape))
            outputs.append(helper.make_tensor_value_info(f"present.{layer.index}.{t.name}", t.dtype, present))
    return inputs, outputs
