"""Perplexity and next-token KL divergence against a reference model, in fixed non-overlapping windows.

Each window of `window` tokens is scored on its own (no carried context); perplexity is
exp(mean NLL) over every predicted token; KL is mean over positions of KL(P_ref || P_candidate).
The reference's log-probabilities are kept in float16 (a 4k-token evaluation holds 0.4 GB) so that
candidates scored later (torch, then ONNX Runtime) compare against the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from rich.progress import Progress

# (input_ids [1, L] int64) -> logits [L, vocab] float32
LogitsFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Score:
    """The result of scoring one model on the evaluation windows."""

    perplexity: float
    kl_to_reference: float | None
    tokens: int

    def to_dict(self) -> dict[str, float | int | None]:
        return {"perplexity": self.perplexity, "kl_to_reference": self.kl_to_reference, "tokens": self.tokens}


class Evaluator:
    """Scores models on TOKENS split into windows; the first model scored with `reference` sets P_ref."""

    def __init__(self, tokens: list[int], window: int = 1024) -> None:
        usable = len(tokens) - len(tokens) % window if len(tokens) >= window else len(tokens)
        ids = torch.tensor(tokens[:usable], dtype=torch.long)
        self.windows = list(ids.split(window))
        self._reference: list[torch.Tensor] = []

    @property
    def predicted_tokens(self) -> int:
        return sum(len(w) - 1 for w in self.windows)

    # no_grad, not inference_mode: tensor-subclass weights (optimum-quanto's int4) fail under inference_mode
    # ("Cannot set version_counter for inference tensor", torch 2.13, quanto 0.2.7)
    @torch.no_grad()
    def reference(self, logits_fn: LogitsFn, label: str = "reference", progress: Progress | None = None) -> Score:
        """Score the reference model and keep its log-probabilities."""
        self._reference = []
        return self._run(logits_fn, label, progress, keep=True)

    @torch.no_grad()
    def score(self, logits_fn: LogitsFn, label: str, progress: Progress | None = None) -> Score:
        """Perplexity of a candidate and its KL to the reference."""
        if not self._reference:
            raise RuntimeError("score the reference first")
        return self._run(logits_fn, label, progress, keep=False)

    def _run(self, logits_fn: LogitsFn, label: str, progress: Progress | None, keep: bool) -> Score:
        task = progress.add_task(f"evaluate {label}", total=len(self.windows)) if progress else None
        nll_sum, kl_sum, count = 0.0, 0.0, 0
        for i, window in enumerate(self.windows):
            logp = torch.log_softmax(logits_fn(window[None]).float()[:-1], dim=-1)
            targets = window[1:]
            nll_sum -= logp.gather(1, targets[:, None]).sum().item()
            count += len(targets)
            if keep:
                self._reference.append(logp.half())
            else:
                ref = self._reference[i].float()
                kl_sum += (ref.exp() * (ref - logp)).sum().item()
            if progress and task is not None:
                progress.advance(task)
        return Score(math.exp(nll_sum / count), None if keep else kl_sum / count, count)


def torch_logits_fn(model: torch.nn.Module) -> LogitsFn:
    """LogitsFn of a transformers causal LM on the CPU."""

    def run(ids: torch.Tensor) -> torch.Tensor:
        return model(input_ids=ids, use_cache=False).logits[0]

    return run
