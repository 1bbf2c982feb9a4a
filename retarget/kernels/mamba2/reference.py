"""Mamba2's selective state-space recurrence (SSD), in torch, as the sequential scan that defines it.

Per head h (group g = h // (H / G)), with state S [P, N]:

    S_t = exp(dt_t * A_h) * S_{t-1} + dt_t * x_t B_t^T          x_t [P], B_t, C_t [N], dt_t > 0, A_h < 0
    y_t = S_t C_t + D_h * x_t

dt is taken as given (after the model's softplus and bias). The chunked kernel computes the same numbers
chunk by chunk: inside a chunk as a masked (C B^T * decay) @ x product on the tensor cores, across chunks
through the carried state (Mamba2, https://arxiv.org/abs/2405.21060 section 6).
"""

from __future__ import annotations

import torch


def ssd_scan_ref(x: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                 d: torch.Tensor | None = None,
                 initial_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, L, H, P], dt [B, L, H], a [H], b / c [B, L, G, N], d [H] -> (y [B, L, H, P] in x's dtype,
    final state float32 [B, H, P, N]); a step-by-step loop in float64."""
    bsz, length, heads, p = x.shape
    rep = heads // b.shape[2]
    bb = b.double().repeat_interleave(rep, dim=2)
    cc = c.double().repeat_interleave(rep, dim=2)
    state = (initial_state.double().clone() if initial_state is not None
             else torch.zeros(bsz, heads, p, b.shape[-1], dtype=torch.float64, device=x.device))
    ys = []
    for t in range(length):
        state, y = _step(state, x[:, t].double(), dt[:, t].double(), a.double(), bb[:, t], cc[:, t], d)
        ys.append(y)
    return torch.stack(ys, dim=1).to(x.dtype), state.float()


def state_update_ref(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                     c: torch.Tensor, d: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One decode step: state [B, H, P, N], x [B, H, P], dt [B, H], b / c [B, G, N] -> (y [B, H, P] in x's
    dtype, new state float32)."""
    rep = x.shape[1] // b.shape[1]
    new, y = _step(state.double(), x.double(), dt.double(), a.double(),
                   b.double().repeat_interleave(rep, dim=1), c.double().repeat_interleave(rep, dim=1), d)
    return y.to(x.dtype), new.float()


def _step(state, x, dt, a, b, c, d):
    decay = torch.exp(dt * a)[..., None, None]
    state = state * decay + (dt[..., None] * x)[..., None] * b[..., None, :]
    y = (state * c[..., None, :]).sum(-1)
    if d is not None:
        y = y + d.double()[:, None] * x
    return state, y


def scan_bytes(bsz: int, length: int, heads: int, p: int, groups: int, n: int, elem: int = 2) -> int:
    """Minimum DRAM traffic of the chunked scan: x and y, B and C, dt; the state stays on chip."""
    return bsz * length * (2 * heads * p * elem + 2 * groups * n * elem + heads * 4)
