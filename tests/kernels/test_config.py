"""Config data and the autotuner: selection, caching, skipping configs that do not fit, and (slow) every
candidate of every vendor family's search space computing the right numbers in the interpreter."""

import pytest
import torch
from triton.runtime.errors import OutOfResources

from retarget.kernels._config import FAMILIES, KernelConfig, autotune, bucket, space


def test_bucket_rounds_up_to_powers_of_two():
    assert [bucket(m) for m in (1, 2, 3, 16, 17, 4096)] == [1, 2, 4, 16, 32, 4096]


def test_space_is_the_product_without_oversized_row_tiles():
    configs = space({"block_m": (16, 64, 128), "block_n": (32, 64)}, max_block_m=64, block_k=32)
    assert len(configs) == 4 and {c.block_m for c in configs} == {16, 64}
    assert all(c.block_k == 32 for c in configs)


def test_autotune_picks_the_fastest_once():
    cands = [KernelConfig(16, n, 32) for n in (32, 64, 128)]
    launched = []
    fake_ms = {32: 3.0, 64: 1.0, 128: 2.0}
    timer = lambda fn: (fn(), fake_ms[launched[-1].block_n])[1]  # noqa: E731
    key = ("test", object())
    assert autotune(key, cands, launched.append, timer) == cands[1]
    assert autotune(key, cands, launched.append, timer) == cands[1]
    assert len(launched) == 3                                  # cached: the second call times nothing


def test_autotune_skips_configs_that_do_not_fit():
    def launch(cfg):
        if cfg.block_n == 64:
            raise OutOfResources(200000, 65536, "shared memory")

    cands = [KernelConfig(16, n, 32) for n in (32, 64)]
    timer = lambda fn: (fn(), 1.0)[1]  # noqa: E731
    assert autotune(("skip", object()), cands, launch, timer) == cands[0]
    with pytest.raises(RuntimeError, match="no candidate"):
        autotune(("none", object()), cands[1:], launch, timer)


def _tiles(configs):
    """The interpreter ignores warps and stages: one run per distinct tile shape."""
    return list({(c.block_m, c.block_n, c.block_k): c for c in configs}.values())


def _close(y: torch.Tensor, ref: torch.Tensor, rel: float) -> None:
    torch.testing.assert_close(y.float(), ref.float(), rtol=rel, atol=rel * ref.abs().max().item())


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_every_search_space_candidate_is_correct(family):
    from retarget.kernels import fp8_gemm, mxfp4_gemm, w8a8_int8_gemm
    from retarget.kernels.fp8_gemm import configs as fp8_configs
    from retarget.kernels.mxfp4_gemm import configs as mx_configs
    from retarget.kernels.w4a16_gemm import op as w4
    from retarget.kernels.w4a16_gemm import pack, w4a16_gemm_ref
    from retarget.kernels.w8a8_int8_gemm import configs as int8_configs

    gen = torch.Generator().manual_seed(0)
    n, k, g = 123, 576, 128
    q = torch.randint(0, 16, (n, k), generator=gen, dtype=torch.uint8)
    s, z = torch.rand(n, 5, generator=gen) * 0.02, torch.randint(0, 16, (n, 5), generator=gen).float()
    for m in (1, 5, 40):
        x = torch.randn(m, k, generator=gen).half()
        variant = w4.choose(m, g, family)[0]
        for cfg in _tiles(w4.candidates(variant, m, g, family)):
            y = w4.w4a16_gemm(x, pack(q, s, z, 4, g), config=(variant, cfg))
            _close(y, w4a16_gemm_ref(x, q, s, z, g), 1e-2)

    x, w = torch.randn(40, k, generator=gen), torch.randn(n, k, generator=gen)
    xq, sx = w8a8_int8_gemm.quantize_rows(x)
    wq, sw = w8a8_int8_gemm.quantize_rows(w)
    ref = w8a8_int8_gemm.int8_gemm_ref(xq, sx, wq, sw)
    for cfg in _tiles(space(int8_configs.SPACE[family])):
        _close(w8a8_int8_gemm.int8_gemm(xq, sx, wq, sw, config=cfg), ref, 2e-3)

    fx, fsx = fp8_gemm.quantize(x, (1, 128))
    fw, fsw = fp8_gemm.quantize(w, (128, 128))
    ref = fp8_gemm.fp8_gemm_ref(fx, fsx, fw, fsw, True, out_dtype=torch.float16)
    for cfg in _tiles(space(fp8_configs.SPACE[family])):
        _close(fp8_gemm.fp8_gemm(fx, fsx, fw, fsw, True, out_dtype=torch.float16, config=cfg), ref, 2e-3)

    codes, scales = mxfp4_gemm.quantize_mxfp4(w)
    xh = x.half()
    ref = mxfp4_gemm.mxfp4_gemm_ref(xh, codes, scales)
    for cfg in _tiles(space(mx_configs.SPACE[family])):
        for dot_scaled in (False, True):
            y = mxfp4_gemm.mxfp4_gemm(xh, mxfp4_gemm.pack(codes, scales), dot_scaled=dot_scaled, config=cfg)
            _close(y, ref, 1e-2)
