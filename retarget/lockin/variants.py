"""Model features that can tie an architecture to hardware, and how each is neutralised.

Each neutraliser returns a copy of a ModelSpec with one feature replaced by its plain-transformer
equivalent, keeping the parameters one token touches (active parameters) as they were:

* `format`: native checkpoint formats (FP8 blocks, MXFP4 experts, FP32) -> BF16 everywhere.
* `mla`: multi-head latent attention -> GQA with the same KV-cache bytes per token; query heads are chosen
  so the attention weights stay about the same, the rest is evened out in the MLP width.
* `moe`: routed (and shared) experts -> one dense MLP with the same active parameters.
* `ssm`: Mamba mixers and linear attention -> softmax GQA attention (the model's own, else a 128-wide
  GQA with 8 KV heads), weights evened out in the MLP width.
* `window`: sliding / chunked windows and attention sinks -> full causal attention.

`reference(spec)` applies all of them: R(M), the dense-BF16 GQA transformer with M's active parameters
and context. Applying `reference` to R(M) returns R(M) again.
"""

from __future__ import annotations

from collections.abc import Callable

from retarget.models.spec import AttentionSpec, BlockGroup, MlpSpec, ModelSpec

MODEL_FEATURES = ("format", "mla", "moe", "ssm", "window")
_PLAIN_KINDS = ("gqa", "mha", "mqa")


def _plain_kind(heads: int, kv_heads: int) -> str:
    return "mha" if heads == kv_heads else "mqa" if kv_heads == 1 else "gqa"


def _pad_mlp(group: BlockGroup, delta: int, hidden: int) -> BlockGroup:
    """GROUP with its MLP's dense width changed so the layer gains DELTA weights (clamped at what exists)."""
    if group.mlp is None or delta == 0:
        return group
    floor = 1 if group.mlp.kind == "dense" else 0
    width = max(floor, group.mlp.intermediate + round(delta / (3 * hidden)))
    return group.model_copy(update={"mlp": group.mlp.model_copy(update={"intermediate": width})})


def _with_params_of(new: BlockGroup, old: BlockGroup, hidden: int) -> BlockGroup:
    """NEW, with the MLP width evened out so one layer has as many active weights as OLD."""
    delta = old.params(hidden, active=True) - new.params(hidden, active=True)
    return _pad_mlp(new, delta, hidden)


def _map_groups(spec: ModelSpec, fn: Callable[[BlockGroup], BlockGroup]) -> ModelSpec:
    blocks = [fn(g) for g in spec.blocks]
    return spec if blocks == list(spec.blocks) else spec.model_copy(update={"blocks": blocks})


def neutralise_format(spec: ModelSpec) -> ModelSpec:
    """Every tensor group in BF16."""
    if set(spec.native_format.values()) <= {"bf16"}:
        return spec
    return spec.model_copy(update={"native_format": {"all": "bf16"}})


