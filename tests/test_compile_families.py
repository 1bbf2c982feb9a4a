"""Every tiny family through the compile pipeline's export and verification (retarget.export.onnx_export /
retarget.eval.verify, the steps `retarget compile` runs between quantization and the report), with int4-g128-asym
(MatMulNBits) and fp8-channel (QDQ, FP8 experts dequantized into MoE): logit parity with transformers, a 64-step
KV-cache decode that crosses every 16-token window / chunk checked against transformers' DynamicCache decode, 32
greedy tokens equal to transformers', nodes per layer, and one fused node per MoE layer. The full `compile_model`
(evaluation, speed, report) runs once, and unsupported inputs end in one line with nothing written."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest
import torch

from retarget.errors import RetargetError
from retarget.eval.verify import PARITY_ATOL, verify_artifact
from retarget.export.decoder import describe
from retarget.export.decoder.blocks import MoE
from retarget.export.onnx_export import export_artifact
from retarget.hw_profiles import load_profile
from retarget.models.tiny import build_tiny, load_tiny
from retarget.plan import plan_recipe
from retarget.quantize import quantize_
from retarget.quantize.api import quantized_weights, untie_lm_head

FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "qwen3-moe", "mixtral", "glm-4.5", "gpt-oss", "gemma-3", "llama-4",
            "phi-3", "olmoe", "olmo-2", "hunyuan", "minimax"]
RECIPES = ["int4-g128-asym", "fp8-channel"]
CASES = [(name, recipe) for name in FAMILIES for recipe in RECIPES]
# the most nodes a layer takes: attention + MLP ~10; q/k norms, biases, sandwich norms, rotary outside
# GroupQueryAttention and GLM's group-limited routing add standard ops, never a node per expert
MAX_NODES_PER_LAYER = 40
# an FP8 MoE layer adds a fixed decode of the experts a step routes to (TopK, Unique, per matrix a code gather,
# value-table gather and scaling, logit and bias gathers, the top-k mass without renormalization), not per expert
FP8_MOE_NODES = 24


@pytest.fixture(autouse=True)
def one_torch_thread():
    """ORT and torch alternate step by step in the decode check; on a shared 2-core machine torch's second thread
    only waits for ORT's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def _tokens_cached() -> tuple[int, ...]:
    """The evaluation corpus's first 256 tokens (every tiny family shares the SmolLM2 tokenizer)."""
    from retarget.eval.corpus import corpus_text
    from retarget.models.tiny import tiny_tokenizer

    return tuple(tiny_tokenizer()(corpus_text()[:4000], add_special_tokens=False)["input_ids"][:256])


def _tokens() -> list[int]:
    return list(_tokens_cached())


def _export_and_verify(name: str, recipe: str, folder: Path,
                       model: torch.nn.Module | None = None) -> tuple[torch.nn.Module, dict, dict]:
    """Tiny family NAME (or MODEL) quantized with RECIPE, exported and verified as `retarget compile` does: the
    float model, export_artifact's summary and verify_artifact's entries."""
    plan = plan_recipe(recipe, load_profile("cpu-x86"), has_source_blocks=False)
    reference = model if model is not None else load_tiny(name).model
    untie_lm_head(reference)
    quantized = copy.deepcopy(reference)
    quantize_(quantized, plan.weights)
    qweights = quantized_weights(quantized)
    info = export_artifact(reference, quantized, qweights, plan, folder)
    return reference, info, verify_artifact(quantized, plan, folder, _tokens())[1]


@pytest.mark.parametrize(("name", "recipe"), CASES)
def test_family_exports_and_verifies(name: str, recipe: str, tmp_path: Path) -> None:
    reference, info, verification = _export_and_verify(name, recipe, tmp_path)

    assert verification["parity_max_abs_logit_diff"]["value"] <= PARITY_ATOL
    decode = verification["decode"]
    assert decode["steps"] == 64 and decode["max_abs_logit_diff"]["value"] <= PARITY_ATOL
    windows = [w for layer in describe(reference).layers
               for w in (getattr(layer.mixer, "window", None), getattr(layer.mixer, "chunk", None)) if w]
    assert decode["prompt"] + decode["steps"] > max(windows, default=0)  # the decode crosses every window
    assert decode["greedy_equal"], decode  # tiny models' lm_head keeps greedy margins far above float noise
    layers = describe(reference).layers
    moe_layers = sum(isinstance(layer.mlp, MoE) for layer in layers)
    fp8_nodes = FP8_MOE_NODES * moe_layers / len(layers) if recipe.startswith("fp8") else 0
    assert info["nodes_per_layer"] <= MAX_NODES_PER_LAYER + fp8_nodes
    assert info["moe_nodes"] == moe_layers  # every expert of a layer in one MoE / QMoE node


