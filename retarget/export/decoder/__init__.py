"""One decoder graph builder for every supported causal LM (retarget.export.decoder.build); block
descriptions in blocks, the family and lowering registries in registry (docs/decoder-graph.md)."""

from retarget.export.decoder.build import build_decoder, check, describe, unsupported_reason
from retarget.export.decoder.registry import FAMILIES, LOWERINGS, Unsupported, family, lowers

__all__ = ["FAMILIES", "LOWERINGS", "Unsupported", "build_decoder", "check", "describe", "family", "lowers",
           "unsupported_reason"]
