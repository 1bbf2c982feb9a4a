"""accelerate_: the tiny seed models on the kernels give the logits and greedy tokens of unpatched transformers.

The kernel path runs the Triton kernels in the interpreter (TRITON_INTERPRET=1, tests/conftest.py); the reference
path is what runs on a CPU without it (the kernel folders' torch references). The prompt (19 tokens) and the
8-token decode cross the tiny models' 16-token sliding windows."""

from __future__ import annotations

from collections import Counter
from functools import cache

import pytest
import torch
from transformers import StaticCache

from retarget.errors import RetargetError
from retarget.kernels import accelerate_
from retarget.kernels.accelerate import _ops
from retarget.kernels.attention import op as attention_op
from retarget.kernels.fused_moe import op as moe_op
from retarget.kernels.mamba2 import op as mamba2_op
from retarget.kernels.mla_decode import op as mla_op
from retarget.models.tiny import build_tiny, tiny_tokenizer
from retarget.quantize.api import quantize_
from retarget.quantize.configs import Int4WeightOnlyConfig
from retarget.quantize.fp8 import Fp8WeightConfig

PROMPT = "The quick brown fox jumps over the lazy dog, then it runs far away into the dark woods."
STEPS = 8
LAUNCHES = {attention_op: ("prefill_attention", "decode_attention"), mla_op: ("mla_decode",),
            moe_op: ("route", "fused_moe"), mamba2_op: ("chunk_scan", "state_update")}

# family -> (module classes on the kernels, kernel launches expected during prefill + decode)
FAMILIES = {
    "gpt-oss": ({"GptOssAttention", "GptOssMLP"}, {"prefill_attention", "decode_attention", "route", "fused_moe"}),
    "deepseek-v3": ({"DeepseekV3Attention", "DeepseekV3MoE"}, {"prefill_attention", "mla_decode", "route",
                                                              "fused_moe"}),
    "falcon-h1": ({"FalconH1Mixer", "FalconH1Attention"}, {"prefill_attention", "decode_attention", "chunk_scan",
                                                           "state_update"}),
    "kimi-k2": ({"DeepseekV3Attention", "DeepseekV3MoE"}, {"mla_decode", "route", "fused_moe"}),
    "qwen3-moe": ({"Qwen3MoeAttention", "Qwen3MoeSparseMoeBlock"}, {"decode_attention", "fused_moe"}),
    "mixtral": ({"MixtralAttention", "MixtralSparseMoeBlock"}, {"decode_attention", "fused_moe"}),
    "gemma-3": ({"Gemma3Attention"}, {"prefill_attention", "decode_attention"}),
}
FAST = ("gpt-oss", "deepseek-v3", "falcon-h1")  # together they call every kernel folder; the rest: make test-slow
MORE = tuple(n for n in FAMILIES if n not in FAST)


def _ids() -> torch.Tensor:
    ids = tiny_tokenizer()(PROMPT, return_tensors="pt")["input_ids"]
    assert ids.shape[1] > 16  # past the sliding window
    return ids


def _run(model: torch.nn.Module, ids: torch.Tensor,
         steps: int = STEPS) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """(prompt logits, greedy tokens, per-step decode logits) with generate()'s dynamic cache."""
    with torch.no_grad():
        prompt = model(ids, use_cache=False).logits
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps, min_new_tokens=steps,
                             do_sample=False, output_logits=True, return_dict_in_generate=True, pad_token_id=0)
    return prompt, out.sequences[0, ids.shape[1]:], list(out.logits)


@cache
def _unpatched(name: str) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    return _run(build_tiny(name), _ids())


