"""Build a decoder-only causal LM as one ONNX graph of ONNX Runtime's fused operators, layer by layer from its
block descriptions (retarget.export.decoder.families) through the registered lowerings.

Per layer a Llama-like model becomes ~10 nodes
(https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md):

    h, x = SkipSimplifiedLayerNormalization(x, out, input_layernorm)   # residual add + RMSNorm (layer 0: no add)
    a, present.i.key, present.i.value = GroupQueryAttention(MatMul(h, [Wq | Wk | Wv]), past.i.key/value, ...)
    h, x = SkipSimplifiedLayerNormalization(x, MatMul(a, Wo), post_attention_layernorm)
    out = MatMul(act(gate) * up, Wdown)  |  MoE(h, router logits, experts)    # a MoE layer is one node

Inputs and outputs are named like optimum's export (input_ids, attention_mask, past_key_values.N.key/value
[B, kv_heads, past, head_dim] -> logits, present.N.key/value), without position_ids, plus logits_to_keep
(int64 [1]; 0: logits at every position, k: the last k only). Positions are past_length + i (batch 1, or
right-padded batches), seqlens_k = sum(attention_mask) - 1. The graph comes out in float32 with one MatMul
per (fused) projection named like the exporter's, so the weight lowerings (MatMulNBits, QDQ) replace them
unchanged. With kv_cache 'int8' or 'e4m3' the cache is stored quantized (retarget.export.kv_cache_graph).
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from retarget.export.decoder import attention, families, families_mla_ssm, lightning, mlp, moe  # noqa: F401  (register)
from retarget.export.decoder.blocks import Block, Decoder, Norm, Rope
from retarget.export.decoder.cache import cache_io
from retarget.export.decoder.fusion import FUSED, fused_groups
from retarget.export.decoder.graph import GraphBuilder, array
from retarget.export.decoder.hybrid import _scale
from retarget.export.decoder.registry import FAMILIES, Unsupported, lowering_for
from retarget.export.kv_cache_graph import QuantizedCache
from retarget.export.kv_cache_graph import cache_io as quantized_cache_io
from retarget.quantize.weight import QuantizedWeight

OPSET = 23  # RMSNormalization


def describe(model: nn.Module) -> Decoder:
    """MODEL's block descriptions (Unsupported, one line, for a model_type no family describes)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    describer = FAMILIES.get(model_type)
    if describer is None:
        raise Unsupported(f"model_type {model_type!r} has no decoder graph (supported: {', '.join(sorted(FAMILIES))})",
                          field="model_type")
    return describer(model)


def check(model: nn.Module, kv_cache: str | None = None) -> Decoder:
    """Describe MODEL and check every block has a lowering that can write it; raises Unsupported naming the
    op and the layer, before anything is built."""
    decoder = describe(model)
    for layer in decoder.layers:
        for block in (layer.mixer, layer.mlp):
            lowering_for(block, layer.index).check(block, layer.index, kv_cache)
    return decoder


