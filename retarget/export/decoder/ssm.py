"""State-space mixers: Mamba-2 (Falcon-H1) and Mamba (Jamba), each cached as a fixed-size convolution state
(the last conv_kernel - 1 inputs of the depthwise convolution) and SSM state per layer, whatever the length.

Both run on ONNX Runtime contrib ops with CPU kernels (onnxruntime 1.32):

    xBC, conv_state = CausalConvWithState(xBC, conv_state)     depthwise causal conv + SiLU, channels last
    y, ssm_state = LinearAttention(q=C, k=B, v=dt * x, decay=dt * A, ssm_state, update_rule='gated')
                   # S_t = exp(dt_t A) S_{t-1} + B_t (x) dt_t x_t,  y_t = C_t . S_t
    y = (y + D * x) gated by SiLU(z)                          (Falcon-H1 optionally GatedRMSNorm)

Mamba-2 (Falcon-H1) has one decay per head: state [heads, d_state, head_dim] per layer, B and C shared by the
heads of a group. Mamba (Jamba) decays each channel and state entry separately: every inner channel is a
"head" with d_state keys and one value, B and C broadcast over them. One op serves a prompt and a decode
step: LinearAttention computes the recurrence from the state it is given (its chunk_size attribute is a
tuning hint; ORT's CPU kernel gives the same result for any chunk size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from retarget.export.decoder.blocks import Block
from retarget.export.decoder.cache import BATCH, CacheTensor
from retarget.export.decoder.graph import array
from retarget.export.decoder.mlp import activation
from retarget.export.decoder.registry import Unsupported, lowers

if TYPE_CHECKING:
    from retarget.export.decoder.build import DecoderGraph


@dataclass(frozen=True)
class SsmMixer(Block):
    """A Mamba-family mixer: INNER channels, D_STATE state size, CONV_KERNEL taps; ACTIVATION of the conv and
    the gate (SiLU in every released model)."""

    inner: int = 0
    d_state: int = 0
    conv_kernel: int = 4
    activation: str = "silu"

    def check(self, layer: int, kv_cache: str | None) -> None:
        if self.activation != "silu":
            raise Unsupported(f"layer {layer}: SSM activation {self.activation!r} of {self.path} has no lowering "
                              "(CausalConvWithState fuses SiLU only)", field="hidden_act")
        if kv_cache is not None:
            raise Unsupported(f"layer {layer}: a quantized KV cache (kv-int8, kv-fp8) is not lowered for the SSM "
                              f"state of {self.path}", field="--recipe")


@dataclass(frozen=True)
class Mamba2(SsmMixer):
    """Mamba-2 as in Falcon-H1: HEADS x HEAD_DIM = INNER, GROUPS of B/C, one scalar decay per head. IN_SCALE
    multiplies the input, MUP (a per-channel vector, None: ones) the in_proj output. NORM: 'none' (y * SiLU(z)),
    'before_gate' (RMSNorm(y) * SiLU(z)) or 'after_gate' (RMSNorm(y * SiLU(z)))."""

    heads: int = 0
    head_dim: int = 0
    groups: int = 1
    in_scale: float = 1.0
    mup: torch.Tensor | None = None
    norm: str = "none"
    norm_eps: float = 1e-6

    @property
    def conv_dim(self) -> int:
        return self.inner + 2 * self.groups * self.d_state


@dataclass(frozen=True)
class Mamba1(SsmMixer):
    """Mamba as in Jamba: DT_RANK low-rank time steps, RMSNorms on dt, B and C (NORM_EPS; None: no norms),
    a decay per channel and state entry."""

    dt_rank: int = 0
    norm_eps: float | None = None


def conv(g: DecoderGraph, block: SsmMixer, x: str, layer: int) -> str:
    """CausalConvWithState over X [B, S, channels] (channels last) from and to the layer's conv state."""
    module, path = block.module, block.path
    inputs = [x, g.const(f"{path}.conv1d.weight", array(module.conv1d.weight)),
              "" if module.conv1d.bias is None else g.const(f"{path}.conv1d.bias", array(module.conv1d.bias)),
              f"past_key_values.{layer}.conv_state"]
    return g.op("CausalConvWithState", inputs, [f"/{path}/conv", f"present.{layer}.conv_state"], f"{path}.conv1d",
                channels_last=1, activation="silu")[0]


def scan(g: DecoderGraph, path: str, q: str, k: str, v: str, decay: str, heads: tuple[int, int], layer: int,
         chunk: int | None) -> str:
    """LinearAttention's gated recurrence from and to the layer's SSM state; HEADS: (query heads, kv heads)."""
    attrs = {"chunk_size": chunk} if chunk else {}
    return g.op("LinearAttention", [q, k, v, f"past_key_values.{layer}.ssm_state", decay],
                [f"/{path}/scan", f"present.{layer}.ssm_state"], f"{path}.scan", q_num_heads=heads[0],
                kv_num_heads=heads[1], update_rule="gated", scale=1.0, **attrs)[0]


