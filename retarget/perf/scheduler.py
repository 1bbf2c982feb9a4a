"""How many sequences an engine's scheduler runs at once and how many tokens one forward takes, as the engine's
defaults set them for a device and a way of running it (offline through the Python API, or behind its server).

An engine names its rule with the kernel attribute `batch_defaults` (efficiency.yaml); a run that states its own
limits (`--max-num-seqs`, `--max-num-batched-tokens`) overrides them (validate.plan_row).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from retarget.hw_profiles import HardwareProfile
from retarget.perf.efficiency import kernel_attributes

Usage = Literal["offline", "serve"]
GIB = 2**30


@dataclass(frozen=True)
class BatchLimits:
    """The scheduler's caps: sequences decoding at once, and tokens (prompt chunks and decode steps) per forward."""

    max_seqs: int | None  # None: as many as the KV pool holds
    tokens_per_forward: int


# vLLM's TPU defaults per chip (vLLM PR 17508, https://github.com/vllm-project/vllm/pull/17508): tokens per forward
# offline and served, chosen just above each chip's ridge point (peak FLOP/s over HBM bytes/s)
VLLM_TPU_TOKENS = {"tpu-v6e": (2048, 1024), "tpu-v5e": (1024, 512), "tpu-v5p": (512, 256)}


def vllm_v1(profile: HardwareProfile, usage: Usage) -> BatchLimits:
    """vLLM's V1 defaults from v0.9 on (EngineArgs._set_default_args,
    https://github.com/vllm-project/vllm/blob/v0.11.0/vllm/engine/arg_utils.py): a device of at least 70 GiB other
    than the A100 ("GPUs like H100 and MI300x") runs 1024 sequences and 16384 tokens per forward offline, 8192
    served; any other device 256 sequences and 8192 / 2048 tokens. The A100 is excluded by name because the larger
    budget cost it throughput (https://github.com/vllm-project/vllm/pull/17885). TPUs keep 256 sequences and take
    their own token budgets (VLLM_TPU_TOKENS)."""
    large = profile.memory_bytes >= 70 * GIB and "a100" not in profile.id
    offline, served = VLLM_TPU_TOKENS.get(profile.id, (16384, 8192) if large else (8192, 2048))
    return BatchLimits(1024 if large else 256, offline if usage == "offline" else served)


def sglang(profile: HardwareProfile, usage: Usage) -> BatchLimits:
    """SGLang 0.5's chunked_prefill_size by device memory (ServerArgs' GPU-memory defaults,
    https://github.com/sgl-project/sglang/blob/main/python/sglang/srt/server_args.py, read Dec 2026; the first 0.5
    releases had no 4096 tier, giving 8192 from 35 GiB): under 35 GiB 2048 tokens,
    under 60 GiB 4096, under 160 GiB ("H100, A100", "H20, H200") 8192, larger ("B200, MI300") 16384, served or
    offline alike; the requests it runs are bounded by its KV pool alone."""
    gib = profile.memory_bytes / GIB
    return BatchLimits(None, 2048 if gib < 35 else 4096 if gib < 60 else 8192 if gib < 160 else 16384)


BATCH_DEFAULTS: dict[str, Callable[[HardwareProfile, Usage], BatchLimits]] = {"vllm-v1": vllm_v1, "sglang": sglang}


def batch_limits(engine: str, profile: HardwareProfile, usage: Usage) -> BatchLimits | None:
    """ENGINE's default limits on PROFILE for USAGE, or None where it names no rule (its kernel attributes
    `max_num_seqs` and `tokens_per_forward`, or the model's defaults, apply)."""
    rule = kernel_attributes(engine).get("batch_defaults")
    return BATCH_DEFAULTS[str(rule)](profile, usage) if rule else None
