"""The closed-loop serving model against a simulated server, and the validate rows it predicts."""

from __future__ import annotations

import heapq
import random

import pytest

from retarget.hw_profiles import load_profile
from retarget.models.registry import get_spec
from retarget.perf import predict
from retarget.perf.serving import closed_loop, prompts_per_forward
from retarget.perf.validate import plan_row, predict_plan


def _simulate(clients: int, lengths: list[int], step_s: float, prefill_s: float,
              prefills_per_step: int = 8, chunks: int = 1, ranks: int = 1) -> dict[str, float]:
    """Independent reference: a continuous-batching server stepping in discrete steps. Each step runs the
    prefills of up to PREFILLS_PER_STEP requests that arrived before it (PREFILL_S each, the engine's token
    budget per step; those requests then have their first token) and one decode token for every request
    already past its first token (STEP_S per step whatever their number); a prompt longer than the budget
    (CHUNKS > 1) is prefilled one chunk a step (PREFILL_S / CHUNKS each), the oldest first, or, with RANKS
    data-parallel attention ranks, the RANKS oldest side by side, one chunk each in the step's PREFILL_S / CHUNKS.
    CLIENTS clients each send their next request the moment the last one has its tokens; request i generates
    LENGTHS[i] tokens."""
    requests = len(lengths)
    arrivals = [(0.0, c) for c in range(min(clients, requests))]
    heapq.heapify(arrivals)
    sent, now = len(arrivals), 0.0
    chunked: dict[int, int] = {}  # request -> chunks of its prompt already prefilled
    decoding: dict[int, list[float]] = {}  # request -> [arrival, first token, tokens so far]
    done: list[tuple[float, float, float]] = []  # (ttft, tpot, finish)
    while len(done) < requests:
        waiting, prefill = [], 0.0
        if chunks > 1:
            started = heapq.nsmallest(ranks, [a for a in arrivals if a[0] <= now])
            for arrival in started:
                chunked[arrival[1]] = chunked.get(arrival[1], 0) + 1
                if chunked[arrival[1]] == chunks:
                    arrivals.remove(arrival)
                    waiting.append(arrival)
            heapq.heapify(arrivals)
            prefill = prefill_s / chunks if started else 0.0
        while chunks == 1 and arrivals and arrivals[0][0] <= now and len(waiting) < prefills_per_step:
            waiting.append(heapq.heappop(arrivals))
            prefill += prefill_s
        if not prefill and not decoding:
            now = arrivals[0][0]
            continue
        running = list(decoding)
        now += step_s * bool(running) + prefill
        for rid in running:
            decoding[rid][2] += 1
            if decoding[rid][2] == lengths[rid]:
                arrival, first, _ = decoding.pop(rid)
                done.append((first - arrival, (now - first) / (lengths[rid] - 1), now))
                if sent < requests:
                    heapq.heappush(arrivals, (now, sent))
                    sent += 1
        for arrival, rid in waiting:
            decoding[rid] = [arrival, now, 1]
    return {"ttft": sum(d[0] for d in done) / requests, "tpot": sum(d[1] for d in done) / requests,
            "throughput": sum(lengths) / max(d[2] for d in done)}


SPEC, H100 = get_spec("llama-3.1-8b"), load_profile("h100-sxm")
KW = dict(weight_format="bf16", kv_format="bf16", engine="tuned")


def _times(clients: int, inp: int, out: int) -> tuple[float, float]:
    """One prompt's share of a forward that prefills as many prompts as the token budget holds, and one decode
    step of CLIENTS sequences, as closed_loop takes them."""
    ctx, per_forward = inp + out // 2, prompts_per_forward(inp)
    return (predict(SPEC, H100, batch=per_forward, ctx=ctx, prompt_len=inp, **KW).ttft_s / per_forward,
            predict(SPEC, H100, batch=clients, ctx=ctx, prompt_len=inp, **KW).tpot_s)


