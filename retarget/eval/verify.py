"""Verify a compiled ONNX decoder against the torch model it came from: logit parity, a KV-cache decode
against transformers' own cached decode, and greedy tokens.

Parity is that of the lowering itself: the artifact with fp32 activations (MatMulNBits accuracy_level 0)
against the torch quantized model. Three cases need a stand-in on one side:
    W8A8: a per-token rounding flip in one runtime and not the other grows over 30 layers (measured max
        |dlogit| 2.9 on SmolLM2), so parity checks weights + smoothing with float activations in both runtimes
        (`float_activations`, and a twin graph exported the same way); the activation quantization itself is
        compared through the ORT-vs-torch perplexity and KL
    FP4: ORT's CPU provider has no float4 DequantizeLinear kernel, so a copy whose DequantizeLinear nodes ONNX's
        reference implementation computed is checked, evaluated and timed (retarget.export.qdq)
    quantized KV cache: each runtime rounding its own states drifts apart (retarget.export.kv_parity), so
        torch replays ORT's cache, and ORT's codes are checked against torch's rounding separately
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from retarget.export.kv_parity import CODE_MISMATCH_TOLERANCE, SCALE_RTOL, replay_parity
from retarget.export.runtime import OrtCausalLM

PARITY_TOKENS = 128
# ORT's MatMulNBits (accuracy_level 0: fp32 activations) and torch's dequantize-then-matmul differ only in
# summation order; over 30 layers that stays well below this, while one wrong block or nibble order breaks it.
PARITY_ATOL = 1e-2
DECODE_STEPS = 64
GREEDY_TOKENS = 32


def float_activations(model: nn.Module) -> nn.Module:
    """A copy of MODEL whose QuantLinears keep their smoothing but take float activations (W8A8's parity twin)."""
    from retarget.quantize import QuantLinear

    twin = copy.deepcopy(model)
    for module in twin.modules():
        if isinstance(module, QuantLinear):
            module.act = None
    return twin


def logit_parity(exact: OrtCausalLM, model: nn.Module, kv_cache: Any, kv_element: str | None,
                 ids: torch.Tensor) -> tuple[float, dict[str, Any]]:
    """Max |logit difference| of EXACT (the artifact at fp32 activations) against MODEL on IDS [1, L], and for a
    quantized KV cache (KV_CACHE, its element KV_ELEMENT) the replayed parity (retarget.export.kv_parity).
    Raises if either is out of tolerance."""
    from retarget.quantize.kv_cache import kv_logits_fn

    with torch.inference_mode():
        torch_logits = kv_logits_fn(model, kv_cache)(ids)
    max_diff = (exact.logits(ids) - torch_logits).abs().max().item()
    kv_parity: dict[str, Any] = {}
    if kv_element is not None:
        kv_parity = {"free_running_max_abs_logit_diff": max_diff, **replay_parity(exact, model, kv_element, ids)}
        max_diff = kv_parity["max_abs_logit_diff"]
        if not (kv_parity["code_mismatch_fraction"] <= CODE_MISMATCH_TOLERANCE
                and kv_parity["scale_max_rel_diff"] <= SCALE_RTOL):
            raise RuntimeError(f"ONNX Runtime's KV cache disagrees with torch's: scales up to "
                               f"{kv_parity['scale_max_rel_diff']:.3g} apart, "
                               f"{kv_parity['code_mismatch_fraction']:.3g} of the codes differ")
    if not max_diff <= PARITY_ATOL:
        raise RuntimeError(f"ONNX Runtime disagrees with torch: max |logit diff| {max_diff:.3g}")
    return max_diff, kv_parity


def decode_prompt_length(model: nn.Module, steps: int = DECODE_STEPS) -> int:
    """A prompt length after which STEPS decode steps cross every sliding window of MODEL (8 without one)."""
    from retarget.export.decoder import describe

    windows = [w for layer in describe(model).layers if (w := getattr(layer.mixer, "window", None))]
    limit = int(model.config.max_position_embeddings) - steps - 1
    return max(8, min(max(windows, default=0) - steps // 2, limit))


@dataclass
class DecodeCheck:
    """ORT's cached decode against transformers' on the same tokens: max |logit diff| over STEPS steps after a
    PROMPT-token prefill, and the greedy tokens each runtime generates (equal, or the first step they differ and
    the top-2 logit gap of transformers there: a near tie within the parity tolerance is not an error)."""

    prompt: int
    steps: int
    max_abs_logit_diff: float
    greedy_tokens: int
    greedy_equal: bool
    first_divergence: int | None
    divergence_gap: float | None


def decode_check(runtime: OrtCausalLM, model: nn.Module, ids: list[int], steps: int = DECODE_STEPS,
                 greedy: int = GREEDY_TOKENS) -> DecodeCheck:
    """Prefill IDS, then decode STEPS tokens with transformers' cache, each time feeding its greedy token to
    both runtimes and comparing their logits; then ORT generates GREEDY tokens on its own (its own argmax),
    which must be transformers' first GREEDY choices."""
    from retarget.eval.reference_cache import positions, reference_cache

    prompt = torch.tensor([ids])
    expected: list[int] = []
    gaps: list[float] = []
    with torch.inference_mode():
        cache = reference_cache(model)
        torch_last = model(input_ids=prompt, past_key_values=cache, use_cache=True,
                           cache_position=positions(0, len(ids))).logits[0, -1]
        ort_last = runtime.start(prompt.numpy(), len(ids) + steps + 1)
        worst = float(np.abs(ort_last - torch_last.numpy()).max())
        for step in range(steps):
            top2 = torch_last.topk(2)
            expected.append(int(top2.indices[0]))
            gaps.append(float(top2.values[0] - top2.values[1]))
            token = top2.indices[:1].view(1, 1)
            torch_last = model(input_ids=token, past_key_values=cache, use_cache=True,
                               cache_position=positions(len(ids) + step, 1)).logits[0, -1]
            ort_last = runtime.step(token.numpy())
            worst = max(worst, float(np.abs(ort_last - torch_last.numpy()).max()))
    if not worst <= PARITY_ATOL:
        raise RuntimeError(f"ONNX Runtime's cached decode disagrees with transformers': max |logit diff| {worst:.3g}")
    got = runtime.generate(ids, greedy)
    first = next((i for i, (a, b) in enumerate(zip(expected[:greedy], got, strict=True)) if a != b), None)
    gap = None if first is None else gaps[first]
    if gap is not None and gap > 2 * PARITY_ATOL:
        raise RuntimeError(f"ONNX Runtime's greedy decode differs from transformers' at token {first} "
                           f"(top-2 logit gap {gap:.3g}, not a near tie)")
    return DecodeCheck(len(ids), steps, worst, greedy, first is None, first, gap)


def verify_artifact(quantized: nn.Module, plan: Any, folder: Path, tokens: list[int], progress: Any = None,
                    task: Any = None) -> tuple[OrtCausalLM, dict[str, Any]]:
    """Logit parity and the cached decode + greedy check of FOLDER's artifact (written by
    retarget.export.onnx_export.export_artifact for PLAN) against QUANTIZED, on TOKENS, through its exact copy
    FOLDER/parity.onnx (fp32 activations; FP4: ONNX's reference DequantizeLinear). Returns the runtime that
    evaluation and speed use (the artifact itself where ORT's CPU provider runs it) and the report's
    verification entries. PROGRESS / TASK: a rich progress bar advanced twice."""
    from retarget import provenance
    from retarget.export.onnx_export import write_accuracy_variant
    from retarget.export.qdq import write_reference_dequantized
    from retarget.report.compile_report import decode_entry, kv_parity_entry

    twin = (folder / "parity").is_dir()
    parity_model = float_activations(quantized) if twin else quantized
    source = folder / "parity" / "model.onnx" if twin else folder / "model.onnx"
    exact_path = (write_accuracy_variant(source, 0, source.parent / "parity.onnx") if plan.runs_on_cpu
                  else write_reference_dequantized(source, source.parent / "parity.onnx"))
    exact = OrtCausalLM(exact_path, qdq_accuracy_level=0, spin=False)  # spinning threads would starve torch's
    ids = torch.tensor([tokens[:PARITY_TOKENS]])
    max_diff, kv_parity = logit_parity(exact, parity_model, plan.kv_cache, plan.kv_element, ids)
    _advance(progress, task)
    decode = None
    if plan.kv_cache is None:  # a quantized cache drifts by rounding flips: its parity is the replay above
        decode = decode_check(exact, parity_model, tokens[:decode_prompt_length(parity_model)])
    _advance(progress, task)
    runtime = (OrtCausalLM(folder / "model.onnx", qdq_accuracy_level=plan.accuracy_level) if plan.runs_on_cpu
               else exact)
    note = (f"{plan.lowering} with fp32 activations (accuracy_level 0) vs the torch quantized model"
            + ("" if plan.kv_cache is None else f", torch reading ORT's {plan.kv_cache.name} cache"))
    return runtime, {
        "parity_max_abs_logit_diff": provenance.measured(max_diff, "logit", tolerance=PARITY_ATOL,
                                                         tokens=PARITY_TOKENS, note=note),
        "kv_cache_parity": kv_parity_entry(kv_parity, plan.kv_cache, CODE_MISMATCH_TOLERANCE, SCALE_RTOL,
                                           PARITY_TOKENS),
        "decode": decode_entry(decode, PARITY_ATOL)}


def remove_parity_copies(folder: Path) -> None:
    """Delete the exact copies and the parity twin `verify_artifact` read from FOLDER."""
    for path in folder.glob("parity.onnx*"):
        path.unlink()
    shutil.rmtree(folder / "parity", ignore_errors=True)


def _advance(progress: Any, task: Any) -> None:
    if progress is not None:
        progress.advance(task)
