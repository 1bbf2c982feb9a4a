"""Projections that read the same input are fused into one MatMul along N (q|k|v, gate|up) when their
weights are all float, or all quantized in one format; otherwise each keeps its own MatMul."""

from __future__ import annotations

import torch

from retarget.quantize.weight import QuantizedWeight

# fused name -> the projections it stacks, in order
FUSED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}


def fuse_rows(parts: list[QuantizedWeight]) -> QuantizedWeight | None:
    """One QuantizedWeight with PARTS stacked along N (same input, outputs concatenated), or None when their
    formats differ (bits, groups, element, scale storage, zero-point kind) and they must stay separate."""
    first = parts[0]
    key = [(p.bits, p.group_size, p.element, p.scale_format, p.tensor_scale, p.block_rows, p.shape[1],
            p.symmetric, p.integer_zero) for p in parts]
    if len(set(key)) != 1 or first.block_rows != 1:
        return None
    return QuantizedWeight(torch.cat([p.codes for p in parts]), torch.cat([p.scale for p in parts]),
                           torch.cat([p.zero for p in parts]), first.bits, first.group_size, first.element,
                           first.scale_format, first.tensor_scale)


def fused_groups(prefixes: list[str], qweights: dict[str, QuantizedWeight]
                 ) -> tuple[set[str], dict[str, QuantizedWeight]]:
    """Which fused projections (e.g. 'model.layers.0.self_attn.qkv_proj') of the modules at PREFIXES the graph
    uses, and QWEIGHTS renamed to match: a group fuses when all its parts are float, or all quantized in one
    format."""
    fused: set[str] = set()
    renamed = dict(qweights)
    for prefix in prefixes:
        for name, parts in FUSED.items():
            members = [f"{prefix}.{p}" for p in parts]
            if not all(m in qweights for m in members):
                if not any(m in qweights for m in members):
                    fused.add(f"{prefix}.{name}")
                continue
            stacked = fuse_rows([qweights[m] for m in members])
            if stacked is not None:
                fused.add(f"{prefix}.{name}")
                renamed[f"{prefix}.{name}"] = stacked
                for m in members:
                    del renamed[m]
    return fused, renamed
