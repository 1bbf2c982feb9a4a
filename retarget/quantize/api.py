"""`quantize_(model, config)`: swap every nn.Linear for a QuantLinear, dispatching on the config's type."""

from __future__ import annotations

from collections.abc import Callable

import torch
from rich.progress import Progress
from torch import nn

from retarget.errors import RetargetError
from retarget.quantize.configs import FloatConfig, IntWeightOnlyConfig, KeepSourceConfig, QuantConfig
from retarget.quantize.modules import QuantLinear
from retarget.quantize.weight import QuantizedWeight, quantize_rtn

LM_HEAD_GROUP = 32
Handler = Callable[[str, nn.Linear, QuantConfig, dict[str, QuantizedWeight]], QuantizedWeight | None]
_HANDLERS: dict[type[QuantConfig], Handler] = {}


def register_handler(config_type: type[QuantConfig]) -> Callable[[Handler], Handler]:
    """Register how a config type turns one Linear into a QuantizedWeight (None: leave it float)."""

    def wrap(fn: Handler) -> Handler:
        _HANDLERS[config_type] = fn
        return fn

    return wrap


@register_handler(IntWeightOnlyConfig)
def _rtn(name: str, linear: nn.Linear, config: QuantConfig, source: dict[str, QuantizedWeight]) -> QuantizedWeight:
    assert isinstance(config, IntWeightOnlyConfig)
    if name == "lm_head" and config.lm_head_bits != config.bits:
        return quantize_rtn(linear.weight, config.lm_head_bits, LM_HEAD_GROUP, symmetric=True)
    group = config.group_size or linear.in_features
    return quantize_rtn(linear.weight, config.bits, group, config.symmetric)


@register_handler(KeepSourceConfig)
def _keep(name: str, linear: nn.Linear, config: QuantConfig,
          source: dict[str, QuantizedWeight]) -> QuantizedWeight | None:
    return source.get(name)


@register_handler(FloatConfig)
def _float(name: str, linear: nn.Linear, config: QuantConfig, source: dict[str, QuantizedWeight]) -> None:
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
              source_weights: dict[str, QuantizedWeight] | None = None, progress: Progress | None = None) -> int:
    """Quantize MODEL in place with CONFIG; returns how many Linears were replaced."""
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
    task = progress.add_task(f"quantize {config.name}", total=len(layers)) if progress else None
    replaced = 0
    for name, linear in layers.items():
        qweight = handler(name, linear, config, source)
        if qweight is not None:
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, QuantLinear(qweight, linear.bias))
            replaced += 1
        if progress and task is not None:
            progress.advance(task)
    head = model.get_output_embeddings()
    if tied and isinstance(head, QuantLinear):  # keep them tied: the embedding reads lm_head's blocks
        emb = model.get_input_embeddings()
        emb.weight.data.copy_(head.reference_weight(emb.weight.dtype))
    return replaced
