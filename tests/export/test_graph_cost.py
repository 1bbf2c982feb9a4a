"""The perf model's FLOPs per op class (retarget.perf.ops.step_costs, what `predict` costs) against the FLOPs the
compiled decoder graph runs (retarget.export.graph_cost, from the shapes ONNX Runtime ran each node at), for a
decode step after 40 cached tokens and a 12-token prompt, on the tiny MLA, Mamba-2, Mamba and GQA families:

* linear (projections, shared experts, routers, conv taps, MLA's absorbed W_UK / W_UV): the graph within 2.5%
  below the perf model, which counts every non-expert parameter (norm weights, biases, A, D) as one
  multiply-accumulate; head and routed experts (top-k) exactly;
* attention: exactly, except MLA prompts: the graph scores prompts in the absorbed form over every (query, key)
  pair, masked ones included, where the perf model decompresses the latent and counts causal pairs;
* scan: exactly (5 FLOPs per token and state element).

The counts are also checked by hand for one layer type each, and the int4 (MatMulNBits, QMoE) and FP8 (QDQ)
graphs of the same model must count what its float graph counts."""

from __future__ import annotations

import copy
from pathlib import Path

import onnx
import pytest
from torch import nn

from retarget.errors import RetargetError
from retarget.export.decoder import build_decoder
from retarget.export.graph_cost import graph_flops
from retarget.export.onnx_export import export_quantized
from retarget.models.spec import ModelSpec
from retarget.models.tiny import build_tiny
from retarget.perf.ops import Step, step_costs
from retarget.quantize import Fp8WeightConfig, Int4WeightOnlyConfig, QuantLinear, quantize_
from retarget.quantize.api import untie_lm_head

FAMILIES = ("deepseek-v3", "kimi-k2", "falcon-h1", "jamba", "qwen3", "minimax")
PAST, PROMPT = 40, 12
LINEAR_TOLERANCE = 0.025  # the perf model's extra MACs: norms, biases, A, D per layer (~2% of a tiny layer)


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[nn.Module, Path]]:
    """Each family's tiny model and its float decoder graph, built once for the module."""
    out = {}
    for name in FAMILIES:
        model = build_tiny(name)
        untie_lm_head(model)
        path = tmp_path_factory.mktemp(name) / "model.onnx"
        onnx.save_model(build_decoder(model)[0], str(path))
        out[name] = (model, path)
    return out


def perf_flops(model: nn.Module, step: Step) -> dict[str, float]:
    """step_costs' FLOPs by graph_cost's classes (linear attention's state is a scan there, attention here)."""
    costs = step_costs(ModelSpec.from_hf_config(model.config.to_dict()), step, 2, 2, 2, 2)
    return {"linear": costs["gemm"].flops, "head": costs["head"].flops,
            **{name: costs[name].flops for name in ("moe", "attention", "ssm") if name in costs}}


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize(("past", "new"), [(PAST, 1), (0, PROMPT)], ids=["decode", "prompt"])
def test_graph_flops_match_the_perf_model(graphs: dict, name: str, past: int, new: int) -> None:
    model, path = graphs[name]
    graph, perf = graph_flops(path, past, new), perf_flops(model, Step(1, new, past))
    assert 1 - LINEAR_TOLERANCE <= graph["linear"] / perf["linear"] <= 1.0
    assert graph["head"] == perf["head"] == 2 * model.config.vocab_size * model.config.hidden_size
    assert graph["moe"] == perf.get("moe", 0.0)
    if name == "minimax":  # lightning attention: the perf model's attention class, the graph's scan
        assert graph["attention"] + graph["scan"] == perf["attention"]
        return
    assert graph["scan"] == perf.get("ssm", 0.0)
    cfg = model.config
    if cfg.model_type == "deepseek_v3" and new > 1:  # absorbed, all new x total pairs; decompressed causal pairs
        latent = cfg.num_hidden_layers * 2 * cfg.num_attention_heads * (2 * cfg.kv_lora_rank + cfg.qk_rope_head_dim)
        assert graph["attention"] == latent * new * (past + new)
        per_pair = cfg.num_hidden_layers * 2 * cfg.num_attention_heads * (
            cfg.qk_nope_head_dim + cfg.qk_rope_head_dim + cfg.v_head_dim)
        assert perf["attention"] == per_pair * new * (new + 1) / 2
    else:
        assert graph["attention"] == perf["attention"]


def test_counts_by_hand(graphs: dict) -> None:
    """One decode step counted from the configs: GQA 4 * heads * head_dim per cached key, MLA absorbed
    2 * heads * (2 * kv_lora_rank + rope) per key, Mamba-2 and Mamba scans 5 per state element."""
    qwen = graphs["qwen3"][0].config
    assert graph_flops(graphs["qwen3"][1], PAST)["attention"] == \
        qwen.num_hidden_layers * 4 * qwen.num_attention_heads * qwen.head_dim * (PAST + 1)
    ds = graphs["deepseek-v3"][0].config
    assert graph_flops(graphs["deepseek-v3"][1], PAST)["attention"] == \
        ds.num_hidden_layers * 2 * ds.num_attention_heads * (2 * ds.kv_lora_rank + ds.qk_rope_head_dim) * (PAST + 1)
    falcon = graphs["falcon-h1"][0].config
    assert graph_flops(graphs["falcon-h1"][1], PAST)["scan"] == \
        falcon.num_hidden_layers * 5 * falcon.mamba_d_ssm * falcon.mamba_d_state
    jamba = graphs["jamba"][0].config
    mamba_layers = sum(t == "mamba" for t in jamba.layers_block_type)
    assert graph_flops(graphs["jamba"][1], PAST)["scan"] == \
        mamba_layers * 5 * jamba.mamba_expand * jamba.hidden_size * jamba.mamba_d_state


@pytest.mark.parametrize(("config", "lowering"), [(Int4WeightOnlyConfig(group_size=32), "matmulnbits"),
                                                 (Fp8WeightConfig(granularity="channel"), "qdq-fp8")],
                         ids=["int4-g32-matmulnbits-qmoe", "fp8-channel-qdq"])
def test_quantized_graph_counts_its_float_graph(graphs: dict, tmp_path: Path, config: object, lowering: str) -> None:
    """The same products through MatMulNBits and QMoE (int4) or DequantizeLinear -> MatMul / MoE (FP8)."""
    model, path = graphs["deepseek-v3"]
    quantized = copy.deepcopy(model)
    quantize_(quantized, config)
    qweights = {n: m.qweight for n, m in quantized.named_modules() if isinstance(m, QuantLinear)}
    info = export_quantized(model, qweights, tmp_path, lowering=lowering)
    assert info["qmoe_nodes" if lowering == "matmulnbits" else "dequantize_linear_nodes"] > 0
    for past, new in ((PAST, 1), (0, PROMPT)):
        assert graph_flops(tmp_path / "model.onnx", past, new) == graph_flops(path, past, new)


def test_a_graph_that_is_not_a_decoder_is_refused(tmp_path: Path) -> None:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["logits"], name="relu")], "g", [x],
                                   [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 4])])
    onnx.save_model(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 21)]),
                    str(tmp_path / "model.onnx"))
    with pytest.raises(RetargetError, match=r"inputs \['x'\] are not a retarget decoder's"):
        graph_flops(tmp_path / "model.onnx", PAST)
