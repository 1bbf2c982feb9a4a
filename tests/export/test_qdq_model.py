"""Each QDQ lowering on the real SmolLM2-135M: ONNX Runtime's CPU provider against the torch quantized model
(logits over 128 tokens of the evaluation text), as `retarget compile` checks it. Slow: one export each."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from retarget.eval.corpus import corpus_text
from retarget.eval.metrics import torch_logits_fn
from retarget.eval.verify import PARITY_ATOL, PARITY_TOKENS
from retarget.export.activations import activation_quant
from retarget.export.onnx_export import MODEL_FILE, export_quantized
from retarget.export.qdq import write_reference_dequantized
from retarget.export.runtime import OrtCausalLM
from retarget.models.load import load_model
from retarget.plan import plan_recipe
from retarget.plan.recipe import runs_on_cpu
from retarget.quantize import QuantLinear, calibration_tokens, config_from_name, quantize_
from retarget.quantize.api import ties_embedding, untie_lm_head

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():  # noqa: ANN201
    loaded = load_model("default")
    untie_lm_head(loaded.model)
    return loaded


@pytest.mark.parametrize(("recipe", "target", "lowering"), [
    ("int8-channel-sym", "cpu-x86", "qdq-int8"), ("int4-g64-asym", "cpu-x86", "qdq-blocked"),
    ("keep", "cpu-x86", "qdq-blocked"), ("fp8-block128", "h100-sxm", "qdq-fp8"),
    pytest.param("w8a8-smoothquant", "cpu-x86", "qdq-int8", marks=pytest.mark.xfail(
        reason="per-token INT8 rounding flips amplify over 30 layers (measured 2.9; exact for one layer)")),
    ("nvfp4", "b200", "qdq-fp4"),
])
def test_lowered_model_matches_torch(smollm2, recipe: str, target: str, lowering: str, tmp_path: Path) -> None:  # noqa: ANN001
    from retarget.hw_profiles import load_profile

    plan = plan_recipe(recipe, load_profile(target), has_source_blocks=True, lowering="qdq")
    assert plan.lowering == lowering
    quantized = copy.deepcopy(smollm2.model)
    calibration = calibration_tokens(smollm2.tokenizer) if plan.weights.needs_calibration else None
    quantize_(quantized, config_from_name(recipe), smollm2.source_weights, calibration=calibration)
    qweights = {name: m.qweight for name, m in quantized.named_modules() if isinstance(m, QuantLinear)}
    info = export_quantized(smollm2.model, qweights, tmp_path, tied_embedding=ties_embedding(quantized),
                            lowering=plan.lowering, activations=activation_quant(quantized))
    assert info["dequantize_linear_nodes"] >= len(qweights) and info["matmulnbits_nodes"] == 0
    path = tmp_path / MODEL_FILE
    if not runs_on_cpu(plan.lowering):
        path = write_reference_dequantized(path, tmp_path / "check.onnx")
    ids = torch.tensor([smollm2.tokenizer(corpus_text(), add_special_tokens=False)["input_ids"][:PARITY_TOKENS]])
    with torch.inference_mode():
        expected = torch_logits_fn(quantized)(ids)
    got = OrtCausalLM(path, qdq_accuracy_level=0).logits(ids)
    assert (got - expected).abs().max().item() <= PARITY_ATOL
