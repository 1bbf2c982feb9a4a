"""`retarget compile` end to end on the bundled SmolLM2-135M with `keep` (the GGUF's own blocks, exact). What
'auto' picks is tested in tests/plan/test_auto_recipe.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retarget.compile import compile_model
from retarget.eval.verify import PARITY_ATOL


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("compile") / "smollm2"
    report = compile_model("default", target="cpu-x86", recipe="keep", out=out, eval_tokens=1024)
    return report, out


def test_artifact_files(compiled: tuple[dict, Path]) -> None:
    report, out = compiled
    names = {p.name for p in out.iterdir()}
    assert {"model.onnx", "model.onnx.data", "tokenizer.json", "recipe.json", "report.json", "report.md"} <= names
    assert json.loads((out / "report.json").read_text())["recipe"]["name"] == "keep"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".smollm2.")]  # no temporary left


def test_onnx_runtime_matches_torch(compiled: tuple[dict, Path]) -> None:
    report, _ = compiled
    assert report["ort"]["parity_max_abs_logit_diff"]["value"] <= PARITY_ATOL
    assert report["onnx"]["linears_lowered"] == 211  # every Linear, lm_head included (some fused in one node)


def test_kept_blocks_have_fp32_perplexity(compiled: tuple[dict, Path]) -> None:
    report, _ = compiled
    fp32 = report["torch"]["fp32"]["perplexity"]["value"]
    kept = report["torch"]["quantized"]["perplexity"]["value"]
    assert kept == pytest.approx(fp32, rel=1e-5)
    # int8 activations in ORT (accuracy_level 4) cost a little; bounded
    assert report["ort"]["quantized"]["perplexity"]["value"] == pytest.approx(fp32, rel=0.03)


def test_generation_and_speed_are_measured(compiled: tuple[dict, Path]) -> None:
    report, _ = compiled
    assert "Paris" in report["ort"]["generation"]["text"]
    for key in ("prefill_tokens_per_s", "decode_tokens_per_s"):
        entry = report["ort"][key]
        assert entry["provenance"] == "measured" and entry["value"] > 0
        assert entry["machine"]["versions"]["onnxruntime"]
