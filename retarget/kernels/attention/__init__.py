"""Decode attention (split-KV, flash-decoding) and causal prefill attention, both with a sliding window,
learned sink logits and grouped-query heads.

Public: `decode_attention`, `prefill_attention` (launch), `decode_attention_ref`, `prefill_attention_ref`,
`masked_attention_ref`, `decode_bytes` (torch reference), `aot_cases`.
"""

from typing import Any

from retarget.kernels.attention.reference import (
    decode_attention_ref,
    decode_bytes,
    masked_attention_ref,
    prefill_attention_ref,
)

_LAUNCH = ("aot_cases", "combine", "decode_attention", "num_splits", "prefill_attention")


def __getattr__(name: str) -> Any:
    """The launch side imports triton: load it on first use, so the torch reference stays light."""
    if name in _LAUNCH:
        from retarget.kernels.attention import op

        return getattr(op, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["aot_cases", "combine", "decode_attention", "decode_attention_ref", "decode_bytes",
           "masked_attention_ref", "num_splits", "prefill_attention", "prefill_attention_ref"]
