"""Two registries make a decoder graph: FAMILIES turns a transformers model of a `model_type` into block
descriptions (retarget.export.decoder.blocks), LOWERINGS writes each description type as ONNX nodes.

Adding an architecture is one describer (`@family("my_type")`) reusing the existing blocks, or a new block
dataclass with its lowering class (`@lowers(MyBlock)`); docs/decoder-graph.md walks through an example.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from torch import nn

from retarget.errors import RetargetError

if TYPE_CHECKING:
    from retarget.export.decoder.blocks import Block, Decoder
    from retarget.export.decoder.build import DecoderGraph


class Lowering(Protocol):
    """Writes one block: reads hidden state X (a tensor name), returns the name of the block's output."""

    def __call__(self, g: DecoderGraph, block: Block, x: str, layer: int) -> str: ...

    def check(self, block: Block, layer: int, kv_cache: str | None) -> None:
        """Raise `Unsupported` for a block this lowering cannot write (before anything is built)."""


LOWERINGS: dict[type, Lowering] = {}
FAMILIES: dict[str, Callable[[nn.Module], Decoder]] = {}


class Unsupported(RetargetError):
    """A model, block or op the decoder graph cannot lower yet (one line: the op and the layer)."""


def lowers(block_type: type) -> Callable[[type], type]:
    """Class decorator: instances of the decorated class write blocks of BLOCK_TYPE."""

    def register(cls: type) -> type:
        LOWERINGS[block_type] = cls()
        return cls

    return register


def family(*model_types: str) -> Callable[[Callable[[nn.Module], Decoder]], Callable[[nn.Module], Decoder]]:
    """Function decorator: the decorated function describes models whose config.model_type is in MODEL_TYPES."""

    def register(describe: Callable[[nn.Module], Decoder]) -> Callable[[nn.Module], Decoder]:
        for model_type in model_types:
            FAMILIES[model_type] = describe
        return describe

    return register


def lowering_for(block: Block, layer: int) -> Lowering:
    """The registered lowering of BLOCK's type (Unsupported naming the block and LAYER when none is)."""
    lowering = LOWERINGS.get(type(block))
    if lowering is None:
        raise Unsupported(f"layer {layer}: no ONNX lowering registered for {type(block).__name__} ({block.path})")
    return lowering
