"""Launch wrappers for split-KV decode attention and causal prefill attention (window, sinks, GQA)."""

from __future__ import annotations

import math

import torch
import triton

from retarget.kernels import _device
from retarget.kernels._aot import AotCase, mma_name, pointer_type
from retarget.kernels._config import KernelConfig, check_family, pick
from retarget.kernels.attention import configs
from retarget.kernels.attention._combine import combine_kernel
from retarget.kernels.attention._decode import decode_split_kernel
from retarget.kernels.attention._prefill import prefill_kernel

NO_WINDOW = 1 << 30


def _family(t: torch.Tensor) -> str:
    return _device.family(t.device.index or 0) if t.is_cuda else "nvidia"


def num_splits(batch_heads: int, max_len: int, block_n: int, sms: int) -> int:
    """KV slices per (sequence, KV head): about SPLIT_WAVES programs per SM, no slice shorter than a block."""
    want = triton.cdiv(configs.SPLIT_WAVES * sms, batch_heads)
    return max(1, min(want, triton.cdiv(max_len, block_n), configs.MAX_SPLITS))


def combine(partial: torch.Tensor, lse: torch.Tensor, sinks: torch.Tensor | None, out: torch.Tensor) -> None:
    """OUT [B, H, D] = merge of PARTIAL [B, H, S, D] weighted by LSE [B, H, S], sink logits in the denominator."""
    b, h, s, d = partial.shape
    sink = sinks.float().contiguous() if sinks is not None else lse
    combine_kernel[(b, h)](partial, lse, sink, out, s, d, *partial.stride()[:3], *lse.stride()[:2],
                           *out.stride()[:2], HAS_SINK=sinks is not None, BLOCK_S=triton.next_power_of_2(s),
                           BLOCK_D=triton.next_power_of_2(d), **configs.COMBINE.options())


def decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, lens: torch.Tensor,
                     window: int | None = None, sinks: torch.Tensor | None = None, scale: float | None = None,
                     splits: int | None = None, config: KernelConfig | None = None) -> torch.Tensor:
    """q [B, Hq, D] over caches [B, Hkv, T, D] holding LENS [B] live entries -> [B, Hq, D] in q's dtype
    (reference.decode_attention_ref). SPLITS: KV slices per sequence (default: from the SM count)."""
    b, hq, d = q.shape
    _, hkv, t, _ = k_cache.shape
    if hq % hkv or v_cache.shape != k_cache.shape or k_cache.shape[0] != b or k_cache.shape[3] != d:
        raise ValueError(f"shape mismatch: q {tuple(q.shape)}, k {tuple(k_cache.shape)}, v {tuple(v_cache.shape)}")
    if lens.shape != (b,):
        raise ValueError(f"lens must be [{b}], got {tuple(lens.shape)}")
    cfg = config or configs.DECODE[check_family(_family(q))]
    group = hq // hkv
    block_h = max(cfg.block_m, triton.next_power_of_2(group))
    sms = _device.num_sms(q.device.index or 0) if q.is_cuda else 4
    s = splits or num_splits(b * hkv, min(t, window or t), cfg.block_n, sms)   # a window bounds the live keys
    q = q.contiguous()
    k_cache, v_cache = k_cache.contiguous(), v_cache.contiguous()
    partial = torch.empty(b, hq, s, d, device=q.device, dtype=torch.float32)
    lse = torch.empty(b, hq, s, device=q.device, dtype=torch.float32)
    decode_split_kernel[(b, hkv, s)](
        q, k_cache, v_cache, lens.to(torch.int32).contiguous(), partial, lse,
        1 / math.sqrt(d) if scale is None else scale, window or NO_WINDOW,
        *q.stride()[:2], *k_cache.stride()[:3], *v_cache.stride()[:3], *partial.stride()[:3], *lse.stride()[:2],
        GROUP=group, HEAD_DIM=d, BLOCK_H=block_h, BLOCK_N=cfg.block_n, BLOCK_D=triton.next_power_of_2(d),
        **cfg.options())
    out = torch.empty_like(q)
    combine(partial, lse, sinks, out)
    return out


