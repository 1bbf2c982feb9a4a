"""Each algorithm against plain round-to-nearest at the same format on the real SmolLM2-135M (slow).

The bundled weights are llama.cpp Q4_1 (32-element blocks with a minimum), so formats coarser than that
lose accuracy under RTN (perplexity ratio to fp32 about 1.29 at INT4 g128): the gap the calibrated
algorithms close. The calibration-free ones (hqq-*, mse-*) lower the weights' own error but not reliably
the perplexity (2048 tokens, fp32 13.14; INT4 g128: RTN 16.97, HQQ 18.88, MSE 17.71; INT4 g64: RTN 16.77,
HQQ 16.25), so they are not asserted to beat it.
"""

from __future__ import annotations

import copy

import pytest

from retarget.eval.corpus import corpus_text
from retarget.eval.metrics import Evaluator, torch_logits_fn
from retarget.quantize import calibration_tokens, collect_stats, config_from_name, quantize_
from retarget.quantize.api import linear_layers

TOKENS = 2048
FORMAT = "int4-g128-asym"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def evaluator(smollm2):
    ev = Evaluator(smollm2.tokenizer(corpus_text(), add_special_tokens=False)["input_ids"][:TOKENS], window=1024)
    ev.reference(torch_logits_fn(smollm2.model))
    return ev


@pytest.fixture(scope="module")
def stats(smollm2):
    model = smollm2.model
    return collect_stats(model, calibration_tokens(smollm2.tokenizer), linear_layers(model, include_lm_head=False))


def _score(smollm2, evaluator, stats, recipe: str):
    model = copy.deepcopy(smollm2.model)
    quantize_(model, config_from_name(recipe), stats=stats)
    return evaluator.score(torch_logits_fn(model), recipe)


@pytest.fixture(scope="module")
def rtn(smollm2, evaluator, stats):
    return _score(smollm2, evaluator, stats, FORMAT)


@pytest.mark.parametrize("recipe", [f"gptq-{FORMAT}", f"gptq-{FORMAT}-actorder", f"awq-{FORMAT}", f"awq-gptq-{FORMAT}"])
def test_better_than_round_to_nearest(smollm2, evaluator, stats, rtn, recipe: str) -> None:
    score = _score(smollm2, evaluator, stats, recipe)
    assert score.perplexity < rtn.perplexity
    assert score.kl_to_reference < rtn.kl_to_reference
