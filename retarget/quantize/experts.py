"""Mixture-of-experts weights: fused 3-D expert tensors, routers, and which Linears are experts.

transformers keeps experts two ways. Most families hold an `experts` ModuleList of ordinary Linears (Mixtral,
Qwen3-MoE, OLMoE, GLM-4.5, DeepSeek-V3): those are quantized like any Linear. gpt-oss and Llama 4 fuse every
expert into 3-D parameters stored [E, in, out] (`x @ W[e]`); `FUSED_EXPERTS` registers each such module class
with how to find, per expert, the rows it receives and the input of its second matrix. Expert e's matrix of
parameter W in module P is keyed `f"{P}.{W}.{e}"` and quantized in [out, in] orientation, i.e. as W[e].T:

    GptOssExperts      gate_up_proj [E, H, 2I], gate and up INTERLEAVED along 2I (rows 2j / 2j+1 of W[e].T),
                       + gate_up_proj_bias [E, 2I]; down_proj [E, I, H] + down_proj_bias [E, H]
    Llama4TextExperts  gate_up_proj [E, H, 2I], gate = first half, up = second half; down_proj [E, I, H]

Routers (any Linear of an MoE block outside its experts and shared experts, including Llama 4's Linear
subclass that returns a tuple) stay float: a rounding error there flips which experts a token visits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

EXPERTS_ATTR = "experts"
SHARED_PREFIX = "shared"  # shared_expert, shared_experts, shared_mlp: dense paths of an MoE block


def _gpt_oss_routed(module: nn.Module, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    hidden = args[0].reshape(-1, module.hidden_size)
    indices = kwargs["router_indices"] if "router_indices" in kwargs else args[1]
    return [hidden[(indices == e).any(-1)] for e in range(module.num_experts)]


def _gpt_oss_glu(module: nn.Module, gate_up: torch.Tensor) -> torch.Tensor:
    gate = gate_up[..., ::2].clamp(max=module.limit)
    up = gate_up[..., 1::2].clamp(-module.limit, module.limit)
    return (up + 1) * gate * torch.sigmoid(gate * module.alpha)


def _llama4_routed(module: nn.Module, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    # every expert gets every token, scaled by its router score: 0 for the tokens not routed to it
    hidden = args[0].view(module.num_experts, -1, module.hidden_size)
    return [h[h.abs().amax(-1) > 0] for h in hidden]


def _llama4_glu(module: nn.Module, gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return up * module.act_fn(gate)


@dataclass(frozen=True)
class FusedExperts:
    """How one fused-expert module class stores and feeds its experts."""

    first: str  # the matrix applied to the routed tokens ([E, in, out])
    second: str  # the matrix applied to glu(first's output)
    biases: tuple[tuple[str, str], ...]  # (matrix, its bias parameter [E, out])
    routed: Callable[[nn.Module, tuple, dict], list[torch.Tensor]]  # forward's inputs -> rows expert e receives
    glu: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # first's output (bias added) -> second's input

    @property
    def matrices(self) -> tuple[str, str]:
        return (self.first, self.second)

    def bias(self, module: nn.Module, matrix: str) -> torch.Tensor | None:
        name = dict(self.biases).get(matrix)
        return None if name is None else getattr(module, name)

    def expert_inputs(self, module: nn.Module, args: tuple, kwargs: dict) -> list[dict[str, torch.Tensor]]:
        """Per expert, the input rows each of its matrices sees in this forward call (float weights)."""
        inputs = []
        first_bias = self.bias(module, self.first)
        for e, x in enumerate(self.routed(module, args, kwargs)):
            gate_up = x @ getattr(module, self.first)[e]
            if first_bias is not None:
                gate_up = gate_up + first_bias[e]
            inputs.append({self.first: x, self.second: self.glu(module, gate_up)})
        return inputs


FUSED_EXPERTS: dict[str, FusedExperts] = {
    "GptOssExperts": FusedExperts("gate_up_proj", "down_proj",
                                  (("gate_up_proj", "gate_up_proj_bias"), ("down_proj", "down_proj_bias")),
                                  _gpt_oss_routed, _gpt_oss_glu),
    "Llama4TextExperts": FusedExperts("gate_up_proj", "down_proj", (), _llama4_routed, _llama4_glu),
}


def fused_experts(model: nn.Module) -> dict[str, tuple[nn.Module, FusedExperts]]:
    """Every fused-expert module by path, with its registered layout."""
    return {name: (mod, FUSED_EXPERTS[type(mod).__name__]) for name, mod in model.named_modules()
            if type(mod).__name__ in FUSED_EXPERTS}


def expert_key(path: str, matrix: str, expert: int) -> str:
    """The key of expert EXPERT's matrix MATRIX of the fused module at PATH."""
    return f"{path}.{matrix}.{expert}"


def expert_matrix(module: nn.Module, matrix: str, expert: int) -> torch.Tensor:
    """Expert EXPERT's [out, in] matrix (a view of the stored [E, in, out] parameter)."""
    return getattr(module, matrix)[expert].T


def moe_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """Every module holding an `experts` attribute (an MoE block), by path."""
    return {name: mod for name, mod in model.named_modules() if isinstance(getattr(mod, EXPERTS_ATTR, None),
                                                                            nn.Module)}


def router_names(model: nn.Module) -> set[str]:
    """Linears of an MoE block that are neither experts nor shared experts: routers and gates (kept float)."""
    names = set()
    for block_name, block in moe_blocks(model).items():
        for rel, mod in block.named_modules():
            parts = rel.split(".")
            if isinstance(mod, nn.Linear) and parts[0] != EXPERTS_ATTR and not parts[0].startswith(SHARED_PREFIX):
                names.add(f"{block_name}.{rel}" if block_name else rel)
    return names


def expert_of(name: str) -> str | None:
    """The expert a Linear (of an `experts` ModuleList) or a fused key belongs to, as 'block.experts.E', else None."""
    parts = name.split(".")
    if EXPERTS_ATTR in parts[:-1]:
        i = len(parts) - 1 - parts[::-1].index(EXPERTS_ATTR)
        if i + 1 < len(parts) and parts[i + 1].isdigit():
            return ".".join(parts[:i + 2])
        if i + 2 < len(parts) and parts[-1].isdigit():  # fused key: block.experts.matrix.E
            return ".".join([*parts[:i + 1], parts[-1]])
    return None
