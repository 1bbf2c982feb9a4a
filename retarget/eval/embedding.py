"""Accuracy of a quantized sentence encoder: cosine similarity of its sentence embeddings to the float model's.

The sentence set is fixed: the evaluation corpus (retarget.eval.corpus, Python docstrings) split into
sentences at '.', '!' or '?' followed by whitespace, whitespace collapsed, keeping sentences of 6 to 40
words, first occurrences only, in corpus order, the first SENTENCES of them. Embeddings pool token states
as the encoder's sentence-transformers config says (mean over non-padding tokens, or CLS), then
L2-normalize; the score is the mean (and minimum) over sentences of cos(candidate, reference).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import torch
import torch.nn.functional as F

from retarget.eval.corpus import EVAL_MODULES, corpus_text
from retarget.models.encoder import LoadedEncoder

SENTENCES = 128
MIN_WORDS, MAX_WORDS = 6, 40
BATCH = 64


@cache
def sentence_set(count: int = SENTENCES, modules: tuple[str, ...] = EVAL_MODULES) -> tuple[str, ...]:
    """The fixed evaluation sentences (see the module docstring)."""
    chosen: dict[str, None] = {}
    for raw in re.split(r"(?<=[.!?])\s+", corpus_text(modules)):
        sentence = " ".join(raw.split())
        if MIN_WORDS <= len(sentence.split()) <= MAX_WORDS:
            chosen.setdefault(sentence)
            if len(chosen) == count:
                break
    if len(chosen) < count:
        raise ValueError(f"the corpus has {len(chosen)} sentences of {MIN_WORDS}-{MAX_WORDS} words, fewer than {count}")
    return tuple(chosen)


@torch.no_grad()  # not inference_mode: see retarget.eval.metrics.Evaluator.reference
def embed(encoder: LoadedEncoder, sentences: tuple[str, ...] | list[str], model: torch.nn.Module | None = None,
          batch: int = BATCH) -> torch.Tensor:
    """Sentence embeddings [n, d] (float32) of SENTENCES by MODEL (default: the encoder's own float model)."""
    model = encoder.model if model is None else model
    out = []
    for start in range(0, len(sentences), batch):
        enc = encoder.tokenizer(list(sentences[start:start + batch]), padding=True, truncation=True,
                                max_length=encoder.max_seq_length, return_tensors="pt")
        states = model(**enc).last_hidden_state.float()
        if encoder.pooling == "cls":
            pooled = states[:, 0]
        else:
            mask = enc["attention_mask"][..., None].float()
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(F.normalize(pooled, dim=-1) if encoder.normalize else pooled)
    return torch.cat(out)


@dataclass
class CosineScore:
    """Cosine similarity of a candidate's sentence embeddings to the reference's."""

    mean_cosine: float
    min_cosine: float
    sentences: int

    def to_dict(self) -> dict[str, float | int]:
        return {"mean_cosine": self.mean_cosine, "min_cosine": self.min_cosine, "sentences": self.sentences}


class EmbeddingScorer:
    """Embeds the sentence set once with the float encoder, then scores candidate models against it."""

    def __init__(self, encoder: LoadedEncoder, sentences: tuple[str, ...] | None = None) -> None:
        self.encoder = encoder
        self.sentences = sentence_set() if sentences is None else sentences
        self.reference = embed(encoder, self.sentences)

    def score(self, model: torch.nn.Module) -> CosineScore:
        """Mean and minimum cosine of MODEL's embeddings to the float encoder's."""
        cos = F.cosine_similarity(embed(self.encoder, self.sentences, model), self.reference, dim=-1)
        return CosineScore(cos.mean().item(), cos.min().item(), len(self.sentences))