@pytest.mark.parametrize("clients,requests", [(64, 128), (64, 640), (16, 160), (128, 256)])
def test_fixed_lengths_match_a_simulated_server(clients: int, requests: int) -> None:
    """Requests prefilled in the same step (8 here) finish together and arrive again together, so beyond the
    model's TTFT a request waits for up to 7 more prefills, and the first C for one step per 8 prompts before
    theirs: the simulated TTFT lies in that range."""
    inp, out, per_step = 1024, 512, 8
    point = closed_loop(SPEC, H100, concurrency=clients, input_len=inp, output_len=out, requests=requests, **KW)
    prefill_s, step_s = _times(clients, inp, out)
    sim = _simulate(clients, [out] * requests, step_s, prefill_s, per_step)
    assert point.tpot_s == pytest.approx(sim["tpot"], rel=0.05)
    assert point.output_tokens_s == pytest.approx(sim["throughput"], rel=0.05)
    first_steps = min(clients, requests) / requests * (clients / per_step + 1) / 2 * step_s
    assert point.ttft_s * 0.95 <= sim["ttft"] <= point.ttft_s + (per_step - 1) * prefill_s + first_steps


@pytest.mark.parametrize("inp,out", [(128, 4), (2000, 100)])
def test_a_burst_of_short_prompts_matches_a_simulated_server(inp: int, out: int) -> None:
    """All of 1000 requests sent at once (`vllm bench serve` without a request rate): the engine prefills as many
    prompts per forward as its token budget holds (8192 / 128 = 64), so a request's output tokens wait for one
    forward's worth of other prompts each, not for all of them, and the run lasts until its last request, which
    waited for every prompt before it."""
    clients = 1000
    point = closed_loop(SPEC, H100, concurrency=clients, input_len=inp, output_len=out, requests=clients, **KW)
    share_s, step_s = _times(clients, inp, out)
    sim = _simulate(clients, [out] * clients, step_s, share_s, prompts_per_forward(inp))
    assert point.tpot_s == pytest.approx(sim["tpot"], rel=0.15)
    assert point.output_tokens_s == pytest.approx(sim["throughput"], rel=0.15)
    assert point.ttft_s == pytest.approx(sim["ttft"], rel=0.15)


@pytest.mark.parametrize("budget,clients,inp,out", [(512, 256, 128, 4), (2048, 256, 128, 4), (2048, 128, 2000, 10)])
def test_prompts_arriving_faster_than_the_forwards_take_them_queue(budget: int, clients: int, inp: int,
                                                                    out: int) -> None:
    """1000 requests of short outputs behind a small token budget (vLLM's 2048 on an A100, or a stated 512): each
    finished request sends the next at once, so more prompts arrive per decode step than a forward prefills; the
    rest wait for a later forward, and the run proceeds at what full forwards admit, as in the simulated server."""
    kw = {**KW, "tokens_per_forward": budget}
    point = closed_loop(SPEC, H100, concurrency=clients, input_len=inp, output_len=out, requests=1000, **kw)
    per_forward = prompts_per_forward(inp, "tuned", budget)
    ctx = inp + out // 2
    share_s = predict(SPEC, H100, batch=per_forward, ctx=ctx, prompt_len=inp, **kw).ttft_s / per_forward
    step_s = predict(SPEC, H100, batch=clients, ctx=ctx, prompt_len=inp, **kw).tpot_s
    sim = _simulate(clients, [out] * 1000, step_s, share_s, per_forward)
    assert point.tpot_s == pytest.approx(sim["tpot"], rel=0.05)
    assert point.output_tokens_s == pytest.approx(sim["throughput"], rel=0.05)
    assert point.ttft_s == pytest.approx(sim["ttft"], rel=0.2)


@pytest.mark.parametrize("clients,requests", [(16, 16), (16, 64)])
def test_prompts_longer_than_the_budget_stall_a_decode_step_by_one_chunk(clients: int, requests: int) -> None:
    """Prompts of 32768 tokens behind an 8192-token budget are prefilled over four forwards, one chunk each: a
    decoding request's token waits for one chunk, not for a whole prompt, as in the simulated server."""
    inp, out = 32768, 256
    point = closed_loop(SPEC, H100, concurrency=clients, input_len=inp, output_len=out, requests=requests, **KW)
    assert prompts_per_forward(inp) == 0.25
    ctx = inp + out // 2
    prefill_s = predict(SPEC, H100, batch=1, ctx=ctx, prompt_len=inp, **KW).ttft_s
    step_s = predict(SPEC, H100, batch=clients, ctx=ctx, prompt_len=inp, **KW).tpot_s
    sim = _simulate(clients, [out] * requests, step_s, prefill_s, chunks=4)
    assert point.tpot_s == pytest.approx(sim["tpot"], rel=0.1)
    assert point.output_tokens_s == pytest.approx(sim["throughput"], rel=0.1)


