"""Calibration: per-Linear input statistics from one pass of the float model over calibration text.

For each Linear with input X [T, K] (all calibration tokens), forward pre-hooks accumulate
    H = X^T X        float32 [K, K]  (GPTQ's Hessian up to a factor 2/T; AWQ's output-error metric:
                                      ||dW X^T||^2 = tr(dW H dW^T))
    mean |x_k|, max |x_k| per input channel [K]  (AWQ, SmoothQuant)
Linears fed the same tensor in consecutive calls (q/k/v, gate/up in a Llama block) share one LayerStats.
Experts see only the tokens routed to them: an `experts` ModuleList through its Linears' own hooks, a fused
3-D expert module (retarget.quantize.experts) through a hook that splits its input per expert, keyed
`{module}.{matrix}.{e}`. An expert no calibration token reaches gets no statistics (quantize_ falls back to RTN
for it and counts it); any other layer left unreached is an error.
The text is the calibration corpus (retarget.eval.corpus.CALIBRATION_MODULES), disjoint from the
evaluation text. Only the decoder body runs (no lm_head: its logits would cost more than the layers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from rich.progress import Progress
from torch import nn

from retarget.quantize.experts import expert_key, expert_of, fused_experts

# 16 x 512 = 8k tokens (GPTQ's usual is 128 x 2048): the Hessians of SmolLM2-135M's widest input (1536)
# have full rank, and one pass stays within minutes on 2 CPU cores (measured: 286 s on 2 cores shared with
# other jobs at load ~10, one torch thread).
DEFAULT_SEQUENCES = 16
DEFAULT_SEQ_LEN = 512
BATCH = 4


@dataclass
class LayerStats:
    """Input statistics of one Linear over the calibration tokens."""

    hessian: torch.Tensor  # [K, K] float32, sum over tokens of x x^T
    abs_sum: torch.Tensor  # [K] float32, sum over tokens of |x|
    abs_max: torch.Tensor  # [K] float32
    tokens: int = 0
    names: list[str] = field(default_factory=list)  # the Linears that read this input

    @classmethod
    def empty(cls, k: int) -> LayerStats:
        return cls(torch.zeros(k, k), torch.zeros(k), torch.zeros(k))

    @property
    def abs_mean(self) -> torch.Tensor:
        return self.abs_sum / max(self.tokens, 1)

    def add(self, x: torch.Tensor) -> None:
        """Accumulate a batch of inputs [..., K]."""
        x = x.detach().reshape(-1, x.shape[-1]).float()
        self.hessian.addmm_(x.T, x)
        self.abs_sum += x.abs().sum(0)
        self.abs_max = torch.maximum(self.abs_max, x.abs().amax(0))
        self.tokens += x.shape[0]


def calibration_tokens(tokenizer, sequences: int = DEFAULT_SEQUENCES, seq_len: int = DEFAULT_SEQ_LEN) -> list[int]:
    """The first SEQUENCES * SEQ_LEN tokens of the calibration corpus."""
    from retarget.eval.corpus import CALIBRATION_MODULES, corpus_text

    ids = tokenizer(corpus_text(CALIBRATION_MODULES), add_special_tokens=False)["input_ids"]
    need = sequences * seq_len
    if len(ids) < need:
        raise ValueError(f"the calibration corpus has {len(ids)} tokens, fewer than {sequences} x {seq_len}")
    return ids[:need]


def _body(model: nn.Module) -> nn.Module:
    """The decoder without its lm_head (transformers' base_model), or the model itself."""
    return getattr(model, "base_model", model)


@torch.no_grad()  # not inference_mode: the statistics stay ordinary tensors
def collect_stats(model: nn.Module, tokens: list[int], layers: dict[str, nn.Linear],
                  seq_len: int = DEFAULT_SEQ_LEN, progress: Progress | None = None) -> dict[str, LayerStats]:
    """Run MODEL once over TOKENS (cut into sequences of SEQ_LEN) and return the input statistics of LAYERS."""
    if len(tokens) < seq_len:
        raise ValueError(f"need at least {seq_len} calibration tokens, got {len(tokens)}")
    ids = torch.tensor(tokens[: len(tokens) - len(tokens) % seq_len], dtype=torch.long).view(-1, seq_len)
    stats: dict[str, LayerStats] = {}
    last: list[tuple[torch.Tensor, LayerStats] | None] = [None]  # the previous hook's input and its stats

    def hook(name: str):
        def fn(module: nn.Module, args: tuple) -> None:
            x = args[0]
            if x.numel() == 0:  # an expert called with no routed tokens: it stays unreached
                return
            if name not in stats:  # first call (an expert may first be reached in a later batch)
                prev = last[0]
                shared = prev is not None and prev[0] is x
                stats[name] = prev[1] if shared else LayerStats.empty(x.shape[-1])
                stats[name].names.append(name)
            last[0] = (x, stats[name])
            if stats[name].names[0] == name:  # a sibling reading the same input counts it otherwise
                stats[name].add(x)
        return fn

    def fused_hook(path: str, layout):
        def fn(module: nn.Module, args: tuple, kwargs: dict) -> None:
            for e, inputs in enumerate(layout.expert_inputs(module, args, kwargs)):
                for matrix, x in inputs.items():
                    if len(x):
                        key = expert_key(path, matrix, e)
                        if key not in stats:
                            stats[key] = LayerStats.empty(x.shape[-1])
                            stats[key].names.append(key)
                        stats[key].add(x)
        return fn

    handles = [layer.register_forward_pre_hook(hook(name)) for name, layer in layers.items()]
    handles += [mod.register_forward_pre_hook(fused_hook(path, layout), with_kwargs=True)
                for path, (mod, layout) in fused_experts(model).items()]
    task = progress.add_task("calibrate (collect statistics)", total=len(ids)) if progress else None
    try:
        for batch in ids.split(BATCH):
            _body(model)(input_ids=batch, use_cache=False)
            last[0] = None
            if progress and task is not None:
                progress.advance(task, len(batch))
    finally:
        for h in handles:
            h.remove()
    missing = sorted(name for name in set(layers) - set(stats) if expert_of(name) is None)
    if missing:
        raise RuntimeError(f"calibration never reached {len(missing)} layers, e.g. {missing[0]}")
    return stats