def _check_parity(name: str) -> None:
    ids = _ids()
    want_prompt, want_tokens, want_steps = _unpatched(name)
    model = build_tiny(name)
    report = accelerate_(model)
    assert set(report.accelerated) == FAMILIES[name][0], report.line()
    got_prompt, got_tokens, got_steps = _run(model, ids)
    torch.testing.assert_close(got_prompt, want_prompt, rtol=1e-4, atol=1e-4)
    assert got_tokens.tolist() == want_tokens.tolist()
    for got, want in zip(got_steps, want_steps, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.fixture
def launches(monkeypatch) -> Counter:
    """Counts the Triton launch wrappers the accelerated model calls."""
    calls: Counter = Counter()
    for module, names in LAUNCHES.items():
        for fn_name in names:
            fn = getattr(module, fn_name)

            def counted(*args, _fn=fn, _name=fn_name, **kwargs):
                calls[_name] += 1
                return _fn(*args, **kwargs)
            monkeypatch.setattr(module, fn_name, counted)
    return calls


def _kernel_parity(name: str, launches: Counter) -> None:
    _check_parity(name)
    assert FAMILIES[name][1] <= set(launches), dict(launches)


@pytest.mark.parametrize("name", FAST)
def test_kernels_match_transformers(name: str, launches: Counter) -> None:
    _kernel_parity(name, launches)


@pytest.mark.slow
@pytest.mark.parametrize("name", MORE)
def test_kernels_match_transformers_more_families(name: str, launches: Counter) -> None:
    _kernel_parity(name, launches)


def _reference_parity(name: str, launches: Counter, monkeypatch) -> None:
    """What a CPU without the interpreter runs: the same patched modules over the torch references."""
    monkeypatch.setattr(_ops, "triton_runs", lambda t: False)
    _check_parity(name)
    assert not launches


@pytest.mark.parametrize("name", FAST)
def test_references_match_transformers(name: str, launches: Counter, monkeypatch) -> None:
    _reference_parity(name, launches, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("name", MORE)
def test_references_match_transformers_more_families(name: str, launches: Counter, monkeypatch) -> None:
    _reference_parity(name, launches, monkeypatch)


def test_unregistered_modules_are_named() -> None:
    report = accelerate_(build_tiny("llama"))
    assert report.line() == ("kernels: none; not accelerated: LlamaAttention x2 (no kernel registered), "
                             "LlamaMLP x2 (no kernel registered)")
    deepseek = accelerate_(build_tiny("deepseek-v3")).line()
    assert "DeepseekV3MLP x1 (no kernel registered)" in deepseek  # the dense first layer
    gelu = build_tiny("mixtral")
    for layer in gelu.model.layers:
        for expert in layer.block_sparse_moe.experts:
            expert.act_fn = torch.nn.GELU()
    assert accelerate_(gelu).line() == ("kernels: MixtralAttention x2 (attention); not accelerated: "
                                        "MixtralSparseMoeBlock x2 (expert activation GELU is not SwiGLU)")


def test_inputs_the_kernels_do_not_cover_are_refused() -> None:
    model = build_tiny("gpt-oss")
    accelerate_(model)
    ids = _ids()
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    with pytest.raises(RetargetError, match="padded batches"):
        model(ids, attention_mask=mask)
    cache = StaticCache(config=model.config, max_cache_len=64)
    with pytest.raises(RetargetError, match="dynamic cache, got StaticCache"):
        model(ids, past_key_values=cache)


def test_int4_experts_run_the_w4a16_grouped_gemm(monkeypatch) -> None:
    """retarget's int4 quantization (group 32) makes the experts QuantLinear layers: their codes are stacked and
    run through fused_moe's W4A16 grouped GEMM, matching the quantized model's own logits and greedy tokens."""
    formats: list[str] = []
    fused = moe_op.fused_moe

    def spy(x, w13, w2, *args, **kwargs):
        formats.append(w13.format)
        return fused(x, w13, w2, *args, **kwargs)
    monkeypatch.setattr(moe_op, "fused_moe", spy)
    models = [build_tiny("qwen3-moe") for _ in range(2)]
    for model in models:
        quantize_(model, Int4WeightOnlyConfig(group_size=32))
    report = accelerate_(models[1])
    assert report.line() == ("kernels: Qwen3MoeAttention x3 (attention), Qwen3MoeSparseMoeBlock x2 (fused_moe); "
                             "not accelerated: Qwen3MoeMLP x1 (no kernel registered)")
    (want_prompt, want_tokens, want_steps), (got_prompt, got_tokens, got_steps) = (_run(m, _ids(), 4) for m in models)
    torch.testing.assert_close(got_prompt, want_prompt, rtol=1e-4, atol=1e-4)
    assert got_tokens.tolist() == want_tokens.tolist()
    torch.testing.assert_close(torch.stack(got_steps), torch.stack(want_steps), rtol=1e-4, atol=1e-4)
    assert formats and set(formats) == {"int"}


def test_fp8_experts_stay_on_transformers() -> None:
    model = build_tiny("mixtral")
    quantize_(model, Fp8WeightConfig())
    assert accelerate_(model).line() == (
        "kernels: MixtralAttention x2 (attention); not accelerated: MixtralSparseMoeBlock x2 (experts are "
        "QuantLinear e4m3-g32, QuantLinear e4m3-g64: not float Linear or integer weight-only QuantLinear "
        "layers of one format)")
