"""Token sort and align: the (token, slot) pairs grouped by expert, each expert's run padded to BLOCK_M rows
so one GEMM program never straddles two experts (vLLM's moe_align_block_size, in torch ops)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Alignment:
    """sorted_ids [P]: flat (token * top_k + slot) indices grouped by expert, padding entries = T * top_k;
    expert_ids [P / block_m]: the expert of each row block; padded: P, a multiple of block_m."""

    sorted_ids: torch.Tensor
    expert_ids: torch.Tensor
    padded: int
    block_m: int


def moe_align(ids: torch.Tensor, num_experts: int, block_m: int) -> Alignment:
    """Group the flat pairs of IDS [T, top_k] by expert (stable: token order within an expert)."""
    flat = ids.reshape(-1).long()
    pad_value = flat.numel()
    counts = torch.bincount(flat, minlength=num_experts)
    padded_counts = (counts + block_m - 1) // block_m * block_m
    starts = torch.cumsum(padded_counts, 0) - padded_counts
    order = torch.argsort(flat, stable=True)
    rank = torch.arange(flat.numel(), device=flat.device) - (torch.cumsum(counts, 0) - counts)[flat[order]]
    total = int(padded_counts.sum())
    sorted_ids = torch.full((total,), pad_value, dtype=torch.int32, device=flat.device)
    sorted_ids[starts[flat[order]] + rank] = order.to(torch.int32)
    expert_ids = torch.repeat_interleave(torch.arange(num_experts, device=flat.device, dtype=torch.int32),
                                         padded_counts // block_m)
    return Alignment(sorted_ids, expert_ids, total, block_m)