@pytest.mark.parametrize("name", ["mixtral", "qwen3-moe", "gpt-oss", "llama-4", "hunyuan", "minimax"])
def test_int4_experts_go_into_qmoe(name: str, tmp_path: Path) -> None:
    """int4 with a group that tiles every expert matrix: the experts stay 4-bit inside QMoE, and the artifact
    matches the torch model quantized the same way."""
    reference, info, verification = _export_and_verify(name, "int4-g32-sym", tmp_path)
    moe_layers = sum(isinstance(layer.mlp, MoE) for layer in describe(reference).layers)
    assert info["qmoe_nodes"] == moe_layers > 0
    assert verification["parity_max_abs_logit_diff"]["value"] <= PARITY_ATOL
    assert verification["decode"]["greedy_equal"]


def test_minimax_residual_factors(tmp_path: Path) -> None:
    """MiniMax's residual is each block's normalized input times alpha, plus the block's output times beta (the
    tiny config has them all 1; the released models do not): distinct factors per layer kind, still in parity."""
    model = build_tiny("minimax")
    factors = {"linear_attn": (1.7, 0.6), "full_attn": (0.8, 1.3), "mlp": (1.4, 0.7)}
    for kind, (alpha, beta) in factors.items():
        setattr(model.config, f"{kind}_alpha_factor", alpha)
        setattr(model.config, f"{kind}_beta_factor", beta)
    for layer in model.model.layers:
        kind = "linear_attn" if layer.layer_type == "linear_attention" else "full_attn"
        layer.attn_alpha_factor, layer.attn_beta_factor = factors[kind]
        layer.mlp_alpha_factor, layer.mlp_beta_factor = factors["mlp"]
    _, _, verification = _export_and_verify("minimax", "fp8-channel", tmp_path, model)
    assert verification["parity_max_abs_logit_diff"]["value"] <= PARITY_ATOL
    decode = verification["decode"]
    assert decode["max_abs_logit_diff"]["value"] <= PARITY_ATOL and decode["greedy_equal"]


def test_compile_tiny_moe_end_to_end(tmp_path: Path) -> None:
    """`compile_model('tiny:mixtral')`: the report carries verification, nodes per layer and speed."""
    from retarget.compile import compile_model

    report = compile_model("tiny:mixtral", recipe="int4-g128-asym", out=tmp_path / "mixtral", eval_tokens=128)
    assert report["onnx"]["moe_nodes"] == 2 and report["onnx"]["nodes_per_layer"] == 10
    assert report["ort"]["decode"]["greedy_equal"]
    assert report["ort"]["decode_tokens_per_s"]["value"] > 0
    assert "KV-cache decode vs transformers" in (tmp_path / "mixtral" / "report.md").read_text()


def test_unsupported_op_stops_before_writing(tmp_path: Path) -> None:
    """A quantized KV cache on gpt-oss (sliding windows and sinks live inside GroupQueryAttention, which that
    cache bypasses): one line naming the layer and the op, exit 2, no output folder."""
    from typer.testing import CliRunner

    from retarget.cli import app

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["compile", "tiny:gpt-oss", "--recipe", "int4-g128-asym+kv-int8",
                                      "--out", str(out)])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]  # after the load bar
    assert len(errors) == 1 and "layer 0" in errors[0] and "sliding window" in errors[0], result.output
    assert "Traceback" not in result.output and not out.exists()


def test_unknown_model_type_is_refused() -> None:
    model = build_tiny("llama")
    model.config.model_type = "rwkv"  # a transformers family no describer names
    with pytest.raises(RetargetError, match="model_type 'rwkv' has no decoder graph"):
        describe(model)