def _const(g: DecoderGraph, name: str, value: np.ndarray | list) -> str:
    return g.const(name, np.asarray(value, np.int64 if isinstance(value, list) else np.float32))


def _scaled(g: DecoderGraph, x: str, scale: float | np.ndarray, name: str, scope: str) -> str:
    """X times SCALE (a constant); nothing when SCALE is 1 everywhere."""
    if np.all(np.asarray(scale) == 1.0):
        return x
    return g.op("Mul", [x, _const(g, f"{scope}.{name}", scale)], [f"/{scope}/{name}"], scope)[0]


def _expand_heads(g: DecoderGraph, x: str, groups: int, per_group: int, width: int, name: str, scope: str) -> str:
    """X [B, S, GROUPS * WIDTH] with each group repeated PER_GROUP times: [B, S, GROUPS * PER_GROUP * WIDTH]."""
    if per_group == 1:
        return x
    split = g.op("Reshape", [x, _const(g, f"{scope}.{name}_groups", [0, 0, groups, 1, width])],
                 [f"/{scope}/{name}_groups"], scope)[0]
    wide = g.op("Expand", [split, _const(g, f"{scope}.{name}_repeat", [1, 1, groups, per_group, width])],
                [f"/{scope}/{name}_repeated"], scope)[0]
    return g.op("Reshape", [wide, _const(g, f"{scope}.{name}_flat", [0, 0, groups * per_group * width])],
                [f"/{scope}/{name}_heads"], scope)[0]


