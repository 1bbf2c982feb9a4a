"""Float, W8A8 and KV-cache formats on the real SmolLM2-135M against its float32 model (slow).

Bounds are properties of the formats, not measured outputs: at 8 bits every format (3 or more mantissa bits,
or INT8's 255 levels) leaves at least 4x less noise than a 1-mantissa-bit E2M1 one (W8A8 quantizes weights
and activations: twice the sources, so 2x); NVFP4's finer blocks and
E4M3 scales fit better than MXFP4's power-of-two scales; SmoothQuant beats plain W8A8 on inputs with
outlier channels; an INT8 per-token KV cache stays within the bound tests/quantize/test_recipes_accuracy.py
sets INT8 weights from the issue's reference (14.54 / 14.5, with margin: 1.02).
"""

from __future__ import annotations

import copy

import pytest

from retarget.eval.corpus import corpus_text
from retarget.eval.metrics import Evaluator, Score, torch_logits_fn
from retarget.quantize import calibration_tokens, collect_stats, kv_logits_fn, quantize_, split_recipe
from retarget.quantize.api import linear_layers

TOKENS = 2048
EIGHT_BIT = ("fp8-tensor", "fp8-channel", "fp8-block128", "fp8-block128-ue8m0", "kv-int8", "kv-fp8")
W8A8 = ("w8a8-fp8", "w8a8-int8", "w8a8-smoothquant")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scores(smollm2) -> dict[str, Score]:
    ev = Evaluator(smollm2.tokenizer(corpus_text(), add_special_tokens=False)["input_ids"][:TOKENS], window=1024)
    out = {"fp32": ev.reference(torch_logits_fn(smollm2.model))}
    stats = collect_stats(smollm2.model, calibration_tokens(smollm2.tokenizer),
                          linear_layers(smollm2.model, include_lm_head=False))
    for recipe in (*EIGHT_BIT, *W8A8, "nvfp4", "mxfp4"):
        weights, kv = split_recipe(recipe)
        model = copy.deepcopy(smollm2.model)
        quantize_(model, weights, stats=stats)
        out[recipe] = ev.score(kv_logits_fn(model, kv), recipe)
    return out


@pytest.mark.parametrize("recipe", EIGHT_BIT)
def test_eight_bit_formats_far_closer_than_fp4(scores, recipe: str) -> None:
    assert 0 < scores[recipe].kl_to_reference < scores["nvfp4"].kl_to_reference / 4


@pytest.mark.parametrize("recipe", W8A8)
def test_w8a8_formats_far_closer_than_fp4(scores, recipe: str) -> None:
    assert 0 < scores[recipe].kl_to_reference < scores["nvfp4"].kl_to_reference / 2


def test_nvfp4_beats_mxfp4(scores) -> None:
    assert scores["nvfp4"].kl_to_reference < scores["mxfp4"].kl_to_reference
    assert scores["nvfp4"].perplexity < scores["mxfp4"].perplexity


def test_smoothquant_beats_plain_w8a8(scores) -> None:
    assert scores["w8a8-smoothquant"].kl_to_reference < scores["w8a8-int8"].kl_to_reference


def test_int8_kv_cache_within_int8_reference_ratio(scores) -> None:
    assert scores["kv-int8"].perplexity / scores["fp32"].perplexity <= 1.02  # as int8-channel-sym's bound