class DecoderGraph(GraphBuilder):
    """The graph under construction, with what lowerings share: the fused projections, the rotary tables,
    the sequence bookkeeping inputs (seqlens_k, total_sequence_length), a quantized cache if any, and the
    quantized weights still to be lowered by MatMul name (a lowering that consumes some, MoE's experts, pops
    them)."""

    def __init__(self, model: nn.Module, fused: set[str], qweights: dict[str, QuantizedWeight]) -> None:
        super().__init__()
        self.model, self.fused, self.qweights = model, fused, qweights
        self.kv_cache: QuantizedCache | None = None
        self.outputs: set[str] = set()  # shared values already written (positions, masks), by tensor name
        self.max_positions = int(model.config.max_position_embeddings)

    def projection(self, x: str, block: Block, group: str) -> list[str]:
        """The outputs of GROUP ('qkv_proj', 'gate_up_proj') of BLOCK: one output when the model stores it fused
        or its parts fuse (retarget.export.decoder.fusion), else one per part."""
        module, prefix = block.module, block.path
        if isinstance(getattr(module, group, None), nn.Linear):
            linear = getattr(module, group)
            return [self.linear(x, linear.weight, f"{prefix}.{group}", linear.bias)]
        parts = [getattr(module, p) for p in FUSED[group]]
        if f"{prefix}.{group}" in self.fused:
            biases = [p.bias for p in parts]
            bias = None if biases[0] is None else torch.cat(biases)
            return [self.linear(x, torch.cat([p.weight for p in parts]), f"{prefix}.{group}", bias)]
        return [self.linear(x, p.weight, f"{prefix}.{name}", p.bias) for p, name in zip(parts, FUSED[group],
                                                                                        strict=True)]

    def rope_tables(self, rope: Rope) -> tuple[str, str]:
        """cos, sin [max_positions, dim / 2] of ROPE's rotary module (its inv_freq and attention scaling)."""
        name = rope.path.replace(".", "_")
        if f"{name}.cos" not in self._names:
            rotary = self.model.get_submodule(rope.path)
            positions = torch.arange(self.max_positions, dtype=torch.float64)
            angles = positions[:, None] * rotary.inv_freq.double()[None, :]
            scale = float(getattr(rotary, "attention_scaling", 1.0))
            self.const(f"{name}.cos", (angles.cos() * scale).float().numpy())
            self.const(f"{name}.sin", (angles.sin() * scale).float().numpy())
        return f"{name}.cos", f"{name}.sin"

    def first_position(self) -> str:
        """int64 [1]: the position of the first new token (total_sequence_length - sequence_length), for
        RotaryEmbedding; right for both the growing cache and the preallocated one (whose past holds max_length)."""
        if "/first_position" not in self.outputs:
            length = self.op("Shape", ["input_ids"], ["/sequence_length"], "first_position", start=1, end=2)[0]
            total = self.op("Shape", ["attention_mask"], ["/total_length"], "first_position", start=1, end=2)[0]
            self.op("Sub", [total, length], ["/first_position"], "first_position")
            self.outputs.add("/first_position")
        return "/first_position"

    def norm_weight(self, norm: Norm) -> str:
        return self.const(f"{norm.path}.weight", array(norm.weight) + np.float32(norm.offset))

    def norm(self, x: str, norm: Norm) -> str:
        return self.op("RMSNormalization", [x, self.norm_weight(norm)], [f"/{norm.path}/output"], norm.path,
                       epsilon=norm.eps, axis=-1)[0]

    def add_norm(self, residual: str, out: str | None, norm: Norm | None) -> tuple[str, str]:
        """(NORM(residual + OUT), residual + OUT) in one SkipSimplifiedLayerNormalization (OUT None: no add;
        NORM None: the sum itself, as the block's input)."""
        if norm is None:
            if out is None:
                return residual, residual
            total = self.op("Add", [residual, out], [f"{out}/residual"], out.strip("/").replace("/", "."))[0]
            return total, total
        if out is None:
            return self.norm(residual, norm), residual
        h, _, _, x = self.op("SkipSimplifiedLayerNormalization", [out, residual, self.norm_weight(norm)],
                             [f"/{norm.path}/output", "", "", f"/{norm.path}/residual"], norm.path, epsilon=norm.eps)
        return h, x


def _sequence_inputs(g: DecoderGraph) -> None:
    """seqlens_k = tokens so far - 1 (int32 [B]) and total_sequence_length (int32 scalar) for GroupQueryAttention."""
    g.op("ReduceSum", ["attention_mask", g.const("one_axis", np.array([1], np.int64))], ["/mask_sum"], "", keepdims=0)
    g.op("Sub", ["/mask_sum", g.const("one", np.array(1, np.int64))], ["/seqlens_k64"], "")
    g.op("Cast", ["/seqlens_k64"], ["seqlens_k"], "seqlens", to=TensorProto.INT32)
    g.op("Shape", ["attention_mask"], ["/mask_len"], "", start=1, end=2)
    g.op("Squeeze", ["/mask_len"], ["/total64"], "")
    g.op("Cast", ["/total64"], ["total_sequence_length"], "total", to=TensorProto.INT32)


def _io(decoder: Decoder, kv_cache: str | None) -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
    if kv_cache:
        first = decoder.layers[0].mixer
        past_inputs, present_outputs = quantized_cache_io(len(decoder.layers), first.kv_heads, first.head_dim,
                                                          kv_cache)
    else:  # what each layer's lowering declares it caches (retarget.export.decoder.cache)
        past_inputs, present_outputs = cache_io(decoder)
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64,
                                            ["batch_size", "total_sequence_length"]),
              *past_inputs, helper.make_tensor_value_info("logits_to_keep", TensorProto.INT64, [1])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                             ["batch_size", "kept_length", decoder.vocab_size]), *present_outputs]
    return inputs, outputs


