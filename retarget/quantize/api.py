"""`quantize_(model, config)`: swap every nn.Linear for a QuantLinear and quantize every fused expert tensor,
dispatching on the config's type.

Afterwards `quantized_weights(model)` holds every quantized matrix ([out, in]; a Linear at path P under key P,
expert e of a fused parameter P.W under `P.W.e`), and `quantization_report(model)` what stayed float and why,
and how many experts calibration never reached (those fell back to RTN).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from rich.progress import Progress
from torch import nn

from retarget.errors import RetargetError
from retarget.quantize.calibration import LayerStats, collect_stats
from retarget.quantize.configs import FloatConfig, IntWeightOnlyConfig, KeepSourceConfig, QuantConfig
from retarget.quantize.experts import expert_key, expert_matrix, expert_of, fused_experts, router_names
from retarget.quantize.modules import QuantLinear
from retarget.quantize.weight import QuantizedWeight, quantize_rtn

LM_HEAD_GROUP = 32
REPORT_ATTR = "retarget_quantization"  # where quantize_ leaves its QuantizationReport on the model
FUSED_ATTR = "retarget_qweights"  # where it leaves a fused expert module's QuantizedWeights, by key


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
    """Every plain nn.Linear by module name but MoE routers (and Linear subclasses, whose forward may differ from
    QuantLinear's); lm_head only if asked."""
    routers = router_names(model)
    return {name: mod for name, mod in model.named_modules()
            if type(mod) is nn.Linear and name not in routers and (include_lm_head or name != "lm_head")}


@dataclass
class QuantizationReport:
    """What quantize_ did: matrices quantized, experts calibration never reached, tensors left float and why."""

    recipe: str
    quantized_matrices: int = 0
    calibrated: bool = False
    experts_total: int = 0
    experts_rtn_fallback: int = 0  # calibrated recipes: experts no calibration token reached, quantized by RTN
    kept_float: list[dict[str, Any]] = field(default_factory=list)  # {"tensors": pattern, "count", "reason"}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _linear_view(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """A detached nn.Linear holding WEIGHT [out, in] (and BIAS), for handlers written against Linears."""
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    linear.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
    if bias is not None:
        linear.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
    return linear


def _quantize_fused(model: nn.Module, handler: Handler, config: QuantConfig, stats: dict[str, LayerStats],
                    source: dict[str, QuantizedWeight]) -> tuple[int, list[str]]:
    """Quantize every expert matrix of every fused expert module; the module then computes with the dequantized
    values. Smoothing (SmoothQuant) needs a per-expert input scale the shared fused input cannot carry, and the
    fused expert op takes float inputs: such experts are quantized weight-only. Returns how many matrices were
    quantized and the modules where the recipe's activation quantization was dropped."""
    done, float_inputs = 0, []
    for path, (module, layout) in fused_experts(model).items():
        qweights: dict[str, QuantizedWeight] = {}
        for matrix in layout.matrices:
            param, bias = getattr(module, matrix), layout.bias(module, matrix)
            for e in range(param.shape[0]):
                key = expert_key(path, matrix, e)
                view = _linear_view(expert_matrix(module, matrix, e), None if bias is None else bias[e])
                result = handler(key, view, config, LayerContext(source.get(key), stats.get(key)))
                if isinstance(result, QuantLinear) and result.smooth is not None:
                    result = handler(key, view, config, LayerContext(source.get(key), None))
                if result is None:
                    continue
                if isinstance(result, QuantLinear) and result.act is not None and path not in float_inputs:
                    float_inputs.append(path)
                qweights[key] = result.qweight if isinstance(result, QuantLinear) else result
                param.data[e] = qweights[key].dequantize(param.dtype).T
        setattr(module, FUSED_ATTR, qweights)
        done += len(qweights)
    return done, float_inputs


def quantized_weights(model: nn.Module) -> dict[str, QuantizedWeight]:
    """Every quantized matrix of a model quantize_ has run on, [out, in]: QuantLinears by module path, fused
    experts as `{module}.{matrix}.{expert}`."""
    weights = {name: m.qweight for name, m in model.named_modules() if isinstance(m, QuantLinear)}
    for module in model.modules():
        weights.update(getattr(module, FUSED_ATTR, {}))
    return weights


def quantization_report(model: nn.Module) -> QuantizationReport:
    """The report quantize_ left on MODEL (for recipe.json: `quantization_report(model).to_dict()`)."""
    report = getattr(model, REPORT_ATTR, None)
    if report is None:
        raise ValueError("quantize_ has not run on this model")
    return report


def _float_reason(model: nn.Module, name: str, routers: set[str], tied: bool) -> str:
    """Why parameter NAME of a quantized model is still float."""
    owner, _, leaf = name.rpartition(".")
    module = model.get_submodule(owner) if owner else model
    kind = type(module).__name__
    if owner in routers or "Router" in kind:
        return "MoE router/gate: kept float (rounding would change which experts a token visits)"
    if isinstance(module, nn.Embedding):
        return ("input embedding, tied: reads lm_head's dequantized blocks" if tied
                else "input embedding: a table lookup, kept float")
    if "norm" in kind.lower() or "norm" in leaf:
        return "norm weights (one value per channel)"
    if leaf.endswith("bias"):
        return "bias vectors (added after the matmul)"
    if leaf == "sinks":
        return "attention sinks (one logit per head)"
    if isinstance(module, nn.Linear):
        return ("Linear subclass with its own forward, kept float" if type(module) is not nn.Linear
                else "Linear the recipe leaves float")
    if isinstance(module, nn.Conv1d):
        return "convolution kernel (a state-space mixer's short causal conv)"
    if model.get_parameter(name).dim() == 3:
        return "fused 3-D expert tensor of a layout retarget.quantize.experts does not register"
    return f"{kind}.{leaf}: not a matrix the recipes quantize"


def _grouped(rows: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """(name, reason) rows grouped by name pattern (layer and expert numbers as *) and reason, with counts."""
    groups: dict[tuple[str, str], int] = {}
    for name, reason in rows:
        key = (re.sub(r"(?<=\.)\d+(?=\.|$)", "*", name), reason)
        groups[key] = groups.get(key, 0) + 1
    return [{"tensors": pattern, "count": count, "reason": reason} for (pattern, reason), count in groups.items()]


def _kept_float(model: nn.Module, tied: bool, float_inputs: list[str]) -> list[dict[str, Any]]:
    """Float parameters (and fused experts whose activations stay float), grouped by name pattern and reason."""
    routers = router_names(model)
    quantized_fused = {id(getattr(module, matrix)) for module, layout in fused_experts(model).values()
                       if getattr(module, FUSED_ATTR, None) for matrix in layout.matrices}
    rows = [(name, _float_reason(model, name, routers, tied)) for name, param in model.named_parameters()
            if id(param) not in quantized_fused]
    rows += [(f"{path} (inputs)", "activations of fused experts: the fused expert op takes float inputs, so "
              "the recipe's activation quantization is left out there") for path in float_inputs]
    return _grouped(rows)


@torch.no_grad()
def quantize_(model: nn.Module, config: QuantConfig,
              source_weights: dict[str, QuantizedWeight] | None = None, progress: Progress | None = None,
              calibration: list[int] | None = None, stats: dict[str, LayerStats] | None = None) -> int:
    """Quantize MODEL in place with CONFIG; returns how many Linears were replaced (fused expert matrices are
    quantized too: see quantized_weights / quantization_report).

    Configs with `needs_calibration` read input statistics of every Linear but lm_head: pass STATS from
    `collect_stats` (reusable across configs), or CALIBRATION token ids (e.g. `calibration_tokens(tokenizer)`)
    and they are collected here from MODEL as it is (float)."""
    handler = _HANDLERS.get(type(config)) or next(
        (h for t, h in _HANDLERS.items() if isinstance(config, t)), None)
    if handler is None:
        raise RetargetError(f"no quantization handler for {type(config).__name__}", field="--recipe")
    source = source_weights or {}
    if isinstance(config, KeepSourceConfig) and not source:
        raise RetargetError("recipe 'keep' needs a pre-quantized source (GGUF Q4_1/Q8_0, MXFP4 experts, FP8 blocks)",
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
    fused, float_inputs = _quantize_fused(model, handler, config, stats, source)
    setattr(model, REPORT_ATTR, _report(model, config, replaced + fused, layers, stats, tied, float_inputs))
    return replaced


def quantized_copy(loaded: Any, config: QuantConfig, progress: Progress | None = None) -> tuple[nn.Module, int]:
    """A copy of LOADED's model (a retarget.models.load.LoadedModel; lm_head untied in place first) quantized with
    CONFIG, on the calibration text when CONFIG needs it, from LOADED's source blocks; returns the copy and
    quantize_'s count."""
    from retarget.quantize.calibration import calibration_tokens

    untie_lm_head(loaded.model)
    quantized = copy.deepcopy(loaded.model)
    calibration = calibration_tokens(loaded.tokenizer) if config.needs_calibration else None
    replaced = quantize_(quantized, config, loaded.source_weights, progress, calibration=calibration)
    return quantized, replaced


def _report(model: nn.Module, config: QuantConfig, matrices: int, layers: dict[str, nn.Linear],
            stats: dict[str, LayerStats], tied: bool, float_inputs: list[str]) -> QuantizationReport:
    expert_matrices = [n for n in layers if expert_of(n)] + [k for m in model.modules()
                                                            for k in getattr(m, FUSED_ATTR, {})]
    experts = {expert_of(n) for n in expert_matrices}
    unreached = {expert_of(n) for n in expert_matrices if n not in stats} if config.needs_calibration else set()
    return QuantizationReport(config.name, matrices, config.needs_calibration, len(experts), len(unreached),
                              _kept_float(model, tied and isinstance(model.get_output_embeddings(), QuantLinear),
                                          float_inputs))
