"""Analytic performance model: per-op FLOPs and bytes -> roofline time with a few efficiency factors."""

from retarget.perf.model import generation_tokens_s, predict, weight_bytes
from retarget.perf.prediction import MemoryBreakdown, OpTime, PhaseTime, Prediction

__all__ = [
    "MemoryBreakdown",
    "OpTime",
    "PhaseTime",
    "Prediction",
    "generation_tokens_s",
    "predict",
    "weight_bytes",
]
