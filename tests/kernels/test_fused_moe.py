"""Fused MoE against the torch per-expert loop, in the interpreter: routing (softmax; sigmoid + bias with
group-limited top-k), the sort/align invariants, and the grouped GEMM with fp16, W4A16, FP8-block and MXFP4 experts
on odd sizes (7 tokens, hidden 80, intermediate 40, 6 experts, top-3)."""

import pytest
import torch

from retarget.kernels._config import KernelConfig
from retarget.kernels.fp8_gemm.reference import expand_scales, quantize
from retarget.kernels.fused_moe import ExpertWeights, fused_moe, moe_align, moe_ref, route, route_ref
from retarget.kernels.mxfp4_gemm.reference import dequantize as mx_dequantize
from retarget.kernels.mxfp4_gemm.reference import quantize_mxfp4
from retarget.kernels.w4a16_gemm.reference import dequantize

TILES = KernelConfig(16, 32, 16, group_m=2)
MX_TILES = KernelConfig(16, 32, 32, group_m=2)   # whole 32-element MXFP4 blocks per K step
T, H, INTER, E, TOP_K = 7, 80, 40, 6, 3


@pytest.mark.parametrize("kwargs", [
    {"top_k": 2},
    {"top_k": 5, "n_group": 4, "topk_group": 2, "scoring": "sigmoid", "group_top2": True,
     "routed_scaling": 2.5},
])
def test_routing_matches_reference(kwargs):
    gen = torch.Generator().manual_seed(len(kwargs))
    logits = torch.randn(9, 24, generator=gen)
    bias = torch.randn(24, generator=gen) * 0.1 if kwargs.get("scoring") == "sigmoid" else None
    w, ids = route(logits, bias=bias, **kwargs)
    w_ref, ids_ref = route_ref(logits, bias=bias, **kwargs)
    assert torch.equal(ids, ids_ref)
    torch.testing.assert_close(w, w_ref)
    if "n_group" in kwargs:   # every pick lies in one of the topk_group allowed groups
        assert all(len(set((row // 6).tolist())) <= 2 for row in ids)


def test_align_groups_pairs_by_expert_in_padded_blocks():
    ids = torch.tensor([[2, 0], [2, 5], [0, 2]], dtype=torch.int32)
    a = moe_align(ids, num_experts=6, block_m=4)
    assert a.padded == 12 and a.expert_ids.tolist() == [0, 2, 5]
    flat = ids.reshape(-1)
    for block, e in enumerate(a.expert_ids.tolist()):
        rows = a.sorted_ids[block * 4:(block + 1) * 4]
        real = rows[rows < 6]
        assert (flat[real.long()] == e).all()
    assert sorted(a.sorted_ids[a.sorted_ids < 6].tolist()) == list(range(6))


def _routing(gen):
    x = torch.randn(T, H, generator=gen).half()
    weights, ids = route_ref(torch.randn(T, E, generator=gen), TOP_K)
    return x, weights, ids


def _int_experts(gen, n, k, group):
    codes = torch.randint(0, 16, (E, n, k), generator=gen, dtype=torch.uint8)
    scale = torch.rand(E, n, -(-k // group), generator=gen) * 0.02 + 0.005
    zero = torch.full_like(scale, 8.0)
    dense = torch.stack([dequantize(codes[e], scale[e], zero[e], group) for e in range(E)])
    return ExpertWeights.from_int(codes, scale, zero, 4, group), dense


def _fp8_experts(gen, n, k):
    w = torch.randn(E, n, k, generator=gen) * 0.1
    parts = [quantize(w[e], (128, 128)) for e in range(E)]
    dense = torch.stack([c.float() * expand_scales(s, n, k, (128, 128)) for c, s in parts])
    return ExpertWeights.from_fp8_block(torch.stack([c for c, _ in parts]), torch.stack([s for _, s in parts])), dense


def _mxfp4_experts(gen, n, k):
    parts = [quantize_mxfp4(torch.randn(n, k, generator=gen) * 0.1) for _ in range(E)]
    dense = torch.stack([mx_dequantize(c, s) for c, s in parts])
    return ExpertWeights.from_mxfp4(torch.stack([c for c, _ in parts]), torch.stack([s for _, s in parts])), dense


@pytest.mark.parametrize("fmt", ["float", "w4a16", "fp8-block", "mxfp4"])
def test_fused_moe_matches_expert_loop(fmt):
    gen = torch.Generator().manual_seed(3)
    x, weights, ids = _routing(gen)
    if fmt == "float":
        dense13 = torch.randn(E, 2 * INTER, H, generator=gen) * 0.1
        dense2 = torch.randn(E, H, INTER, generator=gen) * 0.1
        w13, w2 = ExpertWeights.from_float(dense13.half()), ExpertWeights.from_float(dense2.half())
    elif fmt == "w4a16":
        w13, dense13 = _int_experts(gen, 2 * INTER, H, 16)
        w2, dense2 = _int_experts(gen, H, INTER, 16)
    elif fmt == "fp8-block":
        w13, dense13 = _fp8_experts(gen, 2 * INTER, H)
        w2, dense2 = _fp8_experts(gen, H, INTER)
    else:
        w13, dense13 = _mxfp4_experts(gen, 2 * INTER, H)
        w2, dense2 = _mxfp4_experts(gen, H, INTER)
    out = fused_moe(x, w13, w2, weights, ids, E, config=MX_TILES if fmt == "mxfp4" else TILES)
    ref = moe_ref(x, dense13.half(), dense2.half(), weights, ids)
    torch.testing.assert_close(out.float(), ref.float(), rtol=2e-2, atol=2e-2 * ref.abs().max().item())
