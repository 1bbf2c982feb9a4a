"""The scheduler's limits vLLM's V1 engine sets per device, against the values in vLLM's own source
(EngineArgs._set_default_args, v0.11.0: 1024 sequences and 16384 / 8192 tokens per forward offline / served on
devices of at least 70 GiB but the A100, else 256 and 8192 / 2048; TPU v6e 2048 / 1024 tokens), and what a run
states in its label overriding them."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from retarget.cli import app
from retarget.hw_profiles import load_profile
from retarget.models.registry import get_spec
from retarget.perf.scheduler import BatchLimits, batch_limits
from retarget.perf.serving import closed_loop, prompts_per_forward
from retarget.perf.validate import admitted, plan_row, predict_plan

SERVED = {"source_url": "https://example.org/t", "model": "Qwen3-8B", "params": "8B",
          "quant_format": "BF16 (--dtype auto)", "hardware": "NVIDIA A100 SXM 80GB", "num_devices": "1",
          "phase": "decode", "batch_size": "1000", "input_len": "500", "output_len": "100", "metric": "TPOT ms",
          "value": "100", "engine": "vLLM 0.11.0 (V1 engine; vllm serve; 1000 prompts at --max-concurrency 1000)"}


@pytest.mark.parametrize(("profile", "usage", "limits"), [
    ("h100-sxm", "serve", BatchLimits(1024, 8192)),
    ("h100-sxm", "offline", BatchLimits(1024, 16384)),
    ("mi300x", "serve", BatchLimits(1024, 8192)),
    ("h20", "offline", BatchLimits(1024, 16384)),
    ("a100-80g-sxm", "serve", BatchLimits(256, 2048)),  # excluded by name: 80 GB
    ("a100-80g-sxm", "offline", BatchLimits(256, 8192)),
    ("l40s", "serve", BatchLimits(256, 2048)),  # 48 GB
    ("tpu-v6e", "serve", BatchLimits(256, 1024)),
    ("tpu-v6e", "offline", BatchLimits(256, 2048)),
])
def test_vllm_v1_defaults_per_device(profile: str, usage: str, limits: BatchLimits) -> None:
    assert batch_limits("vllm-v1", load_profile(profile), usage) == limits  # type: ignore[arg-type]


@pytest.mark.parametrize(("profile", "tokens"), [("rtx-4090", 2048), ("l40s", 4096), ("h100-sxm", 8192),
                                                 ("h200-sxm", 8192), ("b200", 16384), ("mi300x", 16384)])
def test_sglang_chunks_prompts_by_device_memory(profile: str, tokens: int) -> None:
    """SGLang 0.5's chunked_prefill_size: 2048 under 35 GiB, 4096 under 60, 8192 under 160, else 16384; no cap
    on running requests but the KV pool's."""
    assert batch_limits("sglang-0.5", load_profile(profile), "serve") == BatchLimits(None, tokens)


def test_engines_without_a_rule_keep_their_own_limits() -> None:
    """TensorRT-LLM names no per-device rule; vLLM 0.8-0.9 inherits V1's, SGLang's ROCm images SGLang's."""
    h100 = load_profile("h100-sxm")
    assert batch_limits("tensorrt-llm", h100, "serve") is None
    assert batch_limits("vllm-0.9", h100, "serve") == BatchLimits(1024, 8192)
    assert batch_limits("sglang-0.5-mi30x", load_profile("mi300x"), "serve") == BatchLimits(None, 16384)


def test_a100_server_runs_256_of_a_burst_and_prefills_four_500_token_prompts_per_forward() -> None:
    """1000 prompts sent at once to vLLM V1 serving Qwen3-8B in BF16: on an A100 its scheduler runs 256 of them
    although the KV pool holds more of the 600-token requests, on an H100 every one the pool holds (more than
    256, fewer than 1024); the A100's 2048-token budget fits four 500-token prompts per forward, the H100's 8192
    sixteen."""
    a100 = plan_row(SERVED)
    h100 = plan_row({**SERVED, "hardware": "NVIDIA H100 SXM 80GB"})
    assert a100.max_seqs == 256 and h100.max_seqs == 1024
    assert admitted(a100, 1000) == 256 < admitted(h100, 1000) < 1000
    assert predict_plan(a100)[1]["concurrent"] == 256
    assert prompts_per_forward(500, "vllm-v1", a100.kwargs["tokens_per_forward"]) == 4
    assert prompts_per_forward(500, "vllm-v1", h100.kwargs["tokens_per_forward"]) == 16


def test_limits_a_run_states_override_the_defaults() -> None:
    stated = plan_row({**SERVED, "engine": "vLLM 0.11.0 (vllm serve --max-num-batched-tokens 4096 "
                                           "--max-num-seqs 128; 1000 prompts at --max-concurrency 1000)"})
    assert stated.kwargs["tokens_per_forward"] == 4096 and stated.max_seqs == 128
    assert admitted(stated, 1000) <= 128
    underscored = plan_row({**SERVED, "engine": "vLLM 0.11.0 (max_num_seqs 64; max_num_batched_tokens 512; "
                                                "1000 prompts at --max-concurrency 1000)"})
    assert (underscored.max_seqs, underscored.kwargs["tokens_per_forward"]) == (64, 512)


def test_predict_serves_clients_beyond_the_cap_from_the_queue() -> None:
    """`retarget predict --output-len` with vLLM V1 on an A100: 500 clients, 256 of them running (its served
    cap there), each step taking at most 2048 tokens of prompts; on an H100 all 500 run."""
    args = ["predict", "llama-3.1-8b", "--batch", "500", "--ctx", "600", "--prompt-len", "500", "--output-len",
            "100", "--engine", "vllm-v1", "--json"]
    a100, h100 = (json.loads(CliRunner().invoke(app, [*args, "--target", target]).output)["serving"]
                  for target in ("a100-80g-sxm", "h100-sxm"))
    assert (a100["clients"], a100["running"]) == (500, 256) and h100["running"] == 500
    spec, a100_profile = get_spec("llama-3.1-8b"), load_profile("a100-80g-sxm")
    point = closed_loop(spec, a100_profile, concurrency=256, input_len=500, output_len=100, engine="vllm-v1",
                        weight_format="bf16", kv_format="bf16", tokens_per_forward=2048)
    assert a100["tpot_ms"] == pytest.approx(point.tpot_s * 1e3)
