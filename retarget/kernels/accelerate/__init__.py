"""Run a transformers model's lock-in features on this project's kernels: `accelerate_(model)`.

Every decoder-layer module whose class is in the registry gets a kernel-backed forward, in place:

| module class | kernels |
|---|---|
| GptOssAttention, Gemma3Attention, Qwen3MoeAttention, MixtralAttention, FalconH1Attention | attention |
| DeepseekV3Attention (DeepSeek-V3, Kimi K2) | mla_decode (decode), attention (prompt) |
| DeepseekV3MoE, Qwen3MoeSparseMoeBlock, MixtralSparseMoeBlock, GptOssMLP | fused_moe |
| FalconH1Mixer | mamba2 |

Quantized MoE experts (int4 / int8, FP8 in 128 x 128 blocks, MXFP4) stay codes and scales and run the grouped GEMM
of their format (accelerate/_experts.py). Each op dispatches by device: the Triton kernels on a CUDA/ROCm tensor
(and on CPU under TRITON_INTERPRET=1), the kernel folder's torch reference on CPU. Decoder-layer modules with
weight matrices and no registered patch are named in the returned report. Inputs the kernels do not cover (padded
batches, static caches) raise a RetargetError when the model is called.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

from torch import nn
from transformers.cache_utils import DynamicCache, DynamicLayer
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.models.falcon_h1.modeling_falcon_h1 import FalconHybridMambaAttentionDynamicCache

from retarget.errors import RetargetError
from retarget.kernels.accelerate import attention, mamba, mla, moe  # noqa: F401  (they fill the registry)
from retarget.kernels.accelerate._registry import PATCHES, Patch


@dataclass
class AccelerateReport:
    """What accelerate_ did: module classes on the kernels (instances counted, with the kernel folders they call)
    and module classes left on transformers' code (with the reason)."""

    accelerated: Counter[str] = field(default_factory=Counter)
    kernels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    left: Counter[str] = field(default_factory=Counter)
    reasons: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        """One line: 'kernels: GptOssAttention x4 (attention), ...; not accelerated: LlamaMLP x2 (no kernel)'."""
        done = ", ".join(f"{name} x{n} ({'+'.join(self.kernels[name])})" for name, n in self.accelerated.items())
        left = ", ".join(f"{name} x{n} ({self.reasons[name]})" for name, n in self.left.items())
        return f"kernels: {done or 'none'}; not accelerated: {left or 'none'}"


def _compute_children(layer: nn.Module) -> list[nn.Module]:
    """A decoder layer's direct children that hold a weight matrix, float or quantized (attention, MLP, MoE,
    mixer; not norms)."""
    return [child for child in layer.children()
            if any(t.dim() >= 2 for t in itertools.chain(child.parameters(), child.buffers()))]


def accelerate_(model: nn.Module) -> AccelerateReport:
    """Give every registered module of MODEL's decoder layers its kernel-backed forward, in place; returns what
    was and was not accelerated. Call it last (after loading, quantizing and moving the weights)."""
    report = AccelerateReport()
    for layer in (m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)):
        for module in _compute_children(layer):
            name = type(module).__name__
            patch: Patch | None = PATCHES.get(type(module))
            why = "no kernel registered" if patch is None else patch.blocker(module)
            if why is not None:
                report.left[name] += 1
                report.reasons[name] = why
                continue
            patch.install(module)
            report.accelerated[name] += 1
            report.kernels[name] = patch.kernels
    if report.accelerated and not getattr(model, "_retarget_guard", False):
        model.register_forward_pre_hook(_refuse_uncovered_inputs, with_kwargs=True)
        model._retarget_guard = True
    return report


def _refuse_uncovered_inputs(model: nn.Module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook: the kernels take every sequence as unpadded and every cache as a dynamic one."""
    mask = kwargs.get("attention_mask")
    if mask is not None and mask.dim() == 2 and not bool(mask.all()):
        raise RetargetError("padded batches are not supported on the kernel path (run one sequence per call or "
                            "equal lengths)", field="attention_mask")
    cache = kwargs.get("past_key_values")
    dynamic = isinstance(cache, DynamicCache) and all(isinstance(layer, DynamicLayer) for layer in cache.layers)
    if cache is not None and not dynamic and not isinstance(cache, FalconHybridMambaAttentionDynamicCache):
        raise RetargetError(f"the kernel path needs a dynamic cache, got {type(cache).__name__}",
                            field="past_key_values")


__all__ = ["AccelerateReport", "accelerate_"]
