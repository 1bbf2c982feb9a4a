"""accelerate_: the tiny seed models on the kernels give the logits and greedy tokens of unpatched transformers.

The kernel path runs the Triton kernels in the interpreter (TRITON_INTERPRET=1, tests/conftest.py); the reference
path is what runs on a CPU without it (the kernel folders' torch references). The prompt (19 tokens) and the
8-token decode cross the tiny models' 16-token sliding windows."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import StaticCache

from retarget.errors import RetargetError
from retarget.kernels import accelerate_
from retarget.kernels.accelerate import AccelerateReport, _ops
from retarget.kernels.accelerate._experts import ExpertFormat, gemm_for
from retarget.kernels.attention import op as attention_op
from retarget.kernels.fp8_gemm.reference import decode_scale
from retarget.kernels.fp8_gemm.reference import quantize as fp8_quantize
from retarget.kernels.fused_moe import op as moe_op
from retarget.kernels.mamba2 import op as mamba2_op
from retarget.kernels.mla_decode import op as mla_op
from retarget.models.tiny import TINY, build_tiny, tiny_tokenizer
from retarget.quantize.api import quantize_
from retarget.quantize.configs import Int4WeightOnlyConfig, KeepSourceConfig, config_from_name
from retarget.quantize.experts import expert_matrix, expert_of, fused_experts
from retarget.quantize.fp4 import quantize_mxfp4_weight
from retarget.quantize.fp8_source import read_fp8_blocks
from retarget.quantize.mxfp4_source import pack_mxfp4, read_mxfp4_experts
from retarget.quantize.weight import QuantizedWeight

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


@pytest.fixture
def gemm_formats(monkeypatch) -> list[tuple[str, str]]:
    """The (W13, W2) weight formats of every fused_moe call."""
    formats: list[tuple[str, str]] = []
    fused = moe_op.fused_moe

    def spy(x, w13, w2, *args, **kwargs):
        formats.append((w13.format, w2.format))
        return fused(x, w13, w2, *args, **kwargs)
    monkeypatch.setattr(moe_op, "fused_moe", spy)
    return formats


def _quantized_parity(model: torch.nn.Module, steps: int) -> tuple[AccelerateReport, torch.nn.Module]:
    """Accelerate a copy of the quantized MODEL: its logits and greedy tokens must be MODEL's own (transformers
    over retarget's dequantizing QuantLinear / dequantized fused experts). Returns the report and the copy."""
    accelerated = copy.deepcopy(model)
    report = accelerate_(accelerated)
    (want_prompt, want_tokens, want_steps), (got_prompt, got_tokens, got_steps) = (
        _run(m, _ids(), steps) for m in (model, accelerated))
    torch.testing.assert_close(got_prompt, want_prompt, rtol=1e-4, atol=1e-4)
    assert got_tokens.tolist() == want_tokens.tolist()
    torch.testing.assert_close(torch.stack(got_steps), torch.stack(want_steps), rtol=1e-4, atol=1e-4)
    return report, accelerated


def test_int4_experts_run_the_w4a16_grouped_gemm(gemm_formats) -> None:
    """retarget's int4 quantization (group 32) makes the experts QuantLinear layers: their codes are stacked and
    run through fused_moe's W4A16 grouped GEMM, matching the quantized model's own logits and greedy tokens."""
    model = build_tiny("qwen3-moe")
    quantize_(model, Int4WeightOnlyConfig(group_size=32))
    report, _ = _quantized_parity(model, 4)
    assert report.line() == ("kernels: Qwen3MoeAttention x3 (attention), Qwen3MoeSparseMoeBlock x2 (fused_moe); "
                             "not accelerated: Qwen3MoeMLP x1 (no kernel registered)")
    assert gemm_formats and set(gemm_formats) == {("int", "int")}


@dataclasses.dataclass(frozen=True)
class Native:
    """A tiny family resized (a config from transformers' own class) so its experts fit RECIPE's blocks, its MoE
    block class, and fused_moe's weight format for those experts."""

    family: str
    recipe: str
    changes: dict
    block: str
    format: str


WIDE = {"hidden_size": 128, "moe_intermediate_size": 128, "num_hidden_layers": 2}  # FP8 blocks are 128 x 128
NATIVE = {f"{n.family}-{n.recipe}": n for n in (
    Native("deepseek-v3", "fp8-block128", WIDE, "DeepseekV3MoE", "fp8-block"),
    Native("deepseek-v3", "fp8-block128-ue8m0", WIDE, "DeepseekV3MoE", "fp8-block"),
    Native("gpt-oss", "mxfp4", {"num_hidden_layers": 2}, "GptOssMLP", "mxfp4"),
    Native("deepseek-v3", "mxfp4", {"num_hidden_layers": 2}, "DeepseekV3MoE", "mxfp4"),
    Native("gpt-oss", "fp8-block128", {"hidden_size": 128, "intermediate_size": 128, "num_hidden_layers": 2},
           "GptOssMLP", "fp8-block"))}
NATIVE_FAST = ("deepseek-v3-fp8-block128", "deepseek-v3-fp8-block128-ue8m0", "gpt-oss-mxfp4")  # each model's own


def _native_params(fast: tuple[str, ...]) -> list:
    return [pytest.param(name, marks=() if name in fast else pytest.mark.slow) for name in NATIVE]


def _resized_model(native: Native, monkeypatch) -> torch.nn.Module:
    """The float tiny family of NATIVE, resized."""
    base = TINY[native.family]
    name = f"{native.family}-{native.recipe}"
    monkeypatch.setitem(TINY, name, dataclasses.replace(base, config={**base.config, **native.changes}))
    return build_tiny(name)


