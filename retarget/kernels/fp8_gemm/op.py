"""Launch wrapper for the FP8 GEMM (per-channel or 1x128 / 128x128 block scales, float32 or UE8M0)."""

from __future__ import annotations

import math

import torch
import triton

from retarget.kernels import _device
from retarget.kernels._aot import AotCase, mma_name, pointer_type
from retarget.kernels._config import KernelConfig, autotune, bucket, check_family, pick, space
from retarget.kernels.fp8_gemm import configs
from retarget.kernels.fp8_gemm._kernel import fp8_gemm_kernel
from retarget.kernels.fp8_gemm.reference import BLOCK

FP8 = (torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2)


def choose(m: int, family: str) -> KernelConfig:
    return pick(configs.TILED[check_family(family)], m)


def fp8_gemm(x: torch.Tensor, sx: torch.Tensor, w: torch.Tensor, sw: torch.Tensor, blockwise: bool,
             bias: torch.Tensor | None = None, out_dtype: torch.dtype = torch.bfloat16,
             config: KernelConfig | str | None = None) -> torch.Tensor:
    """y [M, N] from fp8 x [M, K] and w [N, K] with scales as in reference.fp8_gemm_ref.

    CONFIG: None (heuristic), "auto" (timed search on the device, cached per shape bucket) or explicit."""
    if x.dtype not in FP8 or w.dtype != x.dtype:
        raise ValueError(f"operands must share an fp8 dtype, got {x.dtype} and {w.dtype}")
    (m, k), n = x.shape, w.shape[0]
    want_x = (m, math.ceil(k / BLOCK)) if blockwise else (m,)
    want_w = (math.ceil(n / BLOCK), math.ceil(k / BLOCK)) if blockwise else (n,)
    if w.shape[1] != k or tuple(sx.shape) != want_x or tuple(sw.shape) != want_w:
        raise ValueError(f"shape mismatch: x {tuple(x.shape)}, w {tuple(w.shape)}, sx {tuple(sx.shape)} "
                         f"(want {want_x}), sw {tuple(sw.shape)} (want {want_w})")
    if sx.dtype != sw.dtype or sx.dtype not in (torch.float32, torch.uint8):
        raise ValueError(f"scales must both be float32 or uint8 (UE8M0), got {sx.dtype} and {sw.dtype}")
    x, w, sx, sw = x.contiguous(), w.contiguous(), sx.contiguous(), sw.contiguous()
    family = _device.family(x.device.index or 0) if x.is_cuda else "nvidia"
    if config == "auto" and x.is_cuda:
        key = ("fp8_gemm", _device.arch(x.device.index or 0), bucket(m), n, k, x.dtype, sx.dtype, blockwise,
               out_dtype, bias is not None)
        config = autotune(key, space(configs.SPACE[family], max_block_m=max(16, bucket(m))),
                          lambda c: fp8_gemm(x, sx, w, sw, blockwise, bias, out_dtype, config=c))
    cfg = config if isinstance(config, KernelConfig) else choose(m, family)
    if BLOCK % cfg.block_k:
        raise ValueError(f"BLOCK_K={cfg.block_k} must divide the scale block {BLOCK}")
    y = torch.empty(m, n, device=x.device, dtype=out_dtype)
    grid = (triton.cdiv(m, cfg.block_m) * triton.cdiv(n, cfg.block_n),)
    fp8_gemm_kernel[grid](x, w, sx, sw, bias if bias is not None else y, y, m, n, k,
                          x.stride(0), w.stride(0), y.stride(0), sx.stride(0) if blockwise else 0,
                          sw.stride(0) if blockwise else 0, BLOCKWISE=blockwise, E8M0=sx.dtype == torch.uint8,
                          HAS_BIAS=bias is not None, GROUP_M=cfg.group_m, **cfg.constexprs(), **cfg.options())
    return y


def aot_cases(family: str) -> list[AotCase]:
    """Representative variants: per-channel OCP e4m3, the same in MI300's FNUZ flavour, and block scales
    with float32 and UE8M0 scales, at a prefill shape."""
    cases = []
    for variant, dtype, blockwise, e8m0 in (("channel", torch.float8_e4m3fn, False, False),
                                            ("channel-fnuz", torch.float8_e4m3fnuz, False, False),
                                            ("block128", torch.float8_e4m3fn, True, False),
                                            ("block128-ue8m0", torch.float8_e4m3fn, True, True)):
        cfg = choose(4096, family)
        scale = "*u8" if e8m0 else "*fp32"
        types = {"x_ptr": pointer_type(dtype), "w_ptr": pointer_type(dtype), "sx_ptr": scale, "sw_ptr": scale,
                 "b_ptr": "*bf16", "y_ptr": "*bf16", "M": "i32", "N": "i32", "K": "i32", "stride_xm": "i32",
                 "stride_wn": "i32", "stride_ym": "i32", "stride_sxm": "i32", "stride_swn": "i32"}
        cases.append(AotCase(op="fp8_gemm", variant=variant, shape=f"{mma_name(dtype)}, M=N=K=4096",
                             fn=fp8_gemm_kernel, types=types, config=cfg, mma=mma_name(dtype),
                             constexprs={"BLOCKWISE": blockwise, "E8M0": e8m0, "HAS_BIAS": False,
                                         "GROUP_M": cfg.group_m, **cfg.constexprs()},
                             aligned=("x_ptr", "w_ptr", "sx_ptr", "sw_ptr", "b_ptr", "y_ptr", "stride_xm",
                                      "stride_wn", "stride_ym")))
    return cases
