"""Launch wrapper for the W8A8 INT8 GEMM."""

from __future__ import annotations

import torch
import triton

from retarget.kernels import _device
from retarget.kernels._aot import AotCase, pointer_type
from retarget.kernels._config import KernelConfig, autotune, bucket, check_family, pick, space
from retarget.kernels.w8a8_int8_gemm import configs
from retarget.kernels.w8a8_int8_gemm._kernel import int8_gemm_kernel


def choose(m: int, family: str) -> KernelConfig:
    return pick(configs.TILED[check_family(family)], m)


def int8_gemm(xq: torch.Tensor, sx: torch.Tensor, wq: torch.Tensor, sw: torch.Tensor,
              bias: torch.Tensor | None = None, out_dtype: torch.dtype = torch.float16,
              config: KernelConfig | str | None = None) -> torch.Tensor:
    """y [M, N] = (xq [M, K] * sx[:, None]) @ (wq [N, K] * sw[:, None]).T + bias, int8 operands.

    CONFIG: None (heuristic), "auto" (timed search on the device, cached per shape bucket) or explicit."""
    if xq.dtype != torch.int8 or wq.dtype != torch.int8:
        raise ValueError(f"operands must be int8, got {xq.dtype} and {wq.dtype}")
    (m, k), n = xq.shape, wq.shape[0]
    if wq.shape[1] != k or sx.shape != (m,) or sw.shape != (n,):
        raise ValueError(f"shape mismatch: x {tuple(xq.shape)}, w {tuple(wq.shape)}, sx {tuple(sx.shape)}, "
                         f"sw {tuple(sw.shape)}")
    xq, wq = xq.contiguous(), wq.contiguous()
    family = _device.family(xq.device.index or 0) if xq.is_cuda else "nvidia"
    if config == "auto" and xq.is_cuda:
        key = ("int8_gemm", _device.arch(xq.device.index or 0), bucket(m), n, k, out_dtype, bias is not None)
        config = autotune(key, space(configs.SPACE[family], max_block_m=max(16, bucket(m))),
                          lambda c: int8_gemm(xq, sx, wq, sw, bias, out_dtype, config=c))
    cfg = config if isinstance(config, KernelConfig) else choose(m, family)
    y = torch.empty(m, n, device=xq.device, dtype=out_dtype)
    grid = (triton.cdiv(m, cfg.block_m) * triton.cdiv(n, cfg.block_n),)
    int8_gemm_kernel[grid](xq, wq, sx.float().contiguous(), sw.float().contiguous(),
                           bias if bias is not None else y, y, m, n, k,
                           xq.stride(0), wq.stride(0), y.stride(0), HAS_BIAS=bias is not None,
                           GROUP_M=cfg.group_m, **cfg.constexprs(), **cfg.options())
    return y


def aot_cases(family: str) -> list[AotCase]:
    """Representative variants for the portability matrix, with this family's configs."""
    cases = []
    for m in (4096,):
        cfg = choose(m, family)
        types = {"x_ptr": "*i8", "w_ptr": "*i8", "sx_ptr": "*fp32", "sw_ptr": "*fp32", "b_ptr": "*bf16",
                 "y_ptr": pointer_type(torch.bfloat16), "M": "i32", "N": "i32", "K": "i32",
                 "stride_xm": "i32", "stride_wn": "i32", "stride_ym": "i32"}
        cases.append(AotCase(op="w8a8_int8_gemm", variant=f"tiled-m{m}",
                             shape=f"i8 x i8 -> bf16, M={m} N=K=4096",
                             fn=int8_gemm_kernel, types=types, config=cfg, mma="i8",
                             constexprs={"HAS_BIAS": False, "GROUP_M": cfg.group_m, **cfg.constexprs()},
                             aligned=("x_ptr", "w_ptr", "sx_ptr", "sw_ptr", "b_ptr", "y_ptr", "stride_xm",
                                      "stride_wn", "stride_ym")))
    return cases