def _native_model(native: Native, monkeypatch) -> torch.nn.Module:
    model = _resized_model(native, monkeypatch)
    quantize_(model, config_from_name(native.recipe))
    return model


@pytest.mark.parametrize("name", _native_params(NATIVE_FAST))
def test_native_experts_run_their_grouped_gemm(name: str, launches: Counter, gemm_formats, monkeypatch) -> None:
    """DeepSeek-V3's FP8 128 x 128 blocks (float32 or UE8M0 scales) and gpt-oss's MXFP4 (and, slow, each in the
    other's model): the stacked codes and scales run fused_moe's FP8-block / MXFP4 grouped GEMM in the
    interpreter, and the prompt logits and an 8-step greedy decode are those of the same quantized model on
    transformers."""
    native = NATIVE[name]
    report, _ = _quantized_parity(_native_model(native, monkeypatch), STEPS)
    assert native.block in report.accelerated, report.line()
    assert {"route", "fused_moe"} <= set(launches), dict(launches)
    assert set(gemm_formats) == {(native.format, native.format)}


@pytest.mark.parametrize("name", _native_params(()))
def test_native_experts_on_the_references(name: str, launches: Counter, monkeypatch) -> None:
    """Without Triton the same stacks are dequantized for the torch reference (what a plain CPU runs; by default
    the native-checkpoint test below takes this path)."""
    monkeypatch.setattr(_ops, "triton_runs", lambda t: False)
    report, _ = _quantized_parity(_native_model(NATIVE[name], monkeypatch), 4)
    assert NATIVE[name].block in report.accelerated, report.line()
    assert not launches


def test_experts_no_gemm_takes_stay_on_transformers() -> None:
    """FP8 per channel and NVFP4 have no grouped GEMM; FP8 blocks must not straddle the gate/up seam (the tiny
    DeepSeek-V3's experts are 32 wide)."""
    model = build_tiny("mixtral")
    quantize_(model, config_from_name("fp8-channel"))
    assert accelerate_(model).line() == (
        "kernels: MixtralAttention x2 (attention); not accelerated: MixtralSparseMoeBlock x2 (gate/up experts are "
        "e4m3-g64 fp32 scales: no fused_moe GEMM takes that format)")
    model = build_tiny("gpt-oss")
    quantize_(model, config_from_name("nvfp4"))
    assert "GptOssMLP x4 (gate_up_proj experts are e2m1-g16 e4m3 scales: no fused_moe GEMM takes that format)" in \
        accelerate_(model).line()
    model = build_tiny("deepseek-v3")
    quantize_(model, config_from_name("fp8-block128"))
    assert "DeepseekV3MoE x2 (expert width 32 is not a multiple of the 128-row scale blocks (gate and up rows are " \
        "stacked))" in accelerate_(model).line()


def _fp8_checkpoint(model: torch.nn.Module, folder: Path) -> dict[str, QuantizedWeight]:
    """DeepSeek-V3.1's layout for every routed expert Linear (e4m3 weight, power-of-two float32 weight_scale_inv
    per 128 x 128 block), read back by the FP8 checkpoint reader."""
    tensors = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and expert_of(name):
            codes, scale = fp8_quantize(module.weight.detach(), (128, 128), ue8m0=True)
            tensors[f"{name}.weight"], tensors[f"{name}.weight_scale_inv"] = codes, decode_scale(scale)
    save_file(tensors, folder / "model.safetensors")
    return read_fp8_blocks(folder, {"quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}})


def _mxfp4_checkpoint(model: torch.nn.Module, folder: Path) -> dict[str, QuantizedWeight]:
    """gpt-oss's layout for every fused expert parameter (E2M1 blocks, E8M0 scales), read back by the MXFP4
    checkpoint reader."""
    tensors = {}
    for path, (module, layout) in fused_experts(model).items():
        for matrix in layout.matrices:
            experts = [quantize_mxfp4_weight(expert_matrix(module, matrix, e)) for e in range(module.num_experts)]
            tensors[f"{path}.{matrix}_blocks"], tensors[f"{path}.{matrix}_scales"] = pack_mxfp4(experts)
    save_file(tensors, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "mxfp4"}}))
    return read_mxfp4_experts(folder)


# the model (NATIVE) -> (writer and reader of the native layout, the element the keep recipe carries, the stacked
# experts' format)
CHECKPOINTS = {"deepseek-v3-fp8-block128-ue8m0": (_fp8_checkpoint, "e4m3", ExpertFormat("e4m3", 8, 128, "e8m0", 128)),
               "gpt-oss-mxfp4": (_mxfp4_checkpoint, "e2m1", ExpertFormat("e2m1", 4, 32, "e8m0"))}


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_native_checkpoint_experts_are_stacked_as_stored(name: str, tmp_path: Path, monkeypatch) -> None:
    """Experts read from a native checkpoint (DeepSeek-V3.1's FP8 blocks with UE8M0 scales, gpt-oss's MXFP4) and
    kept by the `keep` recipe are stacked in their stored format for its grouped GEMM and give the kept model's
    own logits and greedy tokens (over the torch references: the GEMMs themselves are checked above)."""
    write, element, fmt = CHECKPOINTS[name]
    model = _resized_model(NATIVE[name], monkeypatch)
    quantize_(model, KeepSourceConfig(element=element), source_weights=write(model, tmp_path))
    monkeypatch.setattr(_ops, "triton_runs", lambda t: False)
    accelerated = [m for m in _quantized_parity(model, 4)[1].modules() if hasattr(m, "expert_formats")]
    assert accelerated and all(m.expert_formats == {"w13": fmt, "w2": fmt} for m in accelerated)
    assert gemm_for(fmt) is not None
