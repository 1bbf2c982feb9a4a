"""Mamba2 (SSD) selective state space: the chunked scan for prefill and the single-step update for decode.

Public: `chunk_scan`, `state_update` (launch), `ssd_scan_ref`, `state_update_ref`, `scan_bytes` (torch
reference), `aot_cases`.
"""

from typing import Any

from retarget.kernels.mamba2.reference import scan_bytes, ssd_scan_ref, state_update_ref

_LAUNCH = ("aot_cases", "chunk_scan", "state_update")


def __getattr__(name: str) -> Any:
    """The launch side imports triton: load it on first use, so the torch reference stays light."""
    if name in _LAUNCH:
        from retarget.kernels.mamba2 import op

        return getattr(op, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["aot_cases", "chunk_scan", "scan_bytes", "ssd_scan_ref", "state_update", "state_update_ref"]
