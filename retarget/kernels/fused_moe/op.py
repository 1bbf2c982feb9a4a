"""Launch wrappers for fused MoE: routing, token alignment and the grouped expert GEMMs."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import triton

from retarget.kernels import _device
from retarget.kernels._aot import AotCase, mma_name, pointer_type
from retarget.kernels._config import KernelConfig, check_family, pick
from retarget.kernels.fused_moe import configs
from retarget.kernels.fused_moe._kernel import FLOAT, FP8_BLOCK, INT_GROUP, MXFP4, moe_gemm_kernel
from retarget.kernels.fused_moe._routing import routing_kernel
from retarget.kernels.fused_moe.align import Alignment, moe_align
from retarget.kernels.fused_moe.reference import Activation, silu_and_mul
from retarget.kernels.mxfp4_gemm.op import pack as pack_mxfp4
from retarget.kernels.w4a16_gemm.layout import pack


@dataclass(frozen=True)
class ExpertWeights:
    """Stacked expert weights [E, N, K] in one of four formats (W_FORMAT of the kernel):
    'float' (fp16 / bf16 w), 'int' (w4a16_gemm layout per expert: codes [E, ceil(K*bits/8), N], scale / zero
    [E, G, N]), 'fp8-block' (e4m3 w [E, N, K], float32 scale [E, ceil(N/128), ceil(K/128)]) or 'mxfp4'
    (mxfp4_gemm layout per expert: E2M1 [E, ceil(K/2), N], E8M0 scale [E, N, ceil(K/32)])."""

    format: str
    w: torch.Tensor
    n: int
    k: int
    scale: torch.Tensor | None = None
    zero: torch.Tensor | None = None
    bits: int = 16
    group_size: int = 128

    @classmethod
    def from_float(cls, w: torch.Tensor) -> ExpertWeights:
        return cls("float", w.contiguous(), w.shape[1], w.shape[2])

    @classmethod
    def from_int(cls, codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int, group_size: int,
                 dtype: torch.dtype = torch.float16) -> ExpertWeights:
        """Codes uint8 [E, N, K] and scale / zero [E, N, G] (the project layout) repacked per expert."""
        packed = [pack(codes[e], scale[e], zero[e], bits, group_size, dtype) for e in range(codes.shape[0])]
        return cls("int", torch.stack([p.qweight for p in packed]), codes.shape[1], codes.shape[2],
                   torch.stack([p.scale for p in packed]), torch.stack([p.zero for p in packed]), bits, group_size)

    @classmethod
    def from_fp8_block(cls, w: torch.Tensor, scale: torch.Tensor) -> ExpertWeights:
        return cls("fp8-block", w.contiguous(), w.shape[1], w.shape[2], scale.float().contiguous(), bits=8)

    @classmethod
    def from_mxfp4(cls, codes: torch.Tensor, scales: torch.Tensor) -> ExpertWeights:
        """E2M1 codes uint8 [E, N, K] (0..15) and E8M0 scales uint8 [E, N, ceil(K/32)], repacked per expert."""
        packed = [pack_mxfp4(codes[e], scales[e]) for e in range(codes.shape[0])]
        return cls("mxfp4", torch.stack([p.qweight for p in packed]), codes.shape[1], codes.shape[2],
                   torch.stack([p.scale for p in packed]), bits=4, group_size=32)

    @property
    def kernel_format(self) -> int:
        return {"float": FLOAT, "int": INT_GROUP, "fp8-block": FP8_BLOCK, "mxfp4": MXFP4}[self.format]


def route(logits: torch.Tensor, top_k: int, n_group: int = 1, topk_group: int = 1, scoring: str = "softmax",
          bias: torch.Tensor | None = None, group_top2: bool = False, renormalize: bool = True,
          routed_scaling: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights float32 [T, top_k], ids int32 [T, top_k]) as reference.route_ref, one token per program."""
    t, e = logits.shape
    if e % n_group or topk_group > n_group or top_k > (e // n_group) * topk_group:
        raise ValueError(f"cannot pick {top_k} of {e} experts from {topk_group} of {n_group} groups")
    if scoring not in ("softmax", "sigmoid"):
        raise ValueError(f"scoring must be 'softmax' or 'sigmoid', got {scoring!r}")
    logits = logits.contiguous()
    weights = torch.empty(t, top_k, device=logits.device, dtype=torch.float32)
    ids = torch.empty(t, top_k, device=logits.device, dtype=torch.int32)
    routing_kernel[(t,)](logits, bias.float().contiguous() if bias is not None else weights, weights, ids,
                         logits.stride(0), routed_scaling, EXPERTS_PER_GROUP=e // n_group, N_GROUP=n_group,
                         TOPK_GROUP=topk_group, TOP_K=top_k, SIGMOID=scoring == "sigmoid",
                         HAS_BIAS=bias is not None, GROUP_TOP2=group_top2, RENORMALIZE=renormalize,
                         BLOCK_G=triton.next_power_of_2(n_group), BLOCK_EG=triton.next_power_of_2(e // n_group),
                         BLOCK_K=triton.next_power_of_2(top_k), **configs.ROUTING.options())
    return weights, ids


def choose(pairs: int, experts: int, family: str) -> KernelConfig:
    return pick(configs.GEMM[check_family(family)], triton.cdiv(pairs, experts))


def moe_gemm(a: torch.Tensor, w: ExpertWeights, align: Alignment, num_pairs: int, top_k: int,
             routed: torch.Tensor | None, cfg: KernelConfig) -> torch.Tensor:
    """C [num_pairs, N]: row p = a[p // top_k] @ W[expert of p].T (times routed[p] if given)."""
    if a.shape[-1] != w.k:
        raise ValueError(f"activations have K={a.shape[-1]}, experts have K={w.k}")
    if w.format == "int" and w.group_size % cfg.block_k:
        raise ValueError(f"BLOCK_K={cfg.block_k} must divide the group size {w.group_size}")
    if w.format == "mxfp4" and cfg.block_k % 32:
        raise ValueError(f"BLOCK_K={cfg.block_k} must be a multiple of the MXFP4 block (32)")
    a = a.contiguous()
    c = torch.empty(num_pairs, w.n, device=a.device, dtype=a.dtype)
    scale = w.scale if w.scale is not None else c
    zero = w.zero if w.zero is not None else scale
    grid = (triton.cdiv(align.padded, cfg.block_m) * triton.cdiv(w.n, cfg.block_n),)
    moe_gemm_kernel[grid](a, w.w, scale, zero, c, routed if routed is not None else c, align.sorted_ids,
                          align.expert_ids, align.padded, num_pairs, w.n, w.k, a.stride(0), w.w.stride(0),
                          w.w.stride(1), scale.stride(0) if w.scale is not None else 0,
                          scale.stride(1) if w.scale is not None else 0, c.stride(0),
                          TOP_K=top_k, MUL_ROUTED=routed is not None, W_FORMAT=w.kernel_format, BITS=w.bits,
                          GROUP=w.group_size, GROUP_M=cfg.group_m, **cfg.constexprs(), **cfg.options())
    return c


def _fit_groups(cfg: KernelConfig, *weights: ExpertWeights) -> KernelConfig:
    """CFG with BLOCK_K narrowed to divide the quantization group of integer experts (groups are multiples of 16)."""
    block_k = cfg.block_k
    for w in weights:
        if w.format == "int":
            block_k = math.gcd(block_k, w.group_size)
    return cfg if block_k == cfg.block_k else replace(cfg, block_k=block_k)


def fused_moe(x: torch.Tensor, w13: ExpertWeights, w2: ExpertWeights, weights: torch.Tensor, ids: torch.Tensor,
              num_experts: int, config: KernelConfig | None = None, act: Activation = silu_and_mul,
              bias13: torch.Tensor | None = None, bias2: torch.Tensor | None = None) -> torch.Tensor:
    """Expert MLPs on x [T, H] for the routing (WEIGHTS, IDS [T, top_k]) -> [T, H] (reference.moe_ref):
    sort/align once, grouped GEMM for gate/up, the activation (SwiGLU by default), grouped GEMM for down with the
    routing weight fused into its epilogue, then the sum over slots. Biases are added per (token, slot) pair."""
    t, top_k = ids.shape
    family = _device.family(x.device.index or 0) if x.is_cuda else "nvidia"
    cfg = config or _fit_groups(choose(t * top_k, num_experts, family), w13, w2)
    align = moe_align(ids, num_experts, cfg.block_m)
    expert = ids.reshape(-1).long()
    h = moe_gemm(x, w13, align, t * top_k, top_k, None, cfg)
    if bias13 is not None:
        h += bias13[expert].to(h.dtype)
    routed = weights.reshape(-1).float().contiguous()
    out = moe_gemm(act(h.float()).to(h.dtype), w2, align, t * top_k, 1, routed, cfg)
    if bias2 is not None:
        out += (routed[:, None] * bias2[expert].float()).to(out.dtype)
    return out.view(t, top_k, -1).sum(1, dtype=torch.float32).to(x.dtype)


# representative shapes: DeepSeek-V3 experts (hidden 7168, moe_intermediate 2048, 256 experts, top-8 from
# 4 of 8 groups), https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json; batch 64 decode
_DSV3 = {"hidden": 7168, "inter": 2048, "experts": 256, "top_k": 8, "n_group": 8, "topk_group": 4}
_GEMM_STRIDES = ("stride_am", "stride_we", "stride_wr", "stride_se", "stride_sr", "stride_cm")


def aot_cases(family: str) -> list[AotCase]:
    """Routing, and the gate/up GEMM with bf16, W4A16 (g128), FP8-block and MXFP4 experts."""
    d = _DSV3
    cfg = choose(64 * d["top_k"], d["experts"], check_family(family))
    bf = pointer_type(torch.bfloat16)
    cases = [AotCase(op="fused_moe", variant="routing-grouped-topk",
                     shape=f"sigmoid + bias, top-{d['top_k']} of {d['experts']} in {d['topk_group']}/"
                           f"{d['n_group']} groups (DeepSeek-V3)",
                     fn=routing_kernel, config=configs.ROUTING, mma=None,
                     types={"logits_ptr": "*fp32", "bias_ptr": "*fp32", "w_ptr": "*fp32", "ids_ptr": "*i32",
                            "stride_lt": "i32", "routed_scaling": "fp32"},
                     constexprs={"EXPERTS_PER_GROUP": d["experts"] // d["n_group"], "N_GROUP": d["n_group"],
                                 "TOPK_GROUP": d["topk_group"], "TOP_K": d["top_k"], "SIGMOID": True,
                                 "HAS_BIAS": True, "GROUP_TOP2": True, "RENORMALIZE": True,
                                 "BLOCK_G": d["n_group"], "BLOCK_EG": d["experts"] // d["n_group"],
                                 "BLOCK_K": d["top_k"]},
                     aligned=("logits_ptr", "w_ptr", "ids_ptr"))]
    for variant, w_type, fmt, bits, s_type in (("bf16", bf, FLOAT, 16, "*fp32"),
                                               ("w4a16-g128", "*u8", INT_GROUP, 4, bf),
                                               ("fp8-block128", pointer_type(torch.float8_e4m3fn), FP8_BLOCK, 8,
                                                "*fp32"),
                                               ("mxfp4", "*u8", MXFP4, 4, "*u8")):
        types = {"a_ptr": bf, "w_ptr": w_type, "s_ptr": s_type, "z_ptr": s_type, "c_ptr": bf, "rw_ptr": "*fp32",
                 "sorted_ptr": "*i32", "expert_ptr": "*i32", "padded": "i32", "num_pairs": "i32", "N": "i32",
                 "K": "i32", **dict.fromkeys(_GEMM_STRIDES, "i32")}
        cases.append(AotCase(op="fused_moe", variant=f"gemm-{variant}",
                             shape=f"{variant} experts, gate/up N={2 * d['inter']} K={d['hidden']}, E={d['experts']}"
                                   f" top-{d['top_k']}, 64 tokens (DeepSeek-V3)",
                             fn=moe_gemm_kernel, types=types, config=cfg, mma=mma_name(torch.bfloat16),
                             constexprs={"TOP_K": d["top_k"], "MUL_ROUTED": False, "W_FORMAT": fmt, "BITS": bits,
                                         "GROUP": 128, "GROUP_M": cfg.group_m, **cfg.constexprs()},
                             aligned=("a_ptr", "w_ptr", "s_ptr", "z_ptr", "c_ptr", "sorted_ptr", "stride_am",
                                      "stride_we", "stride_wr", "stride_cm")))
    return cases
