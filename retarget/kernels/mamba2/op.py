"""Launch wrappers for the Mamba2 chunked scan (prefill) and single-step state update (decode)."""

from __future__ import annotations

import torch
import triton

from retarget.kernels import _device
from retarget.kernels._aot import AotCase, mma_name, pointer_type
from retarget.kernels._config import KernelConfig, check_family
from retarget.kernels.mamba2 import configs
from retarget.kernels.mamba2._chunk_scan import chunk_scan_kernel
from retarget.kernels.mamba2._state_update import state_update_kernel


def _family(t: torch.Tensor) -> str:
    return check_family(_device.family(t.device.index or 0) if t.is_cuda else "nvidia")


def _check(x: torch.Tensor, b: torch.Tensor, c: torch.Tensor, a: torch.Tensor) -> None:
    heads, groups = x.shape[-2], b.shape[-2]
    if heads % groups or b.shape != c.shape or a.shape != (heads,):
        raise ValueError(f"shape mismatch: x {tuple(x.shape)}, B {tuple(b.shape)}, C {tuple(c.shape)}, "
                         f"A {tuple(a.shape)}")


def chunk_scan(x: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
               d: torch.Tensor | None = None, initial_state: torch.Tensor | None = None,
               config: KernelConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(y [B, L, H, P], final state float32 [B, H, P, N]) as reference.ssd_scan_ref."""
    _check(x, b, c, a)
    bsz, length, heads, p = x.shape
    n = b.shape[-1]
    cfg = config or configs.CHUNK_SCAN[_family(x)]
    x, dt, b, c = x.contiguous(), dt.contiguous(), b.contiguous(), c.contiguous()
    y = torch.empty_like(x)
    final = torch.empty(bsz, heads, p, n, device=x.device, dtype=torch.float32)
    init = initial_state.float().contiguous() if initial_state is not None else final
    chunk_scan_kernel[(bsz * heads, triton.cdiv(p, cfg.block_n))](
        x, dt, a.float().contiguous(), b, c, d.float().contiguous() if d is not None else final, init, y, final,
        length, heads, p, *x.stride()[:3], *dt.stride()[:2], *b.stride()[:3], *final.stride()[:3],
        HEADS_PER_GROUP=heads // b.shape[2], STATE_DIM=n, HAS_D=d is not None, HAS_INIT=initial_state is not None,
        CHUNK=cfg.block_m, BLOCK_P=cfg.block_n, BLOCK_N=max(16, triton.next_power_of_2(n)), **cfg.options())
    return y, final


def state_update(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                 c: torch.Tensor, d: torch.Tensor | None = None, config: KernelConfig | None = None) -> torch.Tensor:
    """One decode step: updates STATE float32 [B, H, P, N] in place, returns y [B, H, P]
    (reference.state_update_ref)."""
    _check(x, b, c, a)
    if state.dtype != torch.float32 or not state.is_contiguous():
        raise ValueError("state must be a contiguous float32 tensor (it is updated in place)")
    bsz, heads, p = x.shape
    cfg = config or configs.STATE_UPDATE[_family(x)]
    x, dt, b, c = x.contiguous(), dt.contiguous(), b.contiguous(), c.contiguous()
    y = torch.empty_like(x)
    state_update_kernel[(bsz * heads, triton.cdiv(p, cfg.block_n))](
        state, x, dt, a.float().contiguous(), b, c, d.float().contiguous() if d is not None else state, y,
        heads, p, *state.stride()[:3], *x.stride()[:2], dt.stride(0), *b.stride()[:2],
        HEADS_PER_GROUP=heads // b.shape[1], STATE_DIM=b.shape[-1], HAS_D=d is not None, BLOCK_P=cfg.block_n,
        BLOCK_N=triton.next_power_of_2(b.shape[-1]), **cfg.options())
    return y


# representative shape: mamba2-2.7b (80 heads of 64 channels, 1 group, state 128),
# https://huggingface.co/state-spaces/mamba2-2.7b/blob/main/config.json
_M2 = {"heads": 80, "p": 64, "groups": 1, "n": 128}


def aot_cases(family: str) -> list[AotCase]:
    """bf16 chunked scan over a 4k prompt and the decode step, at mamba2-2.7b's shape."""
    dt_ = torch.bfloat16
    bf = pointer_type(dt_)
    scan = configs.CHUNK_SCAN[check_family(family)]
    step = configs.STATE_UPDATE[family]
    scan_types = {"x_ptr": bf, "dt_ptr": "*fp32", "a_ptr": "*fp32", "b_ptr": bf, "c_ptr": bf, "d_ptr": "*fp32",
                  "s0_ptr": "*fp32", "y_ptr": bf, "sT_ptr": "*fp32", "L": "i32", "H": "i32", "P": "i32",
                  **dict.fromkeys(("stride_xb", "stride_xl", "stride_xh", "stride_db", "stride_dl", "stride_bb",
                                   "stride_bl", "stride_bg", "stride_sb", "stride_sh", "stride_sp"), "i32")}
    step_types = {"state_ptr": "*fp32", "x_ptr": bf, "dt_ptr": "*fp32", "a_ptr": "*fp32", "b_ptr": bf, "c_ptr": bf,
                  "d_ptr": "*fp32", "y_ptr": bf, "H": "i32", "P": "i32",
                  **dict.fromkeys(("stride_sb", "stride_sh", "stride_sp", "stride_xb", "stride_xh", "stride_db",
                                   "stride_bb", "stride_bg"), "i32")}
    shape = f"bf16, H={_M2['heads']} P={_M2['p']} G={_M2['groups']} N={_M2['n']} (mamba2-2.7b)"
    common = {"HEADS_PER_GROUP": _M2["heads"] // _M2["groups"], "STATE_DIM": _M2["n"], "HAS_D": True,
              "BLOCK_N": _M2["n"]}
    return [
        AotCase(op="mamba2", variant="chunk-scan", shape=f"{shape}, 4k tokens, chunk {scan.block_m}",
                fn=chunk_scan_kernel, types=scan_types, config=scan, mma=mma_name(dt_),
                constexprs={**common, "HAS_INIT": False, "CHUNK": scan.block_m, "BLOCK_P": scan.block_n},
                aligned=("x_ptr", "b_ptr", "c_ptr", "y_ptr", "sT_ptr", "stride_xl", "stride_bl", "stride_sp")),
        AotCase(op="mamba2", variant="state-update", shape=f"{shape}, one token", fn=state_update_kernel,
                types=step_types, config=step, mma=None, constexprs={**common, "BLOCK_P": step.block_n},
                aligned=("state_ptr", "x_ptr", "b_ptr", "c_ptr", "y_ptr", "stride_sp")),
    ]
