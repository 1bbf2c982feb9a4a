"""MLA decode with absorbed weights over the latent cache (kv_lora_rank + rope dim per token), split-KV.

Public: `mla_decode`, `mla_decode_latent` (launch), `mla_decode_ref`, `absorb_query`, `absorb_output`,
`decode_bytes` (torch reference), `aot_cases`.
"""

from typing import Any

from retarget.kernels.mla_decode.reference import absorb_output, absorb_query, decode_bytes, mla_decode_ref

_LAUNCH = ("aot_cases", "mla_decode", "mla_decode_latent")


def __getattr__(name: str) -> Any:
    """The launch side imports triton: load it on first use, so the torch reference stays light."""
    if name in _LAUNCH:
        from retarget.kernels.mla_decode import op

        return getattr(op, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["absorb_output", "absorb_query", "aot_cases", "decode_bytes", "mla_decode", "mla_decode_latent",
           "mla_decode_ref"]
