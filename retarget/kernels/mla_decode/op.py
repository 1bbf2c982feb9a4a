"""Launch wrapper for MLA decode with absorbed weights (split-KV over the latent cache, then combine)."""

from __future__ import annotations

import math

import torch
import triton

from retarget.kernels import _device
from retarget.kernels._aot import AotCase, mma_name, pointer_type
from retarget.kernels._config import KernelConfig, check_family
from retarget.kernels.attention.op import combine, num_splits
from retarget.kernels.mla_decode import configs
from retarget.kernels.mla_decode._kernel import mla_split_kernel
from retarget.kernels.mla_decode.reference import absorb_output, absorb_query


def mla_decode_latent(q_lat: torch.Tensor, q_pe: torch.Tensor, cache: torch.Tensor, lens: torch.Tensor,
                      scale: float, splits: int | None = None, config: KernelConfig | None = None) -> torch.Tensor:
    """Attention of q_lat [B, H, R] / q_pe [B, H, P] over cache [B, T, R + P] -> latent output [B, H, R]."""
    b, h, r = q_lat.shape
    p = q_pe.shape[-1]
    if q_pe.shape[:2] != (b, h) or cache.shape[0] != b or cache.shape[2] != r + p or lens.shape != (b,):
        raise ValueError(f"shape mismatch: q_lat {tuple(q_lat.shape)}, q_pe {tuple(q_pe.shape)}, "
                         f"cache {tuple(cache.shape)}, lens {tuple(lens.shape)}")
    family = _device.family(q_lat.device.index or 0) if q_lat.is_cuda else "nvidia"
    cfg = config or configs.DECODE[check_family(family)]
    head_tiles = triton.cdiv(h, cfg.block_m)
    sms = _device.num_sms(q_lat.device.index or 0) if q_lat.is_cuda else 4
    s = splits or num_splits(b * head_tiles, cache.shape[1], cfg.block_n, sms)
    q_lat, q_pe, cache = q_lat.contiguous(), q_pe.contiguous(), cache.contiguous()
    partial = torch.empty(b, h, s, r, device=q_lat.device, dtype=torch.float32)
    lse = torch.empty(b, h, s, device=q_lat.device, dtype=torch.float32)
    mla_split_kernel[(b, head_tiles, s)](
        q_lat, q_pe, cache, lens.to(torch.int32).contiguous(), partial, lse, scale, h,
        *q_lat.stride()[:2], *q_pe.stride()[:2], *cache.stride()[:2], *partial.stride()[:3], *lse.stride()[:2],
        RANK=r, ROPE=p, BLOCK_H=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_R=triton.next_power_of_2(r),
        BLOCK_P=max(16, triton.next_power_of_2(p)), **cfg.options())
    out = torch.empty_like(q_lat)
    combine(partial, lse, None, out)
    return out


def mla_decode(q_nope: torch.Tensor, q_pe: torch.Tensor, cache: torch.Tensor, w_uk: torch.Tensor,
               w_uv: torch.Tensor, lens: torch.Tensor, scale: float | None = None, splits: int | None = None,
               config: KernelConfig | None = None) -> torch.Tensor:
    """q_nope [B, H, Dn], q_pe [B, H, P] over the latent cache [B, T, R + P] with W_UK [H, Dn, R] and
    W_UV [H, Dv, R] absorbed -> [B, H, Dv] (reference.mla_decode_ref). Scale defaults to 1/sqrt(Dn + P)."""
    scale = 1 / math.sqrt(q_nope.shape[-1] + q_pe.shape[-1]) if scale is None else scale
    o_lat = mla_decode_latent(absorb_query(q_nope, w_uk), q_pe, cache, lens, scale, splits, config)
    return absorb_output(o_lat, w_uv)


# representative shape: DeepSeek-V3 (128 heads, kv_lora_rank 512, rope dim 64),
# https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json
_DSV3 = {"h": 128, "r": 512, "p": 64}
_STRIDES = ("stride_qlb", "stride_qlh", "stride_qrb", "stride_qrh", "stride_cb", "stride_ct", "stride_ob",
            "stride_oh", "stride_os", "stride_lb", "stride_lh")


def aot_cases(family: str) -> list[AotCase]:
    """bf16 latent cache at DeepSeek-V3's shape."""
    dt = torch.bfloat16
    cfg = configs.DECODE[check_family(family)]
    bf = pointer_type(dt)
    types = {"ql_ptr": bf, "qr_ptr": bf, "c_ptr": bf, "lens_ptr": "*i32", "o_ptr": "*fp32", "lse_ptr": "*fp32",
             "sm_scale": "fp32", "H": "i32", **dict.fromkeys(_STRIDES, "i32")}
    return [AotCase(op="mla_decode", variant="latent-splitkv",
                    shape=f"bf16, H={_DSV3['h']} R={_DSV3['r']} P={_DSV3['p']} (DeepSeek-V3), 8k cache",
                    fn=mla_split_kernel, types=types, config=cfg, mma=mma_name(dt),
                    constexprs={"RANK": _DSV3["r"], "ROPE": _DSV3["p"], "BLOCK_H": cfg.block_m,
                                "BLOCK_N": cfg.block_n, "BLOCK_R": _DSV3["r"], "BLOCK_P": _DSV3["p"]},
                    aligned=("ql_ptr", "qr_ptr", "c_ptr", "o_ptr", "lse_ptr", "stride_ct"))]
