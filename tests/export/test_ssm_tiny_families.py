"""The tiny DeepSeek-V3, Kimi K2, LongCat-Flash, Falcon-H1 and Jamba models (retarget.models.tiny) through compile's own
export and verification (retarget.eval.verify): logit parity against the torch quantized model, a 64-step
cached decode against transformers' decode, 32 greedy tokens; with int4-g128-asym and an FP8 recipe. The
cache ORT holds matches ModelSpec's per-token assumption."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from retarget.eval.corpus import corpus_text
from retarget.eval.verify import DECODE_STEPS, GREEDY_TOKENS, PARITY_ATOL, remove_parity_copies, verify_artifact
from retarget.export.decoder import describe
from retarget.export.decoder.blocks import MoE
from retarget.export.onnx_export import export_artifact
from retarget.hw_profiles import load_profile
from retarget.models.spec import ModelSpec
from retarget.models.tiny import build_tiny, tiny_tokenizer
from retarget.plan import plan_recipe
from retarget.quantize import quantize_
from retarget.quantize.api import quantized_weights, untie_lm_head

FAMILIES = ("deepseek-v3", "kimi-k2", "falcon-h1", "jamba", "longcat-flash")


@pytest.mark.parametrize(("name", "recipe"), [(name, recipe) for name in FAMILIES
                                              for recipe in ("int4-g128-asym", "fp8-channel")])
def test_tiny_family_compiles_and_verifies(tmp_path: Path, name: str, recipe: str) -> None:
    model = build_tiny(name)
    untie_lm_head(model)
    plan = plan_recipe(recipe, load_profile("cpu-x86"), has_source_blocks=False)
    quantized = copy.deepcopy(model)
    quantize_(quantized, plan.weights)
    qweights = quantized_weights(quantized)
    info = export_artifact(model, quantized, qweights, plan, tmp_path)
    assert info["lowered"] > 0
    moe_blocks = [getattr(layer.mlp, "moe", layer.mlp) for layer in describe(model).layers]  # LongCat: a Shortcut's
    assert info["moe_nodes"] == sum(isinstance(b, MoE) for b in moe_blocks)  # one node per MoE layer, not per expert
    tokens = tiny_tokenizer()(corpus_text(), add_special_tokens=False)["input_ids"][:200]
    runtime, report = verify_artifact(quantized, plan, tmp_path, tokens)  # raises when out of tolerance
    remove_parity_copies(tmp_path)
    assert report["parity_max_abs_logit_diff"]["value"] <= PARITY_ATOL
    decode = report["decode"]
    assert decode["steps"] == DECODE_STEPS and decode["greedy_tokens"] == GREEDY_TOKENS and decode["greedy_equal"]
    runtime.generate(tokens[:10], 4)
    spec = ModelSpec.from_hf_config(model.config.to_dict())
    assert runtime.cache_bytes_per_token() == spec.kv_cache_bytes_per_token(4)
