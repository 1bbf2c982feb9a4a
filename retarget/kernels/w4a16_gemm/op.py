"""Launch wrapper for W4A16 / W8A16: checks shapes, allocates the output, picks the variant and launches."""

from __future__ import annotations

import dataclasses

import torch
import triton

from retarget.kernels import _device
from retarget.kernels._aot import AotCase, mma_name, pointer_type
from retarget.kernels._config import KernelConfig, autotune, bucket, check_family, pick, space
from retarget.kernels.w4a16_gemm import configs
from retarget.kernels.w4a16_gemm._splitk_gemv import splitk_gemv_kernel
from retarget.kernels.w4a16_gemm._tiled import tiled_kernel
from retarget.kernels.w4a16_gemm.layout import PackedWeight, supported_group


def choose(m: int, group_size: int, family: str) -> tuple[str, KernelConfig]:
    """(variant, config) for M rows on a vendor family; BLOCK_K fitted to the group size."""
    check_family(family)
    if m <= configs.SPLITK_MAX_M:
        return "splitk_gemv", _clamp_k(pick(configs.SPLITK[family], m), group_size)
    return "tiled", _clamp_k(pick(configs.TILED[family], m), group_size)


def _clamp_k(cfg: KernelConfig, group_size: int) -> KernelConfig:
    """BLOCK_K no larger than the largest power of two dividing the group size: no tile spans two groups."""
    return dataclasses.replace(cfg, block_k=min(cfg.block_k, group_size & -group_size))


def candidates(variant: str, m: int, group_size: int, family: str) -> list[KernelConfig]:
    """The config="auto" search space of VARIANT for M rows (configs.SPLITK_SPACE / TILED_SPACE)."""
    if variant == "splitk_gemv":
        cands = space(configs.SPLITK_SPACE[check_family(family)], block_m=1 if m == 1 else 16)
    else:
        cands = space(configs.TILED_SPACE[check_family(family)], max_block_m=max(32, bucket(m)))
    return list(dict.fromkeys(_clamp_k(c, group_size) for c in cands))


def split_k(n: int, k: int, cfg: KernelConfig, sms: int, family: str) -> int:
    """K splits that give about the family's SPLITK_WAVES programs per SM without leaving a split empty."""
    if cfg.split_k:
        return cfg.split_k
    n_tiles = triton.cdiv(n, cfg.block_n)
    k_tiles = triton.cdiv(k, cfg.block_k)
    return max(1, min(k_tiles, triton.cdiv(configs.SPLITK_WAVES[family] * sms, n_tiles)))


def w4a16_gemm(x: torch.Tensor, w: PackedWeight, bias: torch.Tensor | None = None,
               config: tuple[str, KernelConfig] | str | None = None) -> torch.Tensor:
    """y = x @ dequant(w).T + bias for x [..., K] in fp16/bf16; returns x's dtype and leading shape.

    CONFIG: None (heuristic per vendor family), "auto" (time the search space on the device once per
    shape bucket; the heuristic off-GPU) or an explicit (variant, KernelConfig)."""
    if x.shape[-1] != w.k:
        raise ValueError(f"x has K={x.shape[-1]}, weight has K={w.k}")
    if not supported_group(w.group_size):
        raise ValueError(f"group size must be a multiple of 16 (the smallest MMA K step), got {w.group_size}")
    x2 = x.reshape(-1, w.k).contiguous()
    m, n, k = x2.shape[0], w.n, w.k
    on_gpu = x.is_cuda
    family = _device.family(x.device.index or 0) if on_gpu else "nvidia"
    if config == "auto" and on_gpu:
        variant = choose(m, w.group_size, family)[0]
        key = ("w4a16_gemm", variant, _device.arch(x.device.index or 0), bucket(m), n, k, w.bits, w.group_size,
               x.dtype)
        config = (variant, autotune(key, candidates(variant, m, w.group_size, family),
                                    lambda c: w4a16_gemm(x, w, bias, config=(variant, c))))
    variant, cfg = config if isinstance(config, tuple) else choose(m, w.group_size, family)
    common = dict(BITS=w.bits, GROUP=w.group_size, **cfg.constexprs(), **cfg.options())
    if variant == "splitk_gemv":
        acc = torch.zeros(m, n, device=x.device, dtype=torch.float32)
        splits = split_k(n, k, cfg, _device.num_sms(x.device.index or 0) if on_gpu else 4, family)
        grid = (triton.cdiv(n, cfg.block_n), splits)
        splitk_gemv_kernel[grid](x2, w.qweight, w.scale, w.zero, acc, m, n, k,
                                 x2.stride(0), w.qweight.stride(0), w.scale.stride(0), acc.stride(0), splits,
                                 **common)
        y = acc if bias is None else acc + bias.float()
        y = y.to(x.dtype)
    else:
        y = torch.empty(m, n, device=x.device, dtype=x.dtype)
        grid = (triton.cdiv(m, cfg.block_m) * triton.cdiv(n, cfg.block_n),)
        tiled_kernel[grid](x2, w.qweight, w.scale, w.zero, bias if bias is not None else y, y, m, n, k,
                           x2.stride(0), w.qweight.stride(0), w.scale.stride(0), y.stride(0),
                           HAS_BIAS=bias is not None, GROUP_M=cfg.group_m, **common)
    return y.reshape(*x.shape[:-1], n)


def aot_cases(family: str) -> list[AotCase]:
    """Representative variants for the portability matrix, with this family's configs."""
    cases = []
    for m, bits, dtype in ((1, 4, torch.float16), (16, 4, torch.float16), (512, 4, torch.bfloat16),
                           (512, 8, torch.bfloat16)):
        variant, cfg = choose(m, 128, family)
        act = pointer_type(dtype)
        types = {"x_ptr": act, "w_ptr": "*u8", "s_ptr": act, "z_ptr": act, "M": "i32", "N": "i32", "K": "i32",
                 "stride_xm": "i32", "stride_wk": "i32", "stride_sg": "i32"}
        aligned = ("x_ptr", "w_ptr", "s_ptr", "z_ptr", "stride_xm", "stride_wk", "stride_sg")
        if variant == "splitk_gemv":
            fn, extra = splitk_gemv_kernel, {"acc_ptr": "*fp32", "stride_am": "i32", "SPLIT_K": "i32"}
            constexprs = {"BITS": bits, "GROUP": 128, **cfg.constexprs()}
            aligned += ("acc_ptr", "stride_am")
        else:
            fn, extra = tiled_kernel, {"b_ptr": act, "y_ptr": act, "stride_ym": "i32"}
            constexprs = {"BITS": bits, "GROUP": 128, "HAS_BIAS": False, "GROUP_M": cfg.group_m,
                          **cfg.constexprs()}
            aligned += ("b_ptr", "y_ptr", "stride_ym")
        cases.append(AotCase(op="w4a16_gemm", variant=f"w{bits}a16-{variant}-m{m}",
                             shape=f"{mma_name(dtype)} act, int{bits} g128, M={m} N=K=8192", fn=fn,
                             types={**types, **extra}, constexprs=constexprs, config=cfg,
                             mma=None if cfg.block_m == 1 else mma_name(dtype), aligned=aligned))
    return cases
