"""Mixture-of-experts lowering: the router as one MatMul, every expert of the layer in ONE com.microsoft.MoE
node (ONNX Runtime picks the top-k experts per token, runs them, and sums their outputs by routing weight).

ORT's CPU MoE (measured on 1.32): softmax over the router logits, top-k, optionally renormalized
(normalize_routing_weights); activation 'swiglu' with gate/up interleaved in fc1 (swiglu_fusion=1, the only
layout the CPU kernel takes): gate * sigmoid(alpha * gate) * (up + beta), with swiglu_limit clamping as
gpt-oss; per-expert biases on both matmuls. Sigmoid routing normalized over the top k is softmax routing of
log(sigmoid(logits)). Experts the recipe quantized to int4 with a power-of-two group (symmetric or integer
zero points) go into QMoE, which reads MatMulNBits' packing (4-bit codes two per byte, scales per block,
uint8 zero points). FP8 (E4M3) experts stay one-byte codes: each step gathers the experts its tokens route to
(TopK, Unique), decodes their codes by value table and group scales, and runs MoE over those only (ORT does not
constant-fold a DequantizeLinear feeding MoE, so dequantizing every expert each step would cost E / k times
more; ONNX's Gather takes no float8 tensor, hence uint8 codes and the table). Other formats are dequantized into
MoE (float experts, exact but not smaller).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import torch
from onnx import TensorProto

from retarget.export.decoder.blocks import MoE
from retarget.export.decoder.fusion import fuse_rows
from retarget.export.decoder.graph import array
from retarget.export.decoder.mlp import GatedMlpLowering
from retarget.export.decoder.registry import Unsupported, lowers
from retarget.export.matmulnbits import pack_matmulnbits
from retarget.quantize.float_formats import value_table
from retarget.quantize.weight import QuantizedWeight

if TYPE_CHECKING:
    from retarget.export.decoder.build import DecoderGraph


Weight = torch.Tensor | QuantizedWeight  # one expert matrix, [out, in]: float, or the recipe's quantized codes


def _rows(w: Weight, order: torch.Tensor) -> Weight:
    """W with its output rows in ORDER (quantization is per row, so rows move with their scales)."""
    if isinstance(w, torch.Tensor):
        return w[order]
    return dataclasses.replace(w, codes=w.codes[order], scale=w.scale[order], zero=w.zero[order])


def _stack_rows(parts: list[Weight]) -> Weight:
    """PARTS one above the other (float if any part is float, or their formats differ). The scales of row
    blocks (FP8 128 x 128) are held per row already, so stacked parts keep them as per-row scales."""
    if all(isinstance(p, QuantizedWeight) for p in parts):
        fused = fuse_rows([dataclasses.replace(p, block_rows=1) for p in parts])
        if fused is not None:
            return fused
    return torch.cat([_float(p) for p in parts])


def _float(w: Weight) -> torch.Tensor:
    return w.detach().float() if isinstance(w, torch.Tensor) else w.dequantize().float()


def _interleave(rows: int) -> torch.Tensor:
    """The row order that turns [gate | up] (ROWS rows) into gate and up rows interleaved (g0, u0, g1, ...)."""
    half = torch.arange(rows // 2)
    return torch.stack([half, half + rows // 2], dim=1).flatten()


def expert_weights(g: DecoderGraph, block: MoE) -> tuple[list[Weight], list[Weight], dict[str, torch.Tensor | None]]:
    """fc1 (gate and up rows interleaved, [2I, H]) and fc2 ([H, I]) of each expert of BLOCK, quantized where the
    recipe quantized them (consumed from the graph's pending quantized weights), and the experts' biases
    (fc1 interleaved [E, 2I], fc2 [E, H]) if any."""
    experts, path = block.module.experts, f"{block.path}.experts"

    def weight(key: str, value: torch.Tensor) -> Weight:
        return g.qweights.pop(key, None) or value.detach().float()

    if block.fused_experts is None:
        gate, up, down = block.expert_names
        experts = experts[:block.experts]  # LongCat's zero-computation (identity) experts follow the real ones
        fc1 = [_stack_rows([weight(f"{path}.{e}.{gate}", getattr(m, gate).weight),
                            weight(f"{path}.{e}.{up}", getattr(m, up).weight)]) for e, m in enumerate(experts)]
        fc2 = [weight(f"{path}.{e}.{down}", getattr(m, down).weight) for e, m in enumerate(experts)]
        return [_rows(w, _interleave(w.shape[0])) for w in fc1], fc2, {"fc1_bias": None, "fc2_bias": None}
    count = experts.gate_up_proj.shape[0]
    fc1 = [weight(f"{path}.gate_up_proj.{e}", experts.gate_up_proj[e].T) for e in range(count)]
    fc2 = [weight(f"{path}.down_proj.{e}", experts.down_proj[e].T) for e in range(count)]
    bias = getattr(experts, "gate_up_proj_bias", None)
    if block.fused_experts == "halves":  # [gate | up] -> interleaved rows
        fc1 = [_rows(w, _interleave(w.shape[0])) for w in fc1]
        bias = None if bias is None else bias[:, _interleave(bias.shape[1])]
    return fc1, fc2, {"fc1_bias": bias, "fc2_bias": getattr(experts, "down_proj_bias", None)}


def qmoe_block_size(weights: list[Weight]) -> int | None:
    """The block size QMoE can carry WEIGHTS in (all int4 with one power-of-two group size >= 16 that tiles
    their K, and one kind of zero point: none or integer), or None: they go into MoE as float."""
    if not all(isinstance(w, QuantizedWeight) for w in weights):
        return None
    kinds = {(w.element, w.bits, w.group_size, w.block_rows, w.symmetric, w.integer_zero) for w in weights}
    if len(kinds) != 1:
        return None
    element, bits, group, block_rows, symmetric, integer_zero = kinds.pop()
    fits = all(w.shape[1] % group == 0 for w in weights)
    if element != "int" or bits != 4 or block_rows != 1 or group < 16 or group & (group - 1) or not fits:
        return None  # ORT 1.32's CPU QMoE: 8-bit experts measured wrong here (max |diff| 0.14 vs dequantized)
    return group if symmetric or integer_zero else None


def fp8_group(weights: list[Weight]) -> int | None:
    """The group size FP8 experts are gathered in (all E4M3, one group size that tiles K or spans it), or None."""
    groups = {w.group_size if isinstance(w, QuantizedWeight) and w.element == "e4m3" else None for w in weights}
    group = groups.pop() if len(groups) == 1 else None
    k = weights[0].shape[1]
    return group if group is not None and all(w.shape[1] == k for w in weights) and (
        group >= k or k % group == 0) else None


def _used_experts(g: DecoderGraph, block: MoE, logits: str) -> str:
    """The experts any row of LOGITS routes to (its top k), ascending, int64 [U]."""
    scope = f"{block.path}.experts"
    top = g.op("TopK", [logits, g.const(f"{scope}.k", np.array([block.top_k], np.int64))],
               [f"/{block.path}/routed_logits", f"/{block.path}/routed_experts"], scope, axis=-1)[1]
    flat = g.op("Reshape", [top, g.const("flat_shape", np.array([-1], np.int64))], [f"/{block.path}/routed"],
                scope)[0]
    return g.op("Unique", [flat], [f"/{block.path}/used_experts"], scope, sorted=1)[0]


def _fp8_rows(g: DecoderGraph, weights: list[QuantizedWeight], used: str, name: str) -> str:
    """The USED experts of WEIGHTS as float [U, N, K]: their E4M3 codes (stored uint8 [E, N, K]: ONNX's Gather
    takes no float8 tensor) gathered, decoded by value table and times their group scales."""
    codes = np.stack([w.codes.numpy() for w in weights])
    scales = np.stack([w.scale.numpy() for w in weights])[..., None]  # [E, N, G, 1]
    experts, n, k = codes.shape
    groups = scales.shape[2]
    table = g.const("e4m3_values", array(value_table("e4m3")))
    picked = g.op("Gather", [g.const(f"{name}.e4m3_codes", codes), used], [f"/{name}/codes"], name, axis=0)[0]
    index = g.op("Cast", [picked], [f"/{name}/code_index"], name, to=TensorProto.INT32)[0]
    values = g.op("Gather", [table, index], [f"/{name}/values"], name, axis=0)[0]
    values = g.op("Reshape", [values, g.const(f"{name}.grouped", np.array([-1, n, groups, k // groups], np.int64))],
                  [f"/{name}/grouped"], name)[0]
    scale = g.op("Gather", [g.const(f"{name}.scales", scales), used], [f"/{name}/scales"], name, axis=0)[0]
    scaled = g.op("Mul", [values, scale], [f"/{name}/scaled"], name)[0]
    return g.op("Reshape", [scaled, g.const(f"{name}.shape", np.array([-1, n, k], np.int64))],
                [f"/{name}/weights"], name)[0]


def _packed(weights: list[Weight]) -> dict[str, np.ndarray | None]:
    """QMoE's weights [E, N, K/2], scales [E, N, K/block] and zero points (uint8, packed like MatMulNBits)."""
    packs = [pack_matmulnbits(w) for w in weights]
    zero = None if packs[0].zero_points is None else np.stack([p.zero_points.reshape(p.n, -1) for p in packs])
    return {"weights": np.stack([p.b.reshape(p.n, -1) for p in packs]),
            "scales": np.stack([p.scales.reshape(p.n, -1) for p in packs]), "zero_points": zero}


def _sigmoid_routing(g: DecoderGraph, block: MoE, logits: str) -> str:
    """Router logits for MoE's softmax that reproduce normalized sigmoid routing: log(sigmoid(logits)) (softmax
    of it over the chosen k is sigmoid / sum of the chosen sigmoids). With a correction bias or expert groups,
    ONNX Runtime's MoEGroupRouter chooses (by score plus bias, within the topk_groups groups whose two best
    choice scores sum highest: DeepSeek-V3's noaux_tc) and writes -1e30 at the experts not chosen; measured on
    ORT 1.32's CPU provider: the same choice as transformers' DeepseekV3TopkRouter, log-scores within 3e-7."""
    path = f"{block.path}.router"
    if not block.correction_bias and block.groups == 1:
        scores = g.op("Sigmoid", [logits], [f"/{path}/sigmoid"], path)[0]
        return g.op("Log", [scores], [f"/{path}/log_sigmoid"], path)[0]
    router = block.module.get_submodule(block.router)
    bias = getattr(router, "e_score_correction_bias", None) if block.correction_bias else None
    bias = np.zeros(block.experts, np.float32) if bias is None else array(bias)
    return g.op("MoEGroupRouter", [logits, g.const(f"{path}.correction_bias", bias)], [f"/{path}/routed"], path,
                n_group=block.groups, topk_group=block.topk_groups, top_k=block.top_k, group_topk=2,
                router_sentinel=-1e30)[0]


@lowers(MoE)
class MoELowering:
    def check(self, block: MoE, layer: int, kv_cache: str | None) -> None:
        if block.activation not in ("silu", "swiglu_clamp"):
            raise Unsupported(f"layer {layer}: MoE expert activation {block.activation!r} of {block.path} has no "
                              "lowering (ORT's CPU MoE runs SwiGLU)", field="hidden_act")
        if block.scale_input and block.top_k != 1:
            raise Unsupported(f"layer {layer}: routing weights applied to the expert input with top-{block.top_k} "
                              f"({block.path}); one MoE node takes one input per token (top-1 only)", field="router")
        if block.routing == "sigmoid" and not block.normalize and not block.scale_input:
            raise Unsupported(f"layer {layer}: MoE routing by unnormalized sigmoid weights ({block.path}) has no "
                              "lowering yet", field="router")

    def __call__(self, g: DecoderGraph, block: MoE, x: str, layer: int) -> str:
        path, module = block.path, block.module
        hidden = int(module.experts.down_proj.shape[-1]) if block.fused_experts else \
            int(getattr(module.experts[0], block.expert_names[2]).weight.shape[0])
        rows = g.op("Reshape", [x, g.const(f"{path}.rows_shape", np.array([-1, hidden], np.int64))],
                    [f"/{path}/rows"], path)[0]
        router = module.get_submodule(block.router)
        logits = g.linear(rows, router.weight, f"{path}.{block.router}", getattr(router, "bias", None))
        if block.scale_input:  # top-1: the expert reads x * sigmoid(best logit), its output weighs 1
            best = g.op("ReduceMax", [logits, g.const("last_axis", np.array([-1], np.int64))], [f"/{path}/best"],
                        path, keepdims=1)[0]
            weight = g.op("Sigmoid", [best], [f"/{path}/input_weight"], path)[0]
            experts_in = g.op("Mul", [rows, weight], [f"/{path}/scaled_rows"], path)[0]
        elif block.routing == "sigmoid":
            logits = _sigmoid_routing(g, block, logits)
        out = self._experts(g, block, experts_in if block.scale_input else rows, logits)
        if block.scaling != 1.0:
            out = g.op("Mul", [out, g.const(f"{path}.scaling", np.array(block.scaling, np.float32))],
                       [f"/{path}/scaled"], f"{path}.scaling")[0]
        if block.shared is not None:
            shared = GatedMlpLowering()(g, block.shared, rows, layer)
            if block.shared_gate:
                gate = module.shared_expert_gate
                weight = g.op("Sigmoid", [g.linear(rows, gate.weight, f"{path}.shared_expert_gate", gate.bias)],
                              [f"/{path}/shared_weight"], f"{path}.shared_expert_gate")[0]
                shared = g.op("Mul", [shared, weight], [f"/{path}/shared_gated"], path)[0]
            out = g.op("Add", [out, shared], [f"/{path}/with_shared"], path)[0]
        shape = g.op("Shape", [x], [f"/{path}/shape"], f"{path}.shape")[0]
        return g.op("Reshape", [out, shape], [f"/{path}/output"], path)[0]

    @staticmethod
    def _experts(g: DecoderGraph, block: MoE, rows: str, logits: str) -> str:
        """All experts of BLOCK in one node: QMoE over int4 codes when the recipe's experts fit it, else MoE."""
        fc1, fc2, biases = expert_weights(g, block)
        scope = f"{block.path}.experts"
        bias = {k: "" if v is None else g.const(f"{scope}.{k}", array(v)) for k, v in biases.items()}
        attrs = {"k": block.top_k, "normalize_routing_weights": int(block.normalize), "activation_type": "swiglu",
                 "swiglu_fusion": 1, "activation_alpha": block.alpha,
                 "activation_beta": 1.0 if block.activation == "swiglu_clamp" else 0.0}
        if block.limit is not None:
            attrs["swiglu_limit"] = block.limit
        block_size = qmoe_block_size(fc1 + fc2)
        if block_size is None and (fp8_group(fc1) is None or fp8_group(fc2) is None):
            fc1_name = g.const(f"{scope}.fc1", np.stack([array(_float(w)) for w in fc1]))
            fc2_name = g.const(f"{scope}.fc2", np.stack([array(_float(w)) for w in fc2]))
            inputs = [rows, logits, fc1_name, bias["fc1_bias"], fc2_name, bias["fc2_bias"]]
            return g.op("MoE", inputs, [f"/{block.path}/experts"], scope, **attrs)[0]
        if block_size is None:  # FP8: MoE over the experts some row routes to, dequantized from their codes
            used = _used_experts(g, block, logits)
            subset = {"fc1": _fp8_rows(g, fc1, used, f"{scope}.fc1"), "fc2": _fp8_rows(g, fc2, used, f"{scope}.fc2"),
                      **{k: v and g.op("Gather", [v, used], [f"/{block.path}/used_{k}"], scope, axis=0)[0]
                         for k, v in bias.items()}}
            routed = g.op("Gather", [logits, used], [f"/{block.path}/used_logits"], scope, axis=1)[0]
            inputs = [rows, routed, subset["fc1"], subset["fc1_bias"], subset["fc2"], subset["fc2_bias"]]
            out = g.op("MoE", inputs, [f"/{block.path}/experts"], scope, **attrs | {"normalize_routing_weights": 1})[0]
            return out if block.normalize else _unnormalized(g, block, logits, out)
        packed = {"fc1": _packed(fc1), "fc2": _packed(fc2)}
        names = {f"{fc}.{k}": "" if v is None else g.const(f"{scope}.{fc}.{k}", v)
                 for fc, parts in packed.items() for k, v in parts.items()}
        inputs = [rows, logits, names["fc1.weights"], names["fc1.scales"], bias["fc1_bias"], names["fc2.weights"],
                  names["fc2.scales"], bias["fc2_bias"], "", "", "", names["fc1.zero_points"],
                  names["fc2.zero_points"]]
        while inputs[-1] == "":
            inputs.pop()
        out = g.op("QMoE", inputs, [f"/{block.path}/experts"], scope, **attrs, expert_weight_bits=4,
                   block_size=block_size)[0]
        # ORT 1.32's CPU QMoE renormalizes the top-k weights even at normalize_routing_weights=0 (measured: same
        # output for 0 and 1)
        return out if block.normalize else _unnormalized(g, block, logits, out)


def _unnormalized(g: DecoderGraph, block: MoE, logits: str, out: str) -> str:
    """OUT (experts weighted by top-k softmax weights renormalized over the k) times the top-k softmax mass over
    all of LOGITS: the weights unnormalized (the output is linear in them)."""
    scope = f"{block.path}.experts"
    probs = g.op("Softmax", [logits], [f"/{block.path}/routing_probs"], scope, axis=-1)[0]
    top = g.op("TopK", [probs, g.const(f"{scope}.k", np.array([block.top_k], np.int64))],
               [f"/{block.path}/top_probs", f"/{block.path}/top_experts"], scope, axis=-1)[0]
    mass = g.op("ReduceSum", [top, g.const("last_axis", np.array([-1], np.int64))], [f"/{block.path}/top_mass"],
                scope, keepdims=1)[0]
    return g.op("Mul", [out, mass], [f"/{block.path}/experts_unnormalized"], scope)[0]
