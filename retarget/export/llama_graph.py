"""Build a Llama-architecture decoder directly as an ONNX graph of ONNX Runtime's fused contrib operators.

optimum's export traces the torch model into ~9k small nodes; at batch 1 decode ORT's per-node overhead
then costs more than the 4-bit matmuls. This builder writes the ~10 nodes per layer a Llama block needs
(https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md):

    h, x = SkipSimplifiedLayerNormalization(x, out, input_layernorm)   # residual add + RMSNorm (layer 0: no add)
    qkv = MatMul(h, [Wq | Wk | Wv])                                      # fused along N when lowerable as one
    a, present.i.key, present.i.value =
        GroupQueryAttention(qkv, past_key_values.i.key/value, seqlens_k, total_sequence_length, cos, sin)
    out = MatMul(a, Wo)
    h, x = SkipSimplifiedLayerNormalization(x, out, post_attention_layernorm)
    gate, up = Split(MatMul(h, [Wgate | Wup]))
    out = MatMul(QuickGelu(gate, alpha=1) * up, Wdown)                 # QuickGelu at alpha 1 is SiLU

GroupQueryAttention applies the rotary embedding itself (do_rotary, half-split like transformers'
rotate_half) from cos/sin tables of the model's own inv_freq and attention scaling, at positions
past_length + i (batch 1, or right-padded batches; left padding would shift them), and masks causally
from seqlens_k = sum(attention_mask) - 1. Inputs and outputs are named like optimum's export
(input_ids, attention_mask, past_key_values.N.key/value [B, kv_heads, past, head_dim] -> logits,
present.N.key/value), without position_ids, plus logits_to_keep (int64 [1]; 0: logits at every position,
k: the last k only, which is all generation needs: a prompt's lm_head then runs on one row instead of L).
The graph comes out in float32 with one MatMul per (fused) projection named like the exporter's, so the
weight lowerings (MatMulNBits, QDQ) replace them unchanged.
With kv_cache='int8' or 'e4m3' the cache is stored quantized instead (retarget.export.kv_cache_graph: codes
and per-row scales, rotary applied before GroupQueryAttention, the cache growing by concatenation).
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from retarget.export.kv_cache_graph import QuantizedCache, cache_io
from retarget.quantize.weight import QuantizedWeight

OPSET = 23  # RMSNormalization (layer 0 has no residual to add)
STATIC_ROPE_TYPES = {"default", "linear", "llama3"}  # inv_freq does not change with the sequence length
FUSED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}


def unsupported_reason(model: nn.Module) -> str | None:
    """Why MODEL cannot be built by this module (None: it can): a Llama decoder without biases, SiLU MLP,
    a static rotary embedding applied to the whole head."""
    cfg = getattr(model, "config", None)
    if cfg is None or cfg.model_type != "llama":
        return f"model type {getattr(cfg, 'model_type', None)!r} is not llama"
    rope = (getattr(cfg, "rope_scaling", None) or {}).get("rope_type", "default")
    checks = {"attention bias": getattr(cfg, "attention_bias", False), "MLP bias": getattr(cfg, "mlp_bias", False),
              f"activation {cfg.hidden_act}": cfg.hidden_act != "silu",
              f"rope type {rope}": rope not in STATIC_ROPE_TYPES,
              "partial rotary": getattr(cfg, "partial_rotary_factor", 1.0) != 1.0}
    return next((what for what, bad in checks.items() if bad), None)


def fuse_rows(parts: list[QuantizedWeight]) -> QuantizedWeight | None:
    """One QuantizedWeight with PARTS stacked along N (same input, outputs concatenated), or None when their
    formats differ (bits, groups, element, scale storage, zero-point kind) and they must stay separate."""
    first = parts[0]
    key = [(p.bits, p.group_size, p.element, p.scale_format, p.tensor_scale, p.block_rows, p.shape[1],
            p.symmetric, p.integer_zero) for p in parts]
    if len(set(key)) != 1 or first.block_rows != 1:
        return None
    return QuantizedWeight(torch.cat([p.codes for p in parts]), torch.cat([p.scale for p in parts]),
                           torch.cat([p.zero for p in parts]), first.bits, first.group_size, first.element,
                           first.scale_format, first.tensor_scale)


def fused_groups(prefixes: list[str], qweights: dict[str, QuantizedWeight]
                 ) -> tuple[set[str], dict[str, QuantizedWeight]]:
    """Which fused projections (e.g. 'model.layers.0.self_attn.qkv_proj') the graph uses, and QWEIGHTS
    renamed to match: a group fuses when all its parts are float, or all quantized in one format."""
    fused: set[str] = set()
    renamed = dict(qweights)
    for prefix in prefixes:
        for name, parts in FUSED.items():
            members = [f"{prefix}.{p}" for p in parts]
            if not all(m in qweights for m in members):
                if not any(m in qweights for m in members):
                    fused.add(f"{prefix}.{name}")
                continue
            stacked = fuse_rows([qweights[m] for m in members])
            if stacked is not None:
                fused.add(f"{prefix}.{name}")
                renamed[f"{prefix}.{name}"] = stacked
                for m in members:
                    del renamed[m]
    return fused, renamed


class _Builder:
    """Nodes and initializers of one graph, with exporter-style node names ('/model/layers.0/.../MatMul')."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], outputs: list[str], scope: str, **attrs) -> list[str]:
        domain = "" if op_type in _ONNX_OPS else "com.microsoft"
        path = "/" + scope.replace(".", "/") if scope else ""
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=f"{path}/{op_type}", domain=domain,
                                           **attrs))
        return outputs

    def linear(self, x: str, weight: torch.Tensor, module: str) -> str:
        """x @ weight.T as the MatMul a lowering looks for (module name from the node name)."""
        w = self.const(f"{module}.weight", np.ascontiguousarray(weight.detach().float().numpy().T))
        return self.op("MatMul", [x, w], [f"/{module}/output"], module)[0]


