"""Decode and prefill speed in ONNX Runtime on this machine, measured in one run: the fp32 export of
SmolLM2-135M against our 4-bit artifacts (INT4 g128 re-quantized, and the GGUF's own Q4_1 blocks kept).

    make bench        # writes bench/results/cpu-onnx.json with the machine, versions and ratios
"""

from __future__ import annotations

import copy
import datetime
import json
import time
from pathlib import Path

import numpy as np
import pytest

from retarget import provenance
from retarget.export.onnx_export import export_float, export_quantized, write_accuracy_variant
from retarget.export.runtime import OrtCausalLM
from retarget.quantize import QuantLinear, config_from_name, quantize_

PROMPT = 128
RESULTS = Path(__file__).parent / "results" / "cpu-onnx.json"
ARTIFACTS = ["fp32", "int4-g128-asym", "keep"]
_measured: dict[str, dict[str, float]] = {}


@pytest.fixture(scope="module")
def runtimes(smollm2, tmp_path_factory: pytest.TempPathFactory) -> dict[str, OrtCausalLM]:
    sessions = {}
    for name in ARTIFACTS:
        out = tmp_path_factory.mktemp(name)
        if name == "fp32":
            path = export_float(smollm2.model, out)
        else:
            model = copy.deepcopy(smollm2.model)
            quantize_(model, config_from_name(name), smollm2.source_weights)
            qweights = {n: m.qweight for n, m in model.named_modules() if isinstance(m, QuantLinear)}
            export_quantized(smollm2.model, qweights, out, accuracy_level=0)
            path = write_accuracy_variant(out / "model.onnx", 4, out / "model.onnx")  # the CPU recipe's level
        sessions[name] = OrtCausalLM(path)
    return sessions


@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_prefill(benchmark, runtimes, artifact: str) -> None:
    rt = runtimes[artifact]
    ids = np.random.default_rng(0).integers(100, 10_000, (1, PROMPT))
    benchmark.pedantic(rt.forward, args=(ids, rt.empty_past()), rounds=5, warmup_rounds=1)
    _measured.setdefault(artifact, {})["prefill_tokens_per_s"] = PROMPT / benchmark.stats.stats.median


@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_decode(benchmark, runtimes, artifact: str) -> None:
    rt = runtimes[artifact]
    ids = np.random.default_rng(0).integers(100, 10_000, (1, PROMPT))
    _, past = rt.forward(ids, rt.empty_past())
    step = np.array([[42]])
    benchmark.pedantic(rt.forward, args=(step, past), rounds=50, warmup_rounds=3)
    _measured.setdefault(artifact, {})["decode_tokens_per_s"] = 1 / benchmark.stats.stats.median


def interleaved_decode(runtimes: dict[str, OrtCausalLM], rounds: int = 40) -> dict[str, float]:
    """Decode tokens/s per artifact with the artifacts taking turns step by step, so that load from
    anything else on the machine falls on all of them alike (medians)."""
    ids = np.random.default_rng(0).integers(100, 10_000, (1, PROMPT))
    pasts = {name: rt.forward(ids, rt.empty_past())[1] for name, rt in runtimes.items()}
    times: dict[str, list[float]] = {name: [] for name in runtimes}
    for _ in range(rounds):
        for name, rt in runtimes.items():
            t0 = time.perf_counter()
            rt.forward(np.array([[42]]), pasts[name])
            times[name].append(time.perf_counter() - t0)
    return {name: 1 / float(np.median(t)) for name, t in times.items()}


@pytest.fixture(scope="module", autouse=True)
def write_results(runtimes):
    """After the module (a plain test would be skipped under --benchmark-only): record the run."""
    yield
    if len(_measured) < len(ARTIFACTS):
        return
    for name, tokens_s in interleaved_decode(runtimes).items():
        _measured[name]["decode_tokens_per_s_interleaved"] = tokens_s
    base = _measured["fp32"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "command": "make bench (pytest bench/test_onnx_speed.py --benchmark-only)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": provenance.machine(),
        "setup": f"SmolLM2-135M, batch 1, prefill {PROMPT} tokens, decode one token after {PROMPT}; medians; "
                 "*_interleaved: the artifacts take turns step by step (fair under background load)",
        "results": {name: {**vals, **{f"{k}_vs_fp32": vals[k] / base[k] for k in vals}}
                    for name, vals in _measured.items()},
    }, indent=2))
