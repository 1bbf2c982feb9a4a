"""Peer: optimum-quanto weight quantization (`quantize` + `freeze`) of a copy of the torch model.

    int8: every Linear qint8, symmetric per output channel.
    int4: every Linear but lm_head qint4 (quanto's affine groups: 128 input channels, or the largest
          multiple of 32 below it that divides in_features: 96 for SmolLM2's K = 576), float scale and shift;
          lm_head qint8 per channel, as our INT4 recipes keep lm_head at 8 bits.

On CPU, quanto unpacks int4 weights with a C++ extension it compiles on first use (torch cpp_extension, about
75 s on 2 cores, cached in its package folder). A compile killed half-way leaves a `lock` file in
optimum/quanto/library/extensions/cpp/build/ that makes every later run wait forever: delete it.
"""

from __future__ import annotations

import copy

from torch import nn

MODES = ("int8", "int4")


def quantize_quanto(model: nn.Module, mode: str) -> tuple[nn.Module, dict[str, float | int]]:
    """A frozen quanto copy of MODEL in MODE ('int8' | 'int4'), and its size."""
    from optimum.quanto import freeze, qint4, qint8, quantize

    if mode not in MODES:
        raise ValueError(f"unknown quanto mode {mode!r}; known: {', '.join(MODES)}")
    q = copy.deepcopy(model)
    if mode == "int4":
        quantize(q, weights=qint4, exclude=["lm_head"])
        if isinstance(getattr(q, "lm_head", None), nn.Linear):
            quantize(q, weights=qint8, include=["lm_head"])
    else:
        quantize(q, weights=qint8)
    freeze(q)
    return q, quanto_size(q)


def quanto_size(model: nn.Module) -> dict[str, float | int]:
    """Bytes of every quantized Linear's stored weight (data, scale, shift) and bits per weight over them."""
    from optimum.quanto.nn import QLinear

    nbytes, weights, groups = 0, 0, set()
    for module in model.modules():
        if isinstance(module, QLinear):
            weights += module.in_features * module.out_features
            nbytes += sum(v.nbytes for k, v in module.state_dict().items() if k.startswith("weight."))
            groups.add(module.weight_group_size or "channel")
    return {"bytes": nbytes, "weights": weights, "bits_per_weight": 8 * nbytes / max(weights, 1),
            "group_sizes": sorted(map(str, groups))}
