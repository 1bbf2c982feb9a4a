"""`retarget inspect`: registry names, HF folders and config.json paths; JSON output; one-line errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from retarget.cli import app
from retarget.models.inspect import format_bits, inspect_model

runner = CliRunner()
SMOLLM2 = dict(model_type="llama", hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
               num_key_value_heads=3, intermediate_size=1536, vocab_size=49152, tie_word_embeddings=True)


def test_inspect_json_for_a_folder(tmp_path):
    folder = tmp_path / "SmolLM2-135M"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(SMOLLM2))
    result = runner.invoke(app, ["inspect", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["name"] == "SmolLM2-135M"
    assert report["kv_cache"]["bytes_per_token_bf16"]["value"] == 2 * 30 * 3 * 64 * 2
    assert report["kv_cache"]["bytes_per_sequence_4k_bf16"]["value"] == 23040 * 4096
    assert report["params_total"]["provenance"] == "predicted"
    assert report["moe"] is None and report["ssm"] is None


def test_inspect_registry_model_table():
    result = runner.invoke(app, ["inspect", "gpt-oss-20b"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    for text in ("openai/gpt-oss-20b", "sliding window 128 +sinks", "mxfp4", "top-4", "h100-sxm"):
        assert text in result.output


def test_native_weight_bytes_use_the_native_format():
    report = inspect_model("gpt-oss-120b")
    native, bf16 = report["weight_bytes"]["native"]["value"], report["weight_bytes"]["bf16"]["value"]
    assert 0.25 < native / bf16 < 0.32  # ~90% of weights in MXFP4 (4.25 bits), the rest bf16
    assert report["published_params_total"]["provenance"] == "published"
    assert report["published_params_total"]["url"].startswith("https://github.com/openai/gpt-oss")
    assert format_bits("fp8-e4m3-block128") == 8 and format_bits("mxfp4") == 4.25


def test_inspect_list():
    result = runner.invoke(app, ["inspect", "--list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 34
    assert sum("error" in row for row in rows) == 1  # Falcon-H1-34B: sizes not read from any source


def test_errors_are_one_line_with_exit_2(tmp_path):
    result = runner.invoke(app, ["inspect", "mixtral-8x7"])
    assert result.exit_code == 2 and "mixtral-8x7b" in result.output
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({**SMOLLM2, "num_hidden_layers": "many"}))
    result = runner.invoke(app, ["inspect", str(bad)])
    assert result.exit_code == 2
    assert "config.json" in result.output and "num_hidden_layers" in result.output
    bad.write_text("{not json")
    assert runner.invoke(app, ["inspect", str(bad)]).exit_code == 2
