"""Gates on a compile report (`retarget compile --max-kl --min-decode`): a missed gate exits with GATE_MISSED,
apart from bad input (2), so CI can tell a regression from a typo."""

from __future__ import annotations

from typing import Any

GATE_MISSED = 3


def missed_gates(report: dict[str, Any], max_kl: float | None = None, min_decode: float | None = None) -> list[str]:
    """One line per gate REPORT misses: ONNX Runtime's KL to fp32 above MAX_KL, decode tokens/s below MIN_DECODE."""
    ort = report["ort"]
    missed = []
    kl = ort["quantized"]["kl_to_fp32"]["value"]
    if max_kl is not None and not kl <= max_kl:
        missed.append(f"KL to fp32 {kl:.4g} nats/token is above --max-kl {max_kl:g}")
    decode = ort["decode_tokens_per_s"]["value"]
    if min_decode is not None and not decode >= min_decode:
        missed.append(f"decode {decode:.1f} tokens/s is below --min-decode {min_decode:g}")
    return missed