def prefill_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None = None,
                      sinks: torch.Tensor | None = None, scale: float | None = None,
                      config: KernelConfig | None = None) -> torch.Tensor:
    """Causal q [B, Hq, Sq, D] over k / v [B, Hkv, Sk, D] (Sq <= Sk, queries last) -> [B, Hq, Sq, D]
    (reference.prefill_attention_ref)."""
    b, hq, sq, d = q.shape
    _, hkv, sk, _ = k.shape
    if hq % hkv or v.shape != k.shape or sq > sk or k.shape[3] != d:
        raise ValueError(f"shape mismatch: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    cfg = config or pick(configs.PREFILL[check_family(_family(q))], triton.next_power_of_2(d))
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    out = torch.empty_like(q)
    sink = sinks.float().contiguous() if sinks is not None else out
    prefill_kernel[(triton.cdiv(sq, cfg.block_m), b * hq)](
        q, k, v, sink, out, sq, sk, 1 / math.sqrt(d) if scale is None else scale, window or NO_WINDOW,
        *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *out.stride()[:3],
        HQ=hq, GROUP=hq // hkv, HEAD_DIM=d, HAS_SINK=sinks is not None, BLOCK_M=cfg.block_m,
        BLOCK_N=cfg.block_n, BLOCK_D=triton.next_power_of_2(d), **cfg.options())
    return out


# representative shape: gpt-oss-120b attention (64 query heads, 8 KV heads, head dim 64, 128-token window
# on alternate layers, learned sinks), https://huggingface.co/openai/gpt-oss-120b/blob/main/config.json
_GPT_OSS = {"hq": 64, "hkv": 8, "d": 64}
_STRIDES = ("stride_qb", "stride_qh", "stride_kb", "stride_kh", "stride_kt", "stride_vb", "stride_vh", "stride_vt",
            "stride_ob", "stride_oh", "stride_os", "stride_lb", "stride_lh")


def aot_cases(family: str) -> list[AotCase]:
    """Split-KV decode, its combine step and windowed prefill, bf16, at gpt-oss-120b's attention shape."""
    dt = torch.bfloat16
    hq, hkv, d = _GPT_OSS["hq"], _GPT_OSS["hkv"], _GPT_OSS["d"]
    dec = configs.DECODE[check_family(family)]
    pre = pick(configs.PREFILL[family], d)
    bf = pointer_type(dt)
    dec_types = {"q_ptr": bf, "k_ptr": bf, "v_ptr": bf, "lens_ptr": "*i32", "o_ptr": "*fp32", "lse_ptr": "*fp32",
                 "sm_scale": "fp32", "window": "i32", **dict.fromkeys(_STRIDES, "i32")}
    comb_types = {"o_ptr": "*fp32", "lse_ptr": "*fp32", "sink_ptr": "*fp32", "out_ptr": bf, "SPLITS": "i32",
                  "HEAD_DIM": "i32", **dict.fromkeys(("stride_ob", "stride_oh", "stride_os", "stride_lb",
                                                       "stride_lh", "stride_yb", "stride_yh"), "i32")}
    pre_types = {"q_ptr": bf, "k_ptr": bf, "v_ptr": bf, "sink_ptr": "*fp32", "o_ptr": bf, "Sq": "i32", "Sk": "i32",
                 "sm_scale": "fp32", "window": "i32",
                 **dict.fromkeys(("stride_qb", "stride_qh", "stride_qs", "stride_kb", "stride_kh", "stride_ks",
                                  "stride_vb", "stride_vh", "stride_vs", "stride_ob", "stride_oh", "stride_os"),
                                 "i32")}
    shape = f"bf16, Hq={hq} Hkv={hkv} D={d}, window 128 + sinks (gpt-oss-120b)"
    return [
        AotCase(op="attention", variant="decode-splitkv", shape=f"{shape}, 8k cache", fn=decode_split_kernel,
                types=dec_types, config=dec, mma=mma_name(dt),
                constexprs={"GROUP": hq // hkv, "HEAD_DIM": d, "BLOCK_H": max(dec.block_m, hq // hkv),
                            "BLOCK_N": dec.block_n, "BLOCK_D": d},
                aligned=("q_ptr", "k_ptr", "v_ptr", "o_ptr", "lse_ptr", "stride_kt", "stride_vt")),
        AotCase(op="attention", variant="decode-combine", shape=f"{shape}, 16 splits", fn=combine_kernel,
                types=comb_types, config=configs.COMBINE, mma=None,
                constexprs={"HAS_SINK": True, "BLOCK_S": 16, "BLOCK_D": d},
                aligned=("o_ptr", "lse_ptr", "out_ptr")),
        AotCase(op="attention", variant="prefill-window-sinks", shape=f"{shape}, 4k prompt", fn=prefill_kernel,
                types=pre_types, config=pre, mma=mma_name(dt),
                constexprs={"HQ": hq, "GROUP": hq // hkv, "HEAD_DIM": d, "HAS_SINK": True,
                            "BLOCK_M": pre.block_m, "BLOCK_N": pre.block_n, "BLOCK_D": d},
                aligned=("q_ptr", "k_ptr", "v_ptr", "o_ptr", "stride_qs", "stride_ks", "stride_vs")),
    ]