@lowers(Mamba2)
class Mamba2Lowering:
    """in_proj -> [z | xBC | dt]; conv; gated scan with per-head decay; D skip; gate (or gated RMSNorm);
    out_proj."""

    def check(self, block: Mamba2, layer: int, kv_cache: str | None) -> None:
        block.check(layer, kv_cache)
        if block.norm != "none" and block.groups != 1:
            raise Unsupported(f"layer {layer}: Mamba-2 gated RMSNorm over {block.groups} groups ({block.path}) has "
                              "no lowering yet", field="mamba_n_groups")

    def cache(self, block: Mamba2, layer: int) -> list[CacheTensor]:
        return [CacheTensor("conv_state", (BATCH, block.conv_kernel - 1, block.conv_dim)),
                CacheTensor("ssm_state", (BATCH, block.heads, block.d_state, block.head_dim))]

    def __call__(self, g: DecoderGraph, block: Mamba2, x: str, layer: int) -> str:
        module, path = block.module, block.path
        heads, groups, n = block.heads, block.groups, block.d_state
        x = _scaled(g, x, block.in_scale, "in_scaled", path)
        proj = g.linear(x, module.in_proj.weight, f"{path}.in_proj", module.in_proj.bias)
        if block.mup is not None:
            proj = _scaled(g, proj, array(block.mup.reshape(-1)), "mup", path)
        z, xbc, dt = g.op("Split", [proj, _const(g, f"{path}.zxbcdt", [block.inner, block.conv_dim, heads])],
                          [f"/{path}/z", f"/{path}/xBC", f"/{path}/dt_raw"], path, axis=-1)
        xbc = conv(g, block, xbc, layer)
        xs, b, c = g.op("Split", [xbc, _const(g, f"{path}.xbc", [block.inner, groups * n, groups * n])],
                        [f"/{path}/x", f"/{path}/B", f"/{path}/C"], path, axis=-1)
        dt = g.op("Softplus", [g.op("Add", [dt, g.const(f"{path}.dt_bias", array(module.dt_bias))],
                                    [f"/{path}/dt_biased"], path)[0]], [f"/{path}/dt"], path)[0]
        a = -torch.exp(module.A_log.detach().float())
        decay = g.op("Mul", [dt, g.const(f"{path}.A", array(a))], [f"/{path}/decay"], path)[0]
        x_heads = g.op("Reshape", [xs, _const(g, f"{path}.x_heads", [0, 0, heads, block.head_dim])],
                       [f"/{path}/x_heads"], path)[0]
        dt_col = g.op("Unsqueeze", [dt, _const(g, "last_axis", [-1])], [f"/{path}/dt_col"], path)[0]
        v = g.op("Mul", [x_heads, dt_col], [f"/{path}/dt_x_heads"], path)[0]
        v = g.op("Reshape", [v, _const(g, f"{path}.flat_inner", [0, 0, block.inner])], [f"/{path}/dt_x"], path)[0]
        k = _expand_heads(g, b, groups, heads // groups, n, "B", path)
        # C keeps one query head per group: LinearAttention's inverse GQA gives each of a group's heads its C
        y = scan(g, path, c, k, v, decay, (groups, heads), layer, getattr(module, "chunk_size", None))
        d = np.repeat(array(module.D), block.head_dim)
        y = g.op("Add", [y, g.op("Mul", [xs, g.const(f"{path}.D", d)], [f"/{path}/Dx"], path)[0]],
                 [f"/{path}/y"], path)[0]
        y = self._gate(g, block, y, z)
        return g.linear(y, module.out_proj.weight, f"{path}.out_proj", module.out_proj.bias)

    @staticmethod
    def _gate(g: DecoderGraph, block: Mamba2, y: str, z: str) -> str:
        path = block.path
        if block.norm == "before_gate":
            return g.op("GatedRMSNorm", [y, g.const(f"{path}.norm.weight", array(block.module.norm.weight)), z],
                        [f"/{path}/gated"], f"{path}.norm", activation="silu", epsilon=block.norm_eps)[0]
        gated = g.op("Mul", [y, activation(g, z, "silu", f"{path}.gate")], [f"/{path}/gated"], path)[0]
        if block.norm == "after_gate":
            return g.rms_norm(gated, array(block.module.norm.weight), block.norm_eps, f"{path}.norm")
        return gated


@lowers(Mamba1)
class Mamba1Lowering:
    """in_proj -> [x | z]; conv; x_proj -> dt, B, C (RMSNormed); dt_proj; gated scan with a decay per channel
    and state entry; D skip; SiLU(z) gate; out_proj."""

    def check(self, block: Mamba1, layer: int, kv_cache: str | None) -> None:
        block.check(layer, kv_cache)

    def cache(self, block: Mamba1, layer: int) -> list[CacheTensor]:
        return [CacheTensor("conv_state", (BATCH, block.conv_kernel - 1, block.inner)),
                CacheTensor("ssm_state", (BATCH, block.inner, block.d_state, 1))]

    def __call__(self, g: DecoderGraph, block: Mamba1, x: str, layer: int) -> str:
        module, path = block.module, block.path
        inner, n = block.inner, block.d_state
        proj = g.linear(x, module.in_proj.weight, f"{path}.in_proj", module.in_proj.bias)
        xs, z = g.op("Split", [proj], [f"/{path}/x_raw", f"/{path}/z"], path, axis=-1, num_outputs=2)
        xs = conv(g, block, xs, layer)
        params = g.linear(xs, module.x_proj.weight, f"{path}.x_proj")
        dt, b, c = g.op("Split", [params, _const(g, f"{path}.dt_b_c", [block.dt_rank, n, n])],
                        [f"/{path}/dt_low", f"/{path}/B_raw", f"/{path}/C_raw"], path, axis=-1)
        if block.norm_eps is not None:
            dt, b, c = (g.rms_norm(t, array(getattr(module, f"{name}_layernorm").weight), block.norm_eps,
                                   f"{path}.{name}_layernorm") for t, name in ((dt, "dt"), (b, "b"), (c, "c")))
        dt = g.op("Softplus", [g.linear(dt, module.dt_proj.weight, f"{path}.dt_proj", module.dt_proj.bias)],
                  [f"/{path}/dt"], path)[0]
        # every channel is a head with N keys and one value: B and C repeated per channel, decay dt * A
        b, c = (_expand_heads(g, t, 1, inner, n, name, path) for t, name in ((b, "B"), (c, "C")))
        dt_col = g.op("Unsqueeze", [dt, _const(g, "last_axis", [-1])], [f"/{path}/dt_col"], path)[0]
        a = -torch.exp(module.A_log.detach().float())
        decay = g.op("Mul", [dt_col, g.const(f"{path}.A", array(a))], [f"/{path}/decay_channels"], path)[0]
        decay = g.op("Reshape", [decay, _const(g, f"{path}.flat_state", [0, 0, inner * n])], [f"/{path}/decay"],
                     path)[0]
        v = g.op("Mul", [xs, dt], [f"/{path}/dt_x"], path)[0]
        y = scan(g, path, c, b, v, decay, (inner, inner), layer, None)
        y = g.op("Add", [y, g.op("Mul", [xs, g.const(f"{path}.D", array(module.D))], [f"/{path}/Dx"], path)[0]],
                 [f"/{path}/y"], path)[0]
        y = g.op("Mul", [y, activation(g, z, "silu", f"{path}.gate")], [f"/{path}/gated"], path)[0]
        return g.linear(y, module.out_proj.weight, f"{path}.out_proj", module.out_proj.bias)
