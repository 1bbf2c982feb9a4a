"""LongCat-Flash: each transformers layer is two sublayers (MLA, dense MLP) whose first MLP input also feeds a
mixture of experts added after the second sublayer (the shortcut), and experts that include zero-computation
(identity) ones. Routing: softmax scores, the top k chosen by score plus a correction bias, weights the chosen
scores times routed_scaling_factor (not renormalized).

ONNX Runtime's MoE runs the real experts: it gets log(score) at the chosen real experts and -1e30 elsewhere with
normalize_routing_weights=1, so its weights are the chosen real scores over their sum; times that sum they are
the scores themselves. An identity expert adds x times its weight, so x times the chosen identity experts'
total weight is added beside the MoE node.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from retarget.export.decoder.blocks import Block, GatedMlp, MoE
from retarget.export.decoder.graph import array
from retarget.export.decoder.mlp import GatedMlpLowering
from retarget.export.decoder.moe import MoELowering
from retarget.export.decoder.registry import lowers

if TYPE_CHECKING:
    from retarget.export.decoder.build import DecoderGraph


@dataclass(frozen=True)
class ZeroExpertMoE(MoE):
    """An MoE whose router also scores ZERO_EXPERTS identity experts after the EXPERTS real ones."""

    zero_experts: int = 0


@dataclass(frozen=True)
class Shortcut(Block):
    """DENSE(x), and an MoE over the same input computed here (MOE set) or added here (MOE None) as the tensor
    named SHORTCUT."""

    dense: GatedMlp | None = None
    moe: ZeroExpertMoE | None = None
    shortcut: str = ""


@lowers(ZeroExpertMoE)
class ZeroExpertMoELowering(MoELowering):
    def __call__(self, g: DecoderGraph, block: ZeroExpertMoE, x: str, layer: int) -> str:
        path, module = block.path, block.module
        hidden = int(module.experts[0].down_proj.weight.shape[0])
        c = {k: g.const(f"{path}.{k}", v) for k, v in {
            "rows_shape": np.array([-1, hidden], np.int64), "k": np.array([block.top_k], np.int64),
            "split": np.array([block.experts, block.zero_experts], np.int64), "last": np.array([-1], np.int64),
            "one_hot": np.array([0.0, 1.0], np.float32), "depth": np.array(block.experts + block.zero_experts),
            "sentinel": np.array(-1e30, np.float32), "scaling": np.array(block.scaling, np.float32)}.items()}
        rows = g.op("Reshape", [x, c["rows_shape"]], [f"/{path}/rows"], path)[0]
        router = module.get_submodule(block.router)
        logits = g.linear(rows, router.weight, f"{path}.{block.router}", router.bias)
        scores = g.op("Softmax", [logits], [f"/{path}/scores"], path, axis=-1)[0]
        bias = g.const(f"{path}.correction_bias", array(module.router.e_score_correction_bias))
        biased = g.op("Add", [scores, bias], [f"/{path}/biased"], path)[0]
        chosen = g.op("TopK", [biased, c["k"]], [f"/{path}/top", f"/{path}/chosen"], path, axis=-1)[1]
        hot = g.op("OneHot", [chosen, c["depth"], c["one_hot"]], [f"/{path}/one_hot"], path, axis=-1)[0]
        mask = g.op("ReduceMax", [hot, g.const("one_axis", np.array([1], np.int64))], [f"/{path}/mask"], path,
                    keepdims=0)[0]
        weights = g.op("Mul", [scores, mask], [f"/{path}/weights"], path)[0]
        real, zero = g.op("Split", [weights, c["split"]], [f"/{path}/real", f"/{path}/zero"], path, axis=-1)
        real_mask = g.op("Split", [mask, c["split"]], [f"/{path}/real_mask", f"/{path}/zero_mask"], path,
                         axis=-1)[0]
        taken = g.op("Cast", [real_mask], [f"/{path}/taken"], path, to=9)[0]  # BOOL
        log = g.op("Log", [real], [f"/{path}/log_weights"], path)[0]
        moe_logits = g.op("Where", [taken, log, c["sentinel"]], [f"/{path}/moe_logits"], path)[0]
        experts = self._experts(g, dataclasses.replace(block, normalize=True), rows, moe_logits)
        mass = g.op("ReduceSum", [real, c["last"]], [f"/{path}/real_mass"], path, keepdims=1)[0]
        identity = g.op("ReduceSum", [zero, c["last"]], [f"/{path}/zero_mass"], path, keepdims=1)[0]
        out = g.op("Add", [g.op("Mul", [experts, mass], [f"/{path}/experts_weighted"], path)[0],
                           g.op("Mul", [rows, identity], [f"/{path}/identity"], path)[0]], [f"/{path}/sum"], path)[0]
        out = g.op("Mul", [out, c["scaling"]], [f"/{path}/scaled"], path)[0]
        shape = g.op("Shape", [x], [f"/{path}/shape"], f"{path}.shape")[0]
        return g.op("Reshape", [out, shape], [f"/{path}/output"], path)[0]


@lowers(Shortcut)
class ShortcutLowering:
    def check(self, block: Shortcut, layer: int, kv_cache: str | None) -> None:
        if block.moe is not None:
            ZeroExpertMoELowering().check(block.moe, layer, kv_cache)

    def __call__(self, g: DecoderGraph, block: Shortcut, x: str, layer: int) -> str:
        dense = GatedMlpLowering()(g, block.dense, x, layer)
        if block.moe is not None:
            ZeroExpertMoELowering()(g, block.moe, x, layer)
            return dense
        return g.op("Add", [dense, block.shortcut], [f"/{block.path}/with_shortcut"], block.path)[0]