_ONNX_OPS = {"MatMul", "RMSNormalization", "Gather", "ReduceSum", "Sub", "Cast", "Shape", "Squeeze", "Split", "Mul",
             "Neg", "Slice", "Reshape", "Transpose", "Concat", "Abs", "ReduceMax", "Div", "Max", "Round", "Clip"}


def _projection(b: _Builder, x: str, module: nn.Module, prefix: str, group: str, fused: set[str]) -> list[str]:
    """The outputs of GROUP's projections (one fused output, or one per part)."""
    parts = FUSED[group]
    if f"{prefix}.{group}" in fused:
        weight = torch.cat([getattr(module, p).weight for p in parts])
        return [b.linear(x, weight, f"{prefix}.{group}")]
    return [b.linear(x, getattr(module, p).weight, f"{prefix}.{p}") for p in parts]


def _rotary_tables(model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin [max_positions, head_dim / 2] from the model's own rotary module (inv_freq, attention scaling)."""
    rotary = model.model.rotary_emb
    positions = torch.arange(model.config.max_position_embeddings, dtype=torch.float64)
    angles = positions[:, None] * rotary.inv_freq.double()[None, :]
    scale = float(getattr(rotary, "attention_scaling", 1.0))
    return ((angles.cos() * scale).float().numpy(), (angles.sin() * scale).float().numpy())


def llama_graph(model: nn.Module, qweights: dict[str, QuantizedWeight] | None = None,
                kv_cache: str | None = None) -> tuple[onnx.ModelProto, dict[str, QuantizedWeight]]:
    """MODEL (a transformers LlamaForCausalLM, float weights) as a float32 ONNX decoder with KV cache, and
    QWEIGHTS renamed to the graph's fused projections, ready for `lower_weights` / `lower_matmuls`.
    KV_CACHE ('int8' or 'e4m3'; None: float32) stores the cache quantized (retarget.export.kv_cache_graph)."""
    cfg = model.config
    layers = model.model.layers
    heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    prefixes = [p for i in range(len(layers)) for p in (f"model.layers.{i}.self_attn", f"model.layers.{i}.mlp")]
    fused, renamed = fused_groups(prefixes, qweights or {})
    eps = float(cfg.rms_norm_eps)
    b = _Builder()

    # sequence bookkeeping for GroupQueryAttention: seqlens_k = tokens so far - 1, total = mask length
    b.op("ReduceSum", ["attention_mask", b.const("one_axis", np.array([1], np.int64))], ["/mask_sum"], "", keepdims=0)
    b.op("Sub", ["/mask_sum", b.const("one", np.array(1, np.int64))], ["/seqlens_k64"], "")
    b.op("Cast", ["/seqlens_k64"], ["seqlens_k"], "seqlens", to=TensorProto.INT32)
    b.op("Shape", ["attention_mask"], ["/mask_len"], "", start=1, end=2)
    b.op("Squeeze", ["/mask_len"], ["/total64"], "")
    b.op("Cast", ["/total64"], ["total_sequence_length"], "total", to=TensorProto.INT32)
    cos, sin = _rotary_tables(model)
    b.const("cos_cache", cos)
    b.const("sin_cache", sin)
    quantized = QuantizedCache(b, kv_cache, heads, kv_heads, head_dim) if kv_cache else None

    table = b.const("model.embed_tokens.weight", model.model.embed_tokens.weight.detach().float().numpy())
    x = b.op("Gather", [table, "input_ids"], ["/model/embed_tokens/output"], "model.embed_tokens")[0]
    out = None
    for i, layer in enumerate(layers):
        scope = f"model.layers.{i}"
        norm = b.const(f"{scope}.input_layernorm.weight", layer.input_layernorm.weight.detach().float().numpy())
        if out is None:
            h = b.op("RMSNormalization", [x, norm], [f"/{scope}/input_norm"], f"{scope}.input_layernorm",
                     epsilon=eps, axis=-1)[0]
        else:
            h, x = b.op("SkipSimplifiedLayerNormalization", [out, x, norm],
                        [f"/{scope}/input_norm", "", "", f"/{scope}/residual_attn"],
                        f"{scope}.input_layernorm", epsilon=eps)[::3]
        attn = f"{scope}.self_attn"
        qkv = _projection(b, h, layer.self_attn, attn, "qkv_proj", fused)
        if quantized:
            a = quantized.attention(qkv, i, attn, float(layer.self_attn.scaling))
        else:
            gqa_inputs = [*qkv, "", ""] if len(qkv) == 1 else qkv
            a = b.op("GroupQueryAttention",
                     [*gqa_inputs, f"past_key_values.{i}.key", f"past_key_values.{i}.value", "seqlens_k",
                      "total_sequence_length", "cos_cache", "sin_cache"],
                     [f"/{attn}/attention", f"present.{i}.key", f"present.{i}.value"], attn,
                     num_heads=heads, kv_num_heads=kv_heads, do_rotary=1, rotary_interleaved=0,
                     scale=float(layer.self_attn.scaling))[0]
        out = b.linear(a, layer.self_attn.o_proj.weight, f"{attn}.o_proj")
        norm = b.const(f"{scope}.post_attention_layernorm.weight",
                       layer.post_attention_layernorm.weight.detach().float().numpy())
        h, x = b.op("SkipSimplifiedLayerNormalization", [out, x, norm],
                    [f"/{scope}/post_norm", "", "", f"/{scope}/residual_mlp"],
                    f"{scope}.post_attention_layernorm", epsilon=eps)[::3]
        mlp = f"{scope}.mlp"
        gate_up = _projection(b, h, layer.mlp, mlp, "gate_up_proj", fused)
        if len(gate_up) == 1:  # ORT's CPU provider has no SwiGLU kernel
            gate_up = b.op("Split", [gate_up[0]], [f"/{mlp}/gate", f"/{mlp}/up"], mlp, axis=-1, num_outputs=2)
        silu = b.op("QuickGelu", [gate_up[0]], [f"/{mlp}/silu"], mlp, alpha=1.0)[0]  # x * sigmoid(1.0 * x)
        act = b.op("Mul", [silu, gate_up[1]], [f"/{mlp}/act"], mlp)[0]
        out = b.linear(act, layer.mlp.down_proj.weight, f"{mlp}.down_proj")
    norm = b.const("model.norm.weight", model.model.norm.weight.detach().float().numpy())
    h = b.op("SkipSimplifiedLayerNormalization", [out, x, norm], ["/model/norm/output"], "model.norm",
             epsilon=eps)[0]
    # logits_to_keep (int64 [1], 0 = all): only the last positions reach lm_head, as in transformers
    b.op("Neg", ["logits_to_keep"], ["/first_kept"], "")
    h = b.op("Slice", [h, "/first_kept", b.const("to_end", np.array([np.iinfo(np.int64).max], np.int64)),
                       "one_axis"], ["/model/norm/kept"], "model.norm")[0]
    head = model.get_output_embeddings()
    b.nodes.append(helper.make_node("MatMul", [h, b.const("lm_head.weight",
                                                           np.ascontiguousarray(head.weight.detach().float().numpy().T))],
                                    ["logits"], name="/lm_head/MatMul"))

    if quantized:
        past_inputs, present_outputs = cache_io(len(layers), kv_heads, head_dim, kv_cache)
    else:
        past = ["batch_size", kv_heads, "past_sequence_length", head_dim]
        present = ["batch_size", kv_heads, "total_sequence_length", head_dim]
        kv = [(f"past_key_values.{i}.{t}", f"present.{i}.{t}") for i in range(len(layers)) for t in ("key", "value")]
        past_inputs = [helper.make_tensor_value_info(p, TensorProto.FLOAT, past) for p, _ in kv]
        present_outputs = [helper.make_tensor_value_info(p, TensorProto.FLOAT, present) for _, p in kv]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64,
                                            ["batch_size", "total_sequence_length"]),
              *past_inputs,
              helper.make_tensor_value_info("logits_to_keep", TensorProto.INT64, [1])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                             ["batch_size", "kept_length", cfg.vocab_size]),
               *present_outputs]
    graph = helper.make_graph(b.nodes, "llama", inputs, outputs, b.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid("com.microsoft", 1)])
    proto.ir_version = 11
    return proto, renamed