def _gqa_for_kv_elems(att: AttentionSpec, kv_elems: int, hidden: int, weights: int) -> AttentionSpec:
    """GQA caching KV_ELEMS elements per token whose projections hold about WEIGHTS parameters."""
    kv_heads, head_dim = min(
        ((k, kv_elems // (2 * k)) for k in range(1, 17) if kv_elems % (2 * k) == 0),
        key=lambda kh: abs(kh[1] - 128))
    per_q_head = 2 * hidden * head_dim  # q and o projections
    heads = max(kv_heads, round((weights - 2 * hidden * kv_heads * head_dim) / per_q_head / kv_heads) * kv_heads)
    return AttentionSpec(kind=_plain_kind(heads, kv_heads), heads=heads, kv_heads=kv_heads,  # type: ignore[arg-type]
                         head_dim=head_dim, qk_norm=att.qk_norm)


def neutralise_mla(spec: ModelSpec) -> ModelSpec:
    """MLA layers -> GQA of equal KV bytes per token and about equal weights."""
    hidden = spec.hidden_size

    def fn(g: BlockGroup) -> BlockGroup:
        att = g.attention
        if att is None or att.kind != "mla":
            return g
        kv_elems = int(att.kv_bytes_per_token(1))
        new = g.model_copy(update={"attention": _gqa_for_kv_elems(att, kv_elems, hidden, att.params(hidden))})
        return _with_params_of(new, g, hidden)

    return _map_groups(spec, fn)


def neutralise_moe(spec: ModelSpec) -> ModelSpec:
    """MoE MLPs -> dense MLPs with the same active weights (router and shared experts included)."""
    hidden = spec.hidden_size

    def fn(g: BlockGroup) -> BlockGroup:
        if g.mlp is None or g.mlp.kind != "moe":
            return g
        width = max(1, round(g.mlp.params(hidden, active=True) / (3 * hidden)))
        return g.model_copy(update={"mlp": MlpSpec(kind="dense", intermediate=width)})

    return _map_groups(spec, fn)


def _softmax_attention(spec: ModelSpec) -> AttentionSpec:
    """The model's own softmax attention (most common plain one), else 128-wide GQA with 8 KV heads."""
    for g in spec.blocks:
        if g.attention is not None and g.attention.kind not in ("linear", "mla"):
            att = g.attention
            return att.model_copy(update={"kind": _plain_kind(att.heads, att.kv_heads), "window": None,
                                          "chunked": False, "sinks": False})
    heads = max(1, spec.hidden_size // 128)
    kv = 8 if heads % 8 == 0 else 1
    return AttentionSpec(kind=_plain_kind(heads, kv), heads=heads, kv_heads=kv, head_dim=128)  # type: ignore[arg-type]


def neutralise_ssm(spec: ModelSpec) -> ModelSpec:
    """Mamba mixers and linear attention -> softmax attention (parallel hybrids keep their attention)."""
    if not spec.ssm_layers and not any(g.attention and g.attention.kind == "linear" for g in spec.blocks):
        return spec
    hidden, softmax = spec.hidden_size, _softmax_attention(spec)

    def fn(g: BlockGroup) -> BlockGroup:
        linear = g.attention is not None and g.attention.kind == "linear"
        if g.ssm is None and not linear:
            return g
        att = softmax if (linear or g.attention is None) else g.attention
        return _with_params_of(g.model_copy(update={"ssm": None, "attention": att}), g, hidden)

    return _map_groups(spec, fn)


def neutralise_window(spec: ModelSpec) -> ModelSpec:
    """Sliding/chunked windows and sinks -> full causal attention."""

    def fn(g: BlockGroup) -> BlockGroup:
        att = g.attention
        if att is None or att.kind in ("mla", "linear") or (
                att.kind in _PLAIN_KINDS and not (att.window or att.chunked or att.sinks)):
            return g
        plain = att.model_copy(update={"kind": _plain_kind(att.heads, att.kv_heads), "window": None,
                                       "chunked": False, "sinks": False})
        return g.model_copy(update={"attention": plain})

    return _map_groups(spec, fn)


NEUTRALISERS: dict[str, Callable[[ModelSpec], ModelSpec]] = {
    "format": neutralise_format,
    "mla": neutralise_mla,
    "moe": neutralise_moe,
    "ssm": neutralise_ssm,
    "window": neutralise_window,
}


_FLOAT_FORMATS = ("bf16", "fp16", "fp32", "bfloat16", "float16", "float32")


def features_of(spec: ModelSpec) -> list[str]:
    """The model features SPEC has (those whose neutraliser changes it). FP16/FP32 checkpoints are not a
    format feature: every device serves them in 16-bit floats, exactly like BF16."""
    plain_floats = all(v.lower() in _FLOAT_FORMATS for v in spec.native_format.values())
    return [f for f in MODEL_FEATURES
            if NEUTRALISERS[f](spec) is not spec and not (f == "format" and plain_floats)]


def neutralise(spec: ModelSpec, features: frozenset[str] | set[str]) -> ModelSpec:
    """SPEC with FEATURES neutralised, applied in MODEL_FEATURES order (ssm before window, so attention
    brought in for an SSM layer is plain)."""
    for f in MODEL_FEATURES:
        if f in features:
            spec = NEUTRALISERS[f](spec)
    return spec


def reference(spec: ModelSpec) -> ModelSpec:
    """R(M): dense-BF16 GQA transformer with the active parameters and context of SPEC."""
    ref = neutralise(spec, frozenset(MODEL_FEATURES))
    return ref.model_copy(update={"name": f"R({spec.name})"}) if ref is not spec else spec
