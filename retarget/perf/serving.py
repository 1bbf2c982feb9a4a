"""Serving at a fixed concurrency: the closed loop of `vllm bench serve --max-concurrency C` and its kin.

C clients each send their next request when the last one has finished, so C requests are in flight and none
queues beyond them (a run that sends all its N prompts at once is the case C = N). An engine with continuous
batching and chunked prefill (vLLM V1, SGLang, TensorRT-LLM's PyTorch backend) runs one decode step for every
sequence that is generating and fits the prompts of newly arrived requests into the same forwards, at most its
token budget per forward (B tokens: vLLM's max_num_batched_tokens, SGLang's chunked_prefill_size, TensorRT-LLM's
max_num_tokens), so k = B // P prompts of P tokens share one forward, and a prompt longer than B is prefilled in
chunks of B over P / B forwards (k = B / P). With O output tokens, a decode step of the C sequences taking `step`
and one prompt's share of a forward of max(1, k) prompts taking `share`:

* after the run's first requests the arrivals spread over the steps (even with fixed lengths: the prompts of
  the first C, which arrive together, are prefilled k per forward, so they finish, and send their next
  requests, a forward apart). Each prompt then adds its share to a step of the C - 1 sequences that are
  decoding; the k-th of the first C prompts stalls only the k - 1 started before it. Over a run of N requests
  of O tokens, a = (C - 1) * (N - C / 2) / (N * (O - 1)) prompts arrive per output token, at most k of which
  fit the step: TPOT = step + min(a, k) * share;
* a request arriving in that state waits for the running step and the forward that prefills it with the
  others arriving beside it (min(a, k) of them, at least its own); the run's first C requests arrive together
  and the j-th waits for j prompts' shares and j / k steps, which raises the mean TTFT by
  (C / N) * (C - 1) / 2 * (share + step / k);
* Little's law (in-flight requests = completion rate x time in the system) gives the completion rate
  C / (TTFT + (O - 1) * TPOT), at most the k requests a full forward (step + k * share) admits: where prompts
  arrive faster (a > k, short outputs), they queue, and the mean TTFT is what Little's law leaves of C / rate.
  The run lasts (N - C) / rate plus the time of its last request, which waited for the whole first wave when
  all its requests arrived together, and then decoded without prefills beside it.

With data-parallel attention (parallelism `ep`: SGLang's --enable-dp-attention, TensorRT-LLM's attention DP) each
of the R devices prefills the prompts of its own requests, SGLang with B / R of the budget; prompts on different
devices run side by side, so `share` is that of the m prompts in prefill at once: those that arrive while one
is prefilled (a times the R / k forwards it takes, by Little's law), at least one, at most max(R, k).

Not modelled: with fixed lengths, that the requests whose prompts were prefilled in the same forward finish
together and arrive again together, so a request may also wait for up to k - 1 other prompts before its first
token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from retarget.hw_profiles import HardwareProfile
from retarget.models.spec import ModelSpec
from retarget.perf.model import predict, prefill_chunk


@dataclass(frozen=True)
class ServingPoint:
    """Mean first-token time, mean time per output token and output throughput of a closed-loop run."""

    ttft_s: float
    tpot_s: float
    output_tokens_s: float


def prompts_per_forward(input_len: int, engine: str = "tuned", tokens_per_forward: int | None = None) -> float:
    """Prompts of INPUT_LEN tokens that one forward of ENGINE prefills: as many whole ones as its token budget
    per forward (model.prefill_chunk) holds, or, for a prompt longer than the budget, the share of it that one
    forward's chunk takes."""
    budget, prompt = prefill_chunk(engine, tokens_per_forward), max(input_len, 1)
    return budget / prompt if prompt > budget else budget // prompt


def closed_loop(spec: ModelSpec, profile: HardwareProfile, *, concurrency: int, input_len: int, output_len: int,
                requests: int | None = None, **kwargs: Any) -> ServingPoint:
    """SPEC served on PROFILE to CONCURRENCY clients in a closed loop, prompts of INPUT_LEN tokens, OUTPUT_LEN
    generated (their means where lengths are drawn at random); REQUESTS: how many the run sends in all (None: a
    run long enough for its start not to matter). KWARGS: `predict`'s format, device and engine arguments."""
    ctx = max(1, input_len + output_len // 2)
    out = max(output_len, 1)
    prompt = max(input_len, 1)
    per_forward = prompts_per_forward(prompt, kwargs.get("engine", "tuned"), kwargs.get("tokens_per_forward"))
    sent = requests or 0
    start = min(concurrency, sent) / sent if sent else 0.0  # share of the requests that arrive together
    arriving = (concurrency - 1) * (1 - start / 2) / max(out - 1, 1)  # prompts per output token of a request
    whole = max(1, int(per_forward))  # prompts in one forward's batch (a longer one: one, over several forwards)
    in_prefill = whole
    if kwargs.get("parallelism") == "ep":  # data-parallel attention: each device prefills its own requests' prompts
        ranks = kwargs.get("devices", 1)  # with 1/ranks of the budget (SGLang), side by side with the others': as
        # many at once as arrive while one is prefilled (Little's law), at most one a device or a full forward
        in_prefill = min(max(ranks, whole), max(1, round(arriving * max(1.0, ranks / per_forward))))
    sharing = min(whole, max(1, math.ceil(arriving)))  # prompts in the forward that prefills a request's

    def prefill(prompts: int) -> float:  # one forward prefilling PROMPTS prompts together
        return predict(spec, profile, batch=prompts, ctx=ctx, prompt_len=prompt, **kwargs).ttft_s

    share_s = prefill(in_prefill) / in_prefill  # a prompt's share of the forwards it shares: what it adds to steps
    step_s = predict(spec, profile, batch=concurrency, ctx=ctx, prompt_len=prompt, **kwargs).tpot_s
    tpot_s = step_s + min(arriving, per_forward) * share_s
    stagger = start * (concurrency - 1) / 2 * (share_s + step_s / per_forward)  # the first wave's mean wait
    ttft_s = prefill(sharing) + step_s + stagger
    rate = concurrency / (ttft_s + (out - 1) * tpot_s)
    capacity = per_forward / (step_s + per_forward * share_s)  # requests a second when every forward is full
    if rate > capacity and not 0 < sent <= concurrency:  # past the first wave prompts arrive faster than the
        # forwards take them: they queue for their first token (the first wave's wait is its stagger)
        rate = capacity
        ttft_s = concurrency / rate - (out - 1) * tpot_s
    if not sent:
        return ServingPoint(ttft_s, tpot_s, rate * output_len)
    # the run ends with its last request: one of a single wave waited twice the wave's mean stagger, and once the
    # prompts have run out its tokens wait for no prefill
    last = ttft_s + stagger + (out - 1) * (step_s if sent <= concurrency else tpot_s)
    return ServingPoint(ttft_s, tpot_s, sent * output_len / (max(sent - concurrency, 0) / rate + last))