@pytest.mark.parametrize("clients", [4, 16, 64])
def test_data_parallel_attention_prefills_prompts_side_by_side(clients: int) -> None:
    """Expert parallelism with data-parallel attention over 8 devices (SGLang's --enable-dp-attention, which gives
    each rank 1/8 of the 8192-token budget): a prompt of 32768 tokens takes 32 forwards on its device, and the
    prompts that arrive meanwhile run side by side on the others; output lengths of 128-384 spread the arrivals.
    Few clients: a lone prompt holds up the decode steps for all its 32 forwards; many: the devices share them,
    as in the simulated server with 8 ranks."""
    spec, inp, out = get_spec("qwen3-30b-a3b"), 32768, 256
    kw = {**KW, "devices": 8, "parallelism": "ep"}
    draw = random.Random(7)
    lengths = [draw.randint(out // 2, 3 * out // 2) for _ in range(20 * clients)]
    point = closed_loop(spec, H100, concurrency=clients, input_len=inp, output_len=out, requests=len(lengths), **kw)
    ctx = inp + out // 2
    side_by_side = predict(spec, H100, batch=8, ctx=ctx, prompt_len=inp, **kw).ttft_s
    step_s = predict(spec, H100, batch=clients, ctx=ctx, prompt_len=inp, **kw).tpot_s
    sim = _simulate(clients, lengths, step_s, side_by_side, chunks=32, ranks=8)
    assert point.tpot_s == pytest.approx(sim["tpot"], rel=0.1)
    assert point.output_tokens_s == pytest.approx(sim["throughput"], rel=0.15)


def test_random_lengths_spread_the_clients_out_as_a_simulated_server_does() -> None:
    """Output lengths drawn uniformly from 256-768 (mean 512): after the first requests the arrivals are spread
    over the steps, so each token waits for C / O prefills and a request for about one; 40 rounds of requests
    make the run's start weigh little."""
    clients, inp, out = 64, 1024, 512
    draw = random.Random(7)
    lengths = [draw.randint(out // 2, 3 * out // 2) for _ in range(40 * clients)]
    point = closed_loop(SPEC, H100, concurrency=clients, input_len=inp, output_len=out,
                        requests=len(lengths), **KW)
    prefill_s, step_s = _times(clients, inp, out)
    sim = _simulate(clients, lengths, step_s, prefill_s)
    assert point.tpot_s == pytest.approx(sim["tpot"], rel=0.05)
    assert point.output_tokens_s == pytest.approx(sim["throughput"], rel=0.05)
    assert point.ttft_s == pytest.approx(sim["ttft"], rel=0.25)


ROW = {"source_url": "https://example.org/serve", "model": "Llama-3.1-8B-Instruct", "params": "8B",
       "quant_format": "BF16", "hardware": "NVIDIA H100 SXM 80GB", "num_devices": "1",
       "engine": "vLLM v0.11.0 (V1 engine; vllm bench serve, 640 prompts at --max-concurrency 64)",
       "phase": "decode", "batch_size": "64", "input_len": "1024", "output_len": "1024",
       "metric": "TPOT ms", "value": "10", "notes": ""}


def test_serve_rows_are_predicted_as_a_closed_loop_and_batch_rows_as_a_fixed_batch() -> None:
    serve = plan_row(ROW)
    assert not isinstance(serve, str) and serve.kind == "serve_tpot" and serve.requests == 640
    value, _ = predict_plan(serve)
    assert serve.kwargs["engine"] == "vllm-v1"
    kw = {**KW, "engine": "vllm-v1"}
    assert value == pytest.approx(closed_loop(SPEC, H100, concurrency=64, input_len=1024, output_len=1024,
                                              requests=640, **kw).tpot_s * 1e3, rel=1e-9)
    fixed = plan_row({**ROW, "engine": "vLLM v0.11.0 (V1 engine; vllm bench latency, batch 64)"})
    assert not isinstance(fixed, str) and fixed.kind == "tpot"
    assert value > predict_plan(fixed)[0]  # the others' prefills stall every sequence's decode
    skipped = plan_row({**ROW, "phase": "prefill", "metric": "TTFT ms"})
    assert isinstance(skipped, str) and "TTFT" in skipped and "TPOT" in skipped


def test_replicas_split_the_clients_and_add_their_throughput() -> None:
    """Two TP-1 replicas behind one load balancer on 2 devices, 64 clients: each replica serves 32 of them on one
    device, so the TPOT is one replica's at 32 clients and the output throughput twice its; one client keeps one
    replica busy."""
    label = "vLLM v0.11.0 (V1 engine; 2 replicas x TP 1; vllm bench serve, 640 prompts at --max-concurrency 64)"
    row = {**ROW, "num_devices": "2", "engine": label}
    kw = {**KW, "engine": "vllm-v1"}
    one = closed_loop(SPEC, H100, concurrency=32, input_len=1024, output_len=1024, requests=320, **kw)
    assert predict_plan(plan_row(row))[0] == pytest.approx(one.tpot_s * 1e3, rel=1e-9)
    rate = plan_row({**row, "metric": "output tokens/s"})
    assert predict_plan(rate)[0] == pytest.approx(2 * one.output_tokens_s, rel=1e-9)
    alone = closed_loop(SPEC, H100, concurrency=1, input_len=1024, output_len=1024, requests=10, **kw)
    one_client = label.replace("640 prompts at --max-concurrency 64", "10 prompts at --max-concurrency 1")
    single = plan_row({**row, "metric": "output tokens/s", "batch_size": "1", "engine": one_client})
    assert predict_plan(single)[0] == pytest.approx(alone.output_tokens_s, rel=1e-9)
    uneven = plan_row({**row, "num_devices": "3"})
    assert isinstance(uneven, str) and "replicas" in uneven
    assert not isinstance(plan_row({**row, "engine": label.replace("2 replicas", "0 replicas")}), str)  # not a count


def test_vllm_v0_runs_at_most_256_sequences_at_once() -> None:
    """vLLM's V0 scheduler (max_num_seqs 256) runs a fixed batch of 1024 short sequences of an 8B model, which an
    H100's KV cache would hold, in four waves of 256: the throughput of one batch of 256."""
    row = {**ROW, "engine": "vLLM 0.6.3 (CUDA graphs; TP 1)", "batch_size": "1024", "input_len": "128",
           "output_len": "128", "metric": "output tokens/s"}
    big, small = plan_row(row), plan_row({**row, "batch_size": "256"})
    assert big.kwargs["engine"] == "vllm-v0"
    assert predict_plan(big)[1]["concurrent"] == 256
    assert predict_plan(big)[0] == pytest.approx(predict_plan(small)[0], rel=1e-9)


def test_predict_prints_the_closed_loop_run_of_its_batch_as_clients() -> None:
    import json

    from typer.testing import CliRunner

    from retarget.cli import app

    args = ["predict", "llama-3.1-8b", "--batch", "32", "--prompt-len", "2048", "--output-len", "256"]
    result = CliRunner().invoke(app, [*args, "--json"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    serving = json.loads(result.output)["serving"]
    point = closed_loop(SPEC, H100, concurrency=32, input_len=2048, output_len=256, **KW)
    assert serving["tpot_ms"] == pytest.approx(point.tpot_s * 1e3, rel=1e-9)
    assert serving["output_tokens_s"] == pytest.approx(point.output_tokens_s, rel=1e-9)
    bad = CliRunner().invoke(app, [*args[:-1], "0"], env={"COLUMNS": "400"})
    assert bad.exit_code == 2 and "--output-len" in bad.output and "Traceback" not in bad.output
