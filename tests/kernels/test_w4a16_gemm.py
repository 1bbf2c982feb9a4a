"""W4A16 / W8A16 kernels against the torch reference, on shapes that are not multiples of the tiles."""

import pytest
import torch

from retarget.kernels import weight_only_linear
from retarget.kernels._config import KernelConfig
from retarget.kernels.w4a16_gemm import choose, dequantize, pack, w4a16_gemm, w4a16_gemm_ref


def random_qweight(n: int, k: int, bits: int, group: int, symmetric: bool, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    groups = -(-k // group)
    q = torch.randint(0, 2**bits, (n, k), generator=gen, dtype=torch.uint8)
    scale = torch.rand(n, groups, generator=gen) * 0.02 + 1e-3
    if symmetric:
        zero = torch.full((n, groups), 2.0 ** (bits - 1))
    else:
        zero = torch.randint(0, 2**bits, (n, groups), generator=gen).float()
    return q, scale, zero


def test_dequantize_matches_the_layout_formula():
    """W[n, k] = (q[n, k] - zero[n, k // g]) * scale[n, k // g], element by element; last group shorter."""
    q, s, z = random_qweight(3, 70, 4, 32, symmetric=False)
    w = dequantize(q, s, z, 32)
    for n, k in [(0, 0), (1, 31), (2, 32), (2, 69), (0, 64)]:
        assert w[n, k].item() == pytest.approx((q[n, k].item() - z[n, k // 32].item()) * s[n, k // 32].item())


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("group", [32, 128])
@pytest.mark.parametrize("m", [1, 5, 33])
def test_kernel_matches_reference(bits, symmetric, group, m):
    n, k = 123, 576                     # K = 576 with g = 128 leaves a last group of 64
    q, s, z = random_qweight(n, k, bits, group, symmetric, seed=m)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(1)).half()
    bias = torch.randn(n).half()
    y = w4a16_gemm(x, pack(q, s, z, bits, group), bias)
    ref = w4a16_gemm_ref(x, q, s, z, group, bias)
    assert y.shape == (m, n) and y.dtype == torch.float16
    torch.testing.assert_close(y.float(), ref.float(), rtol=1e-2, atol=1e-2 * ref.abs().max().item())


@pytest.mark.parametrize("m", [2, 17])
def test_odd_k_fp32_activations(m):
    """Odd K (the last packed byte holds one code) and fp32 activations, through both variants."""
    n, k, group = 37, 201, 64
    q, s, z = random_qweight(n, k, 4, group, symmetric=False)
    x = torch.randn(m, k)
    y = w4a16_gemm(x, pack(q, s, z, 4, group, dtype=torch.float32))
    ref = w4a16_gemm_ref(x, q, s, z, group)
    torch.testing.assert_close(y, ref, rtol=1e-2, atol=1e-2 * ref.abs().max().item())


@pytest.mark.parametrize("variant", ["tiled", "splitk_gemv"])
def test_many_tiles(variant):
    """Small tiles so the grid has many programs: exercises the grouped tile order and the split-K sums."""
    n, k, group, m = 123, 576, 64, 33 if variant == "tiled" else 7
    q, s, z = random_qweight(n, k, 4, group, symmetric=False)
    x = torch.randn(m, k).half()
    cfg = KernelConfig(16, 32, 32, group_m=2)
    y = w4a16_gemm(x, pack(q, s, z, 4, group), config=(variant, cfg))
    ref = w4a16_gemm_ref(x, q, s, z, group)
    torch.testing.assert_close(y.float(), ref.float(), rtol=1e-2, atol=1e-2 * ref.abs().max().item())


@pytest.mark.parametrize("group", [48, 576])
def test_group_sizes_that_are_not_powers_of_two(group):
    """g = 48 (BLOCK_K 16) and per-channel g = K = 576 (BLOCK_K 64): tiles still never straddle groups."""
    n, k, m = 37, 576, 17
    q, s, z = random_qweight(n, k, 4, group, symmetric=False)
    x = torch.randn(m, k).half()
    y = w4a16_gemm(x, pack(q, s, z, 4, group))
    ref = w4a16_gemm_ref(x, q, s, z, group)
    torch.testing.assert_close(y.float(), ref.float(), rtol=1e-2, atol=1e-2 * ref.abs().max().item())


def test_variant_choice():
    assert choose(1, 128, "nvidia")[0] == "splitk_gemv" and choose(1, 128, "nvidia")[1].block_m == 1
    assert choose(16, 128, "amd-cdna")[0] == "splitk_gemv"
    assert choose(17, 128, "nvidia")[0] == "tiled"
    assert choose(512, 32, "amd-rdna")[1].block_k == 32      # a K tile never spans two groups
    assert choose(512, 96, "nvidia")[1].block_k == 32


def test_weight_only_linear_cpu_is_the_reference():
    q, s, z = random_qweight(40, 96, 4, 32, symmetric=True)
    x = torch.randn(2, 3, 96)
    y = weight_only_linear(x, q, s, z, bits=4, group_size=32, bias=None)
    expected = x @ dequantize(q, s, z, 32).T
    assert y.shape == (2, 3, 40)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


def test_repack_is_cached_per_tensor():
    from retarget.kernels import _packed_for

    q, s, z = random_qweight(8, 64, 4, 32, symmetric=True)
    first = _packed_for(q, s, z, 4, 32, torch.float16)
    assert _packed_for(q, s, z, 4, 32, torch.float16) is first
    q.add_(0)                                                # in-place change bumps the version
    assert _packed_for(q, s, z, 4, 32, torch.float16) is not first


def test_packed_layout_round_trips():
    q, s, z = random_qweight(5, 9, 4, 32, symmetric=True)
    p = pack(q, s, z, 4, 32)
    unpacked = torch.stack([p.qweight & 0xF, p.qweight >> 4], dim=1).reshape(-1, 5)[:9]
    assert torch.equal(unpacked.T, q) and p.qweight.shape == (5, 5)
