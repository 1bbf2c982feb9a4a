"""Pack and launch the MXFP4-weight GEMM; tl.dot_scaled where the device has block-scaled MMAs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import triton

from retarget.kernels import _device
from retarget.kernels._aot import AotCase, pointer_type
from retarget.kernels._config import KernelConfig, autotune, bucket, check_family, pick, space
from retarget.kernels.mxfp4_gemm import configs
from retarget.kernels.mxfp4_gemm._kernel import mxfp4_gemm_kernel
from retarget.kernels.mxfp4_gemm.reference import BLOCK

_ACT_FORMATS = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float8_e4m3fn: "e4m3"}


@dataclass(frozen=True)
class MxWeight:
    """MXFP4 weight in the kernel layout.

    qweight uint8 [ceil(K / 2), N]: byte [j, n] = q[n, 2j] | q[n, 2j + 1] << 4 (E2M1 codes, K-packed)
    scale   uint8 [N, ceil(K / 32)]: E8M0 codes (the rhs_scale layout of tl.dot_scaled)
    """

    qweight: torch.Tensor
    scale: torch.Tensor
    k: int

    @property
    def n(self) -> int:
        return self.qweight.shape[1]


def pack(codes: torch.Tensor, scales: torch.Tensor) -> MxWeight:
    """E2M1 codes uint8 [N, K] and E8M0 scales [N, ceil(K/32)] -> MxWeight."""
    n, k = codes.shape
    if scales.shape != (n, -(-k // BLOCK)) or scales.dtype != torch.uint8:
        raise ValueError(f"scales must be uint8 [{n}, {-(-k // BLOCK)}], "
                         f"got {scales.dtype} {tuple(scales.shape)}")
    q = codes.T.contiguous()
    if k % 2:
        q = torch.cat([q, q.new_zeros(1, n)])
    return MxWeight(qweight=(q[0::2] | (q[1::2] << 4)).contiguous(), scale=scales.contiguous(), k=k)


def choose(m: int, family: str, dot_scaled: bool) -> KernelConfig:
    cfg = pick(configs.TILED[check_family(family)], m)
    return cfg if dot_scaled else dataclasses.replace(cfg, block_k=min(cfg.block_k, configs.DEQUANT_BLOCK_K))


def mxfp4_gemm(x: torch.Tensor, w: MxWeight, bias: torch.Tensor | None = None,
               x_scales: torch.Tensor | None = None, dot_scaled: bool | None = None,
               out_dtype: torch.dtype | None = None,
               config: KernelConfig | str | None = None) -> torch.Tensor:
    """y [M, N] = x @ W.T (+ bias). x is fp16/bf16, or E4M3 with E8M0 X_SCALES [M, ceil(K/32)] (MXFP8).

    DOT_SCALED None: tl.dot_scaled where the device has block-scaled MMAs (sm_100+, gfx950), else dequant.
    CONFIG: None (heuristic), "auto" (timed search on the device, cached per shape bucket) or explicit.
    """
    if x.dtype not in _ACT_FORMATS:
        raise ValueError(f"activations must be fp16, bf16 or float8_e4m3fn, got {x.dtype}")
    (m, k), n = x.shape, w.n
    if k != w.k:
        raise ValueError(f"x has K={k}, weight has K={w.k}")
    act = _ACT_FORMATS[x.dtype]
    if (act == "e4m3") != (x_scales is not None):
        raise ValueError("x_scales are required for (and only for) float8_e4m3fn activations")
    out_dtype = out_dtype or (torch.bfloat16 if act == "e4m3" else x.dtype)
    if dot_scaled is None:
        dot_scaled = x.is_cuda and _device.native_mx_dot(x.device.index or 0)
    family = _device.family(x.device.index or 0) if x.is_cuda else "nvidia"
    if config == "auto" and x.is_cuda:
        key = ("mxfp4_gemm", _device.arch(x.device.index or 0), bucket(m), n, k, x.dtype, dot_scaled, out_dtype,
               bias is not None)
        config = autotune(key, space(configs.SPACE[family], max_block_m=max(16, bucket(m))),
                          lambda c: mxfp4_gemm(x, w, bias, x_scales, dot_scaled, out_dtype, config=c))
    cfg = config if isinstance(config, KernelConfig) else choose(m, family, dot_scaled)
    x = x.contiguous()
    xs = x_scales.contiguous() if x_scales is not None else w.scale
    y = torch.empty(m, n, device=x.device, dtype=out_dtype)
    grid = (triton.cdiv(m, cfg.block_m), triton.cdiv(n, cfg.block_n))
    mxfp4_gemm_kernel[grid](x, xs, w.qweight, w.scale, bias if bias is not None else y, y, m, n, k,
                            x.stride(0), xs.stride(0), w.qweight.stride(0), w.scale.stride(0), y.stride(0),
                            ACT_FORMAT=act, DOT_SCALED=dot_scaled, HAS_BIAS=bias is not None,
                            **cfg.constexprs(), **cfg.options())
    return y


def aot_cases(family: str) -> list[AotCase]:
    """bf16 x MXFP4 by dequantization and through tl.dot_scaled, and MXFP8 x MXFP4 through tl.dot_scaled
    (the combination with native block-scaled MMAs), at a prefill shape."""
    cases = []
    for variant, act, dot_scaled, mma in (("dequant-bf16", "bf16", False, "bf16"),
                                          ("dot_scaled-bf16", "bf16", True, "mxf4"),
                                          ("dot_scaled-mxfp8", "e4m3", True, "mxf4")):
        cfg = choose(4096, family, dot_scaled)
        x_type = pointer_type(torch.float8_e4m3fn) if act == "e4m3" else pointer_type(torch.bfloat16)
        types = {"x_ptr": x_type, "xs_ptr": "*u8", "w_ptr": "*u8", "ws_ptr": "*u8", "b_ptr": "*bf16",
                 "y_ptr": "*bf16", "M": "i32", "N": "i32", "K": "i32", "stride_xm": "i32",
                 "stride_xsm": "i32", "stride_wk": "i32", "stride_wsn": "i32", "stride_ym": "i32"}
        cases.append(AotCase(op="mxfp4_gemm", variant=variant, shape=f"{act} x mxfp4, M=N=K=4096",
                             fn=mxfp4_gemm_kernel, types=types, config=cfg, mma=mma,
                             constexprs={"ACT_FORMAT": act, "DOT_SCALED": dot_scaled, "HAS_BIAS": False,
                                         **cfg.constexprs()},
                             aligned=("x_ptr", "xs_ptr", "w_ptr", "ws_ptr", "b_ptr", "y_ptr", "stride_xm",
                                      "stride_xsm", "stride_wk", "stride_wsn", "stride_ym")))
    return cases