def build_decoder(model: nn.Module, qweights: dict[str, QuantizedWeight] | None = None,
                  kv_cache: str | None = None) -> tuple[onnx.ModelProto, dict[str, QuantizedWeight]]:
    """MODEL (a transformers causal LM, float weights) as a float32 ONNX decoder with KV cache, and QWEIGHTS
    renamed to the graph's fused projections, ready for `lower_weights`. KV_CACHE ('int8' or 'e4m3'; None:
    float32) stores the cache quantized. Raises Unsupported (one line: op and layer) for what no lowering
    can write."""
    decoder = check(model, kv_cache)
    prefixes = [b.path for layer in decoder.layers for b in (layer.mixer, layer.mlp)]
    prefixes += [layer.mlp.shared.path for layer in decoder.layers if getattr(layer.mlp, "shared", None)]
    fused, renamed = fused_groups(prefixes, qweights or {})
    first = decoder.layers[0].mixer
    g = DecoderGraph(model, fused, renamed)
    if kv_cache:
        g.kv_cache = QuantizedCache(g, kv_cache, first.heads, first.kv_heads, first.head_dim)
    _sequence_inputs(g)

    embedding = model.get_input_embeddings()
    table = g.const(f"{decoder.embedding}.weight", array(embedding.weight))
    x = g.op("Gather", [table, "input_ids"], [f"/{decoder.embedding}/output"], decoder.embedding)[0]
    if decoder.embed_scale is not None:
        x = g.op("Mul", [x, g.const("embed_scale", np.array(decoder.embed_scale, np.float32))],
                 [f"/{decoder.embedding}/scaled"], f"{decoder.embedding}.scale")[0]
    out = None
    for layer in decoder.layers:
        scales = layer.normed_residual or (None,) * 4
        for block, pre, post, (alpha, beta) in ((layer.mixer, layer.pre_mixer, layer.post_mixer, scales[:2]),
                                                (layer.mlp, layer.pre_mlp, layer.post_mlp, scales[2:])):
            h, x = g.add_norm(x, out, pre)
            out = lowering_for(block, layer.index)(g, block, h, layer.index)
            if post is not None:
                out = g.norm(out, post)
            if layer.normed_residual is not None:  # the residual continues from the normalized input
                x, out = _scale(g, h, alpha, "alpha", block.path), _scale(g, out, beta, "beta", block.path)
    h, _ = g.add_norm(x, out, decoder.final_norm)
    # logits_to_keep (int64 [1], 0 = all): only the last positions reach lm_head, as in transformers
    g.op("Neg", ["logits_to_keep"], ["/first_kept"], "")
    h = g.op("Slice", [h, "/first_kept", g.const("to_end", np.array([np.iinfo(np.int64).max], np.int64)),
                       "one_axis"], [f"/{decoder.final_norm.path}/kept"], decoder.final_norm.path)[0]
    head = model.get_output_embeddings()
    logits = "logits" if decoder.logit_softcap is None else "/lm_head/logits"
    g.op("MatMul", [h, g.const("lm_head.weight", np.ascontiguousarray(array(head.weight).T))], [logits], "lm_head")
    if decoder.logit_softcap is not None:  # cap * tanh(logits / cap)
        cap = g.const("logit_softcap", np.array(decoder.logit_softcap, np.float32))
        g.op("Mul", [g.op("Tanh", [g.op("Div", [logits, cap], ["/lm_head/over_cap"], "lm_head.softcap")[0]],
                          ["/lm_head/tanh"], "lm_head.softcap")[0], cap], ["logits"], "lm_head.softcap")

    inputs, outputs = _io(decoder, kv_cache)
    graph = helper.make_graph(g.nodes, decoder.model_type, inputs, outputs, g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid("com.microsoft", 1)])
    proto.ir_version = 11
    return proto, g.qweights


def unsupported_reason(model: nn.Module, kv_cache: str | None = None) -> str | None:
    """Why MODEL cannot be built as a decoder graph (None: it can)."""
    try:
        check(model, kv_cache)
    except Unsupported as err:
        return str(err)
    return None
