"""`retarget compile --recipe kv-int8` end to end on the bundled SmolLM2-135M (about 90 s: slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from retarget.compile import compile_model
from retarget.eval.verify import PARITY_ATOL
from retarget.export.kv_parity import CODE_MISMATCH_TOLERANCE


@pytest.mark.slow
def test_compile_kv_int8(tmp_path: Path) -> None:
    report = compile_model("default", target="cpu-x86", recipe="kv-int8", out=tmp_path / "kv", eval_tokens=1024)
    ort = report["ort"]
    assert report["recipe"]["kv_cache"]["element"] == "int8" and report["recipe"]["lowering"] == "float"
    assert ort["parity_max_abs_logit_diff"]["value"] <= PARITY_ATOL
    assert ort["kv_cache_parity"]["code_mismatch_fraction"]["value"] <= CODE_MISMATCH_TOLERANCE
    # ORT and torch each quantize their own cache: the perplexities agree closely, not exactly
    assert ort["quantized"]["perplexity"]["value"] == pytest.approx(
        report["torch"]["quantized"]["perplexity"]["value"], rel=0.01)
    assert "Paris" in ort["generation"]["text"]
    # per token: an int8 code per cached value and a float32 scale per head_dim row, keys and values, all layers
    layers, kv_heads, head_dim = 30, 3, 64  # SmolLM2-135M (config.json)
    assert ort["kv_cache_bytes_per_token"]["value"] == 2 * layers * kv_heads * (head_dim + 4)
    assert report["onnx"]["linears_lowered"] == 0  # kv-int8 alone keeps float weights
