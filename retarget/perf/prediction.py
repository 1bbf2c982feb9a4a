"""Prediction objects: per-phase op-class times with their bottleneck, memory fit, assumptions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from retarget.provenance import predicted

MODEL_NAME = "retarget.perf roofline v1"


@dataclass(frozen=True)
class OpTime:
    """One op class in one phase: FLOPs and bytes per device, time, and what bounds it."""

    op_class: str  # gemm | moe | head | attention | ssm | comm | overhead | request (first-token cost)
    flops: float
    bytes: float
    time_s: float
    bound: str  # compute | memory | interconnect | fixed


@dataclass(frozen=True)
class PhaseTime:
    """A phase (one prefill pass or one decode step) as a sum of op-class times."""

    ops: list[OpTime]

    @property
    def time_s(self) -> float:
        return sum(op.time_s for op in self.ops)

    @property
    def bottleneck(self) -> str:
        """The op class that takes the most time, with its bound, e.g. 'gemm (memory)'."""
        top = max(self.ops, key=lambda op: op.time_s)
        return f"{top.op_class} ({top.bound})"

    def plus(self, other: PhaseTime, times: int = 1) -> PhaseTime:
        """This phase followed by TIMES x OTHER (same op classes, summed)."""
        mine = {op.op_class: op for op in self.ops}
        out = []
        for op in other.ops:
            a = mine.get(op.op_class, OpTime(op.op_class, 0.0, 0.0, 0.0, op.bound))
            out.append(
                OpTime(
                    op.op_class,
                    a.flops + times * op.flops,
                    a.bytes + times * op.bytes,
                    a.time_s + times * op.time_s,
                    op.bound if op.time_s >= a.time_s else a.bound,
                )
            )
        return PhaseTime(out)

    def scaled(self, share: float) -> PhaseTime:
        """This phase with every op's time times SHARE (overlapped work: the FLOPs and bytes stay)."""
        return PhaseTime([OpTime(op.op_class, op.flops, op.bytes, op.time_s * share, op.bound) for op in self.ops])

    def to_dict(self) -> dict[str, Any]:
        total = self.time_s or 1.0
        return {
            "time_s": self.time_s,
            "bottleneck": self.bottleneck,
            "ops": [
                {
                    "op_class": op.op_class,
                    "flops": op.flops,
                    "bytes": op.bytes,
                    "time_s": op.time_s,
                    "share": op.time_s / total,
                    "bound": op.bound,
                }
                for op in self.ops
            ],
        }


@dataclass(frozen=True)
class MemoryBreakdown:
    """Memory in GB: whole-model weights and KV/state, per-device activations and total, capacity."""

    weights_gb: float
    kv_cache_gb: float
    activations_gb: float
    per_device_gb: float
    usable_per_device_gb: float
    fits: bool
    devices_needed: int  # -1: activations alone exceed one device


@dataclass(frozen=True)
class Prediction:
    """What `predict` returns. Times are per step; throughputs aggregate over the batch."""

    model: str
    profile: str
    workload: dict[str, Any]
    prefill: PhaseTime
    decode: PhaseTime
    memory: MemoryBreakdown
    assumptions: list[str] = field(default_factory=list)

    @property
    def ttft_s(self) -> float:
        """Time to first token: the prefill of `batch` prompts of `prompt_len` tokens."""
        return self.prefill.time_s

    @property
    def tpot_s(self) -> float:
        """Time per output token of one sequence: one decode step at `ctx` cached tokens."""
        return self.decode.time_s

    @property
    def decode_tokens_s(self) -> float:
        """Generated tokens/s summed over the batch."""
        return self.workload["batch"] / self.decode.time_s

    @property
    def prefill_tokens_s(self) -> float:
        """Prompt tokens/s summed over the batch."""
        return self.workload["batch"] * self.workload["prompt_len"] / self.prefill.time_s

    @property
    def bottlenecks(self) -> dict[str, dict[str, str]]:
        """Phase -> op class -> compute | memory | interconnect | fixed."""
        return {
            name: {op.op_class: op.bound for op in phase.ops if op.time_s > 0}
            for name, phase in (("prefill", self.prefill), ("decode", self.decode))
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; headline numbers carry 'predicted' provenance with the assumptions."""

        def p(value: Any, unit: str) -> dict[str, Any]:
            return predicted(value, unit, MODEL_NAME, self.assumptions)

        return {
            "model": self.model,
            "profile": self.profile,
            "workload": self.workload,
            "ttft_s": p(self.ttft_s, "s"),
            "tpot_s": p(self.tpot_s, "s"),
            "decode_tokens_s": p(self.decode_tokens_s, "tokens/s"),
            "prefill_tokens_s": p(self.prefill_tokens_s, "tokens/s"),
            "memory": {k: p(v, "GB") if k.endswith("_gb") else v for k, v in vars(self.memory).items()},
            "prefill": self.prefill.to_dict(),
            "decode": self.decode.to_dict(),
            "bottlenecks": self.bottlenecks,
            "assumptions": self.assumptions,
        }
