"""Decode and prefill speed in ONNX Runtime on this machine, measured in one run: the fp32 export of
SmolLM2-135M against our 4-bit artifacts (INT4 g128 re-quantized, and the GGUF's own Q4_1 blocks kept).

    make bench        # writes bench/results/cpu-onnx.json with the machine, versions and ratios
"""

from __future__ import annotations

import copy
import datetime
import json
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


def test_write_results() -> None:
    """Record the run (machine, versions, ratios to fp32) for the README."""
    if len(_measured) < len(ARTIFACTS):
        pytest.skip("run the whole module")
    base = _measured["fp32"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "command": "make bench (pytest bench/test_onnx_speed.py --benchmark-only)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": provenance.machine(),
        "setup": f"SmolLM2-135M, batch 1, prefill {PROMPT} tokens, decode one token after {PROMPT}; medians",
        "results": {name: {**vals, **{f"{k}_vs_fp32": vals[k] / base[k] for k in vals}}
                    for name, vals in _measured.items()},
    }, indent=2))
