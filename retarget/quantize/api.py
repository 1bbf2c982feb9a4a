"""`quantize_(model, config)`: swap every nn.Linear for a QuantLinear, dispatching on the config's type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from rich.progress import Progress
from torch import nn

from retarget.errors import RetargetError
from retarget.quantize.calibration import LayerStats, collect_stats
from retarget.quantize.configs import FloatConfig, IntWeightOnlyConfig, KeepSourceConfig, QuantConfig
from retarget.quantize.modules import QuantLinear
from retarget.quantize.weight import QuantizedWeight, quantize_rtn

LM_HEAD_GROUP = 32


@dataclass
class LayerContext:
    """What a handler may use besides the Linear itself."""

    source: QuantizedWeight | None = None  # the checkpoint's own quantized blocks of this layer, if any
    stats: LayerStats | None = None  # calibration statistics of its input (configs with needs_calibration)


# a handler returns the layer's QuantizedWeight (None: leave it float), or a whole QuantLinear when the layer
# quantizes its activations too (retarget.quantize.smoothquant, W8A8-FP8)
Handler = Callable[[str, nn.Linear, QuantConfig, LayerContext], QuantizedWeight | QuantLinear | None]
# a model-level step run after calibration and before the per-layer handlers (e.g. AWQ's scale folding);
# it may change float weights and returns the statistics the handlers should see
Transform = Callable[[nn.Module, QuantConfig, dict[str, LayerStats], Progress | None], dict[str, LayerStats]]
_HANDLERS: dict[type[QuantConfig], Handler] = {}
_TRANSFORMS: dict[type[QuantConfig], Transform] = {}


def register_handler(config_type: type[QuantConfig]) -> Callable[[Handler], Handler]:
    """Register how a config type turns one Linear into a QuantizedWeight (None: leave it float)."""

    def wrap(fn: Handler) -> Handler:
        _HANDLERS[config_type] = fn
        return fn

    return wrap


def register_transform(config_type: type[QuantConfig]) -> Callable[[Transform], Transform]:
    """Register a model-level step that runs before the handlers of CONFIG_TYPE (exact type)."""

    def wrap(fn: Transform) -> Transform:
        _TRANSFORMS[config_type] = fn
        return fn

    return wrap


def _lm_head_rtn(name: str, linear: nn.Linear, config: QuantConfig) -> QuantizedWeight | None:
    """The lm_head treatment shared by every integer recipe (IntWeightOnlyConfig and its algorithm subclasses),
    ahead of their handlers: symmetric RTN in blocks of 32 at lm_head_bits (None when it is not lm_head, not an
    integer recipe, or lm_head_bits equals bits: then the handler quantizes it like any other layer)."""
    if name == "lm_head" and isinstance(config, IntWeightOnlyConfig) and config.lm_head_bits != config.bits:
        return quantize_rtn(linear.weight, config.lm_head_bits, LM_HEAD_GROUP, symmetric=True)
    return None


@register_handler(IntWeightOnlyConfig)
def _rtn(name: str, linear: nn.Linear, config: QuantConfig, ctx: LayerContext) -> QuantizedWeight:
    assert isinstance(config, IntWeightOnlyConfig)
    return quantize_rtn(linear.weight, config.bits, config.group_size or linear.in_features, config.symmetric)


@register_handler(KeepSourceConfig)
def _keep(name: str, linear: nn.Linear, config: QuantConfig, ctx: LayerContext) -> QuantizedWeight | None:
    return ctx.source


@register_handler(FloatConfig)
def _float(name: str, linear: nn.Linear, config: QuantConfig, ctx: LayerContext) -> None:
    return None


def ties_embedding(model: nn.Module) -> bool:
    """True if the input embedding and lm_head hold the same weights (tied, or untied copies)."""
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None or emb is None:
        return False
    head_w = head.reference_weight(emb.weight.dtype) if isinstance(head, QuantLinear) else head.weight
    return head_w is emb.weight or (head_w.shape == emb.weight.shape and torch.equal(head_w, emb.weight))


def untie_lm_head(model: nn.Module) -> None:
    """Give lm_head its own copy of the embedding so it can be quantized (and exported) on its own."""
    head = model.get_output_embeddings()
    emb = model.get_input_embeddings()
    if head is not None and head.weight is emb.weight:
        head.weight = nn.Parameter(emb.weight.detach().clone())
    model.config.tie_word_embeddings = False


def linear_layers(model: nn.Module, include_lm_head: bool = True) -> dict[str, nn.Linear]:
    """Every nn.Linear by module name; lm_head only if asked."""
    return {name: mod for name, mod in model.named_modules()
            if isinstance(mod, nn.Linear) and (include_lm_head or name != "lm_head")}


@torch.no_grad()
def quantize_(model: nn.Module, config: QuantConfig,
              source_weights: dict[str, QuantizedWeight] | None = None, progress: Progress | None = None,
              calibration: list[int] | None = None, stats: dict[str, LayerStats] | None = None) -> int:
    """Quantize MODEL in place with CONFIG; returns how many Linears were replaced.

    Configs with `needs_calibration` read input statistics of every Linear but lm_head: pass STATS from
    `collect_stats` (reusable across configs), or CALIBRATION token ids (e.g. `calibration_tokens(tokenizer)`)
    and they are collected here from MODEL as it is (float)."""
    handler = _HANDLERS.get(type(config)) or next(
        (h for t, h in _HANDLERS.items() if isinstance(config, t)), None)
    if handler is None:
        raise RetargetError(f"no quantization handler for {type(config).__name__}", field="--recipe")
    source = source_weights or {}
    if isinstance(config, KeepSourceConfig) and not source:
        raise RetargetError("recipe 'keep' needs a pre-quantized source (a GGUF with Q4_1/Q8_0 tensors)",
                            field="--recipe")
    tied = ties_embedding(model)
    if config.include_lm_head:
        untie_lm_head(model)
    layers = linear_layers(model, config.include_lm_head)
    if config.needs_calibration:
        if stats is None:
            if not calibration:
                raise RetargetError(f"recipe {config.name!r} needs calibration tokens (quantize_(..., calibration=))",
                                    field="--recipe")
            stats = collect_stats(model, calibration, linear_layers(model, include_lm_head=False), progress=progress)
        transform = _TRANSFORMS.get(type(config))
        if transform is not None:
            stats = transform(model, config, stats, progress)
    stats = stats or {}
    task = progress.add_task(f"quantize {config.name}", total=len(layers)) if progress else None
    replaced = 0
    for name, linear in layers.items():
        qweight = _lm_head_rtn(name, linear, config)
        if qweight is None:
            qweight = handler(name, linear, config, LayerContext(source.get(name), stats.get(name)))
        if qweight is not None:
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, qweight if isinstance(qweight, QuantLinear) else QuantLinear(qweight, linear.bias))
            replaced += 1
        if progress and task is not None:
            progress.advance(task)
    head = model.get_output_embeddings()
    if tied and isinstance(head, QuantLinear):  # keep them tied: the embedding reads lm_head's blocks
        emb = model.get_input_embeddings()
        emb.weight.data.copy_(head.reference_weight(emb.weight.dtype))
    return replaced
