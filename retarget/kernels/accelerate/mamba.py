"""Falcon-H1's Mamba2 mixer on kernels/mamba2: the chunked scan for prompts, the single-step state update for
decode. The projections, the causal depthwise convolution (and its rolling cache state), the gated RMSNorm and the
muP multipliers stay as transformers computes them; only the SSD recurrence moves to the kernels."""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.falcon_h1.modeling_falcon_h1 import FalconH1Mixer

from retarget.kernels.accelerate import _ops
from retarget.kernels.accelerate._registry import register


def _convolve(self: nn.Module, xbc: torch.Tensor, cache, step: bool) -> torch.Tensor:
    """The depthwise causal convolution of x/B/C [B, S, C] and its activation; updates the cache's conv state."""
    if step:
        state = cache.conv_states[self.layer_idx]
        state.copy_(state.roll(shifts=-1, dims=-1))
        state[:, :, -1] = xbc[:, 0]
        out = (state * self.conv1d.weight.squeeze(1)).sum(-1)
        return self.act(out + self.conv1d.bias if self.use_conv_bias else out)[:, None]
    if cache is not None:
        cols = xbc.transpose(1, 2)
        cache.conv_states[self.layer_idx].copy_(nn.functional.pad(cols, (self.conv_kernel_size - cols.shape[-1], 0)))
    return self.act(self.conv1d(xbc.transpose(1, 2))[..., :xbc.shape[1]].transpose(1, 2))


def mixer_forward(self: nn.Module, hidden_states: torch.Tensor, cache_params=None, cache_position=None,
                  attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """FalconH1Mixer.forward's contract (padding is refused before the model runs)."""
    b, s, _ = hidden_states.shape
    proj = self.in_proj(hidden_states * self.ssm_in_multiplier) * self.mup_vector
    gate, xbc, dt = proj.split([self.intermediate_size, self.conv_dim, self.num_heads], dim=-1)
    step = (cache_params is not None and cache_params.has_previous_state and s == 1
            and cache_position is not None and cache_position[0] > 0)
    xbc = _convolve(self, xbc, cache_params, step)
    groups = self.n_groups * self.ssm_state_size
    x, bm, cm = xbc.split([self.intermediate_size, groups, groups], dim=-1)
    x = x.reshape(b, s, self.num_heads, self.head_dim)
    bm, cm = (t.reshape(b, s, self.n_groups, self.ssm_state_size) for t in (bm, cm))
    a = -torch.exp(self.A_log.float())
    dt = nn.functional.softplus(dt + self.dt_bias).clamp(*self.time_step_limit)
    if step:
        y = _ops.ssd_step(cache_params.ssm_states[self.layer_idx], x[:, 0], dt[:, 0], a, bm[:, 0], cm[:, 0],
                          self.D)[:, None]
    else:
        y, final = _ops.ssd_scan(x, dt, a, bm, cm, self.D)
        if cache_params is not None:
            cache_params.ssm_states[self.layer_idx].copy_(final)
    y = y.reshape(b, s, -1)
    out = self.norm(y, gate) if self.mamba_rms_norm else y * nn.functional.silu(gate)
    return self.out_proj(out.to(hidden_states.dtype))


@register(FalconH1Mixer, kernels=("mamba2",))
def use_ssd_kernels(module: nn.Module) -> None:
    module.forward = mixer_forward.__get__(module)
