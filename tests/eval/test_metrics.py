"""Perplexity and KL against analytic references, and the corpus contract."""

from __future__ import annotations

import pytest
import torch

from retarget.eval.corpus import CALIBRATION_MODULES, EVAL_MODULES, corpus_text, describe
from retarget.eval.metrics import Evaluator

VOCAB = 50


def constant_logits(row: torch.Tensor):
    return lambda ids: row.expand(ids.shape[1], -1).clone()


def test_uniform_model_has_vocab_perplexity() -> None:
    ev = Evaluator(list(range(40)) * 3, window=40)
    score = ev.reference(constant_logits(torch.zeros(VOCAB)))
    assert score.perplexity == pytest.approx(VOCAB, rel=1e-5)
    assert score.tokens == 3 * 39


def test_kl_matches_closed_form() -> None:
    ev = Evaluator([1, 2, 3, 4] * 8, window=16)
    p_logits = torch.randn(VOCAB, generator=torch.Generator().manual_seed(0))
    q_logits = torch.randn(VOCAB, generator=torch.Generator().manual_seed(1))
    ev.reference(constant_logits(p_logits))
    same = ev.score(constant_logits(p_logits), "same")
    other = ev.score(constant_logits(q_logits), "other")
    p, q = p_logits.log_softmax(0), q_logits.log_softmax(0)
    expected = (p.exp() * (p - q)).sum().item()
    assert same.kl_to_reference == pytest.approx(0, abs=1e-3)  # reference kept in float16
    assert other.kl_to_reference == pytest.approx(expected, rel=1e-2)


def test_corpus_is_large_fixed_and_disjoint() -> None:
    text = corpus_text()
    assert len(text) > 200_000  # well over 20k tokens at ~4 characters per token
    assert corpus_text() is text and describe()["sha256"] == describe()["sha256"]
    assert not set(EVAL_MODULES) & set(CALIBRATION_MODULES)
    assert corpus_text(CALIBRATION_MODULES) not in text
