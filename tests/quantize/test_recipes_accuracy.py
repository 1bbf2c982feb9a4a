"""Accuracy of each weight recipe on the real SmolLM2-135M, in torch, against its float32 model.

Reference points measured before this project on ~32k tokens of Python docstrings (issue #2):
fp32 perplexity 14.5, plain RTN INT4 asymmetric g64 18.8 and g128 19.7, INT8 per-row 14.54. Our corpus
is a different docstring set, so the bounds are the same *ratios* to fp32.
"""

from __future__ import annotations

import copy

import pytest

from retarget.eval.corpus import corpus_text
from retarget.eval.metrics import Evaluator, torch_logits_fn
from retarget.quantize import config_from_name, quantize_

TOKENS = 2048
BOUNDS = {  # recipe -> largest allowed perplexity / fp32 perplexity
    "int8-channel-sym": 1.02,
    "int4-g64-asym": 18.8 / 14.5,
    "int4-g128-asym": 19.7 / 14.5,
    "keep": 1.0 + 1e-6,
}


@pytest.fixture(scope="module")
def evaluator(smollm2):
    tokens = smollm2.tokenizer(corpus_text(), add_special_tokens=False)["input_ids"][:TOKENS]
    ev = Evaluator(tokens, window=1024)
    ev.fp32 = ev.reference(torch_logits_fn(smollm2.model))
    return ev


@pytest.mark.parametrize("recipe", list(BOUNDS))
def test_recipe_perplexity_bound(smollm2, evaluator, recipe: str) -> None:
    model = copy.deepcopy(smollm2.model)
    replaced = quantize_(model, config_from_name(recipe), smollm2.source_weights)
    assert replaced == 211  # 30 layers x 7 projections + lm_head
    score = evaluator.score(torch_logits_fn(model), recipe)
    ratio = score.perplexity / evaluator.fp32.perplexity
    assert ratio <= BOUNDS[recipe], f"{recipe}: ppl {score.perplexity:.3f} vs fp32 {evaluator.fp32.perplexity:.3f}"
    if recipe == "keep":
        assert score.kl_to_reference < 1e-5  # the GGUF's own blocks: the same model (reference kept in fp16)
    else:
        assert score.kl_to_reference > 0
