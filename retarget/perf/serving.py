"""Serving at a fixed concurrency: the closed loop of `vllm bench serve --max-concurrency C` and its kin.

C clients each send their next request when the last one has finished, so C requests are in flight and none
queues beyond them. An engine with continuous batching and chunked prefill (vLLM V1, SGLang, TensorRT-LLM's
PyTorch backend) runs one decode step for every sequence that is generating and fits the prompts of newly
arrived requests, as many as its token budget per step allows, into the same steps. With P prompt tokens, O
output tokens, a decode step of the C sequences taking `step` and one prompt's prefill taking `prefill`:

* after the run's first requests the arrivals spread over the steps (even with fixed lengths: the prompts of
  the first C, which arrive together, are prefilled a budget's worth per step, so they finish, and send their
  next requests, a step apart). Each prefill then stalls the C - 1 sequences that are decoding; the k-th of
  the first C prompts stalls only the k - 1 started before it. Over a run of N requests of O tokens the stall
  per output token is prefill * (C - 1) * (N - C / 2) / (N * (O - 1)), so TPOT = step + that stall (about
  step + C * prefill / O in a long run);
* a request arriving in that state waits for the running step and its own prefill: TTFT = prefill + step (a
  steady-state figure: see below); the run's first C requests arrive together and the k-th waits for k - 1
  prefills, which raises the mean TTFT by (C / N) * (C - 1) / 2 prefills;
* Little's law (in-flight requests = completion rate x time in the system) gives the completion rate
  C / (TTFT + (O - 1) * TPOT), and the output throughput is O times it.

Not modelled: a run's ramp-down (fewer than C left at its end), and, with fixed lengths, that the requests
whose prompts were prefilled in the same step finish together and arrive again together, so a request may
also wait for up to a step's token budget of other prompts (a server setting) before its first token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retarget.hw_profiles import HardwareProfile
from retarget.models.spec import ModelSpec
from retarget.perf.model import predict


@dataclass(frozen=True)
class ServingPoint:
    """Mean first-token time, mean time per output token and output throughput of a closed-loop run."""

    ttft_s: float
    tpot_s: float
    output_tokens_s: float


def closed_loop(spec: ModelSpec, profile: HardwareProfile, *, concurrency: int, input_len: int, output_len: int,
                requests: int | None = None, **kwargs: Any) -> ServingPoint:
    """SPEC served on PROFILE to CONCURRENCY clients in a closed loop, prompts of INPUT_LEN tokens, OUTPUT_LEN
    generated (their means where lengths are drawn at random); REQUESTS: how many the run sends in all (None: a
    run long enough for its start not to matter). KWARGS: `predict`'s format, device and engine arguments."""
    ctx = max(1, input_len + output_len // 2)
    out = max(output_len, 1)
    prefill_s = predict(spec, profile, batch=1, ctx=ctx, prompt_len=max(input_len, 1), **kwargs).ttft_s
    step_s = predict(spec, profile, batch=concurrency, ctx=ctx, prompt_len=max(input_len, 1), **kwargs).tpot_s
    sent = requests or 0
    start = min(concurrency, sent) / sent if sent else 0.0  # share of the requests that arrive together
    tpot_s = step_s + prefill_s * (concurrency - 1) * (1 - start / 2) / max(out - 1, 1)
    ttft_s = prefill_s + step_s + start * (concurrency - 1) / 2 * prefill_s
    rate = concurrency / (ttft_s + (out - 1) * tpot_s)
    return ServingPoint(ttft_s, tpot_s, rate * output_len)
