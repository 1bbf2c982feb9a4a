"""`retarget run`, `retarget bench`, compile's --json and gates, and readable output folders, on a tiny random
Llama with SmolLM2's tokenizer (the real artifact's clients are tests/test_clients.py)."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from typer.testing import CliRunner

from retarget.cli import app
from retarget.export.client_metadata import write_client_files
from retarget.export.onnx_export import export_quantized
from retarget.export.runtime import OrtCausalLM
from retarget.outdir import atomic_dir
from retarget.runner.bench import bench, read_bandwidth
from retarget.runner.chat import run
from retarget.runner.gates import GATE_MISSED

PROMPT = "Name a colour."


@pytest.fixture(scope="module")
def tiny(smollm2, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LlamaForCausalLM]:
    """An artifact folder as compile writes it (float weights), the model's end-of-sequence id set to the third
    token its greedy answer to PROMPT would produce, so the answer must stop after two."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=smollm2.model.config.vocab_size, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    out = tmp_path_factory.mktemp("tiny")
    export_quantized(model, {}, out)
    ids = smollm2.tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True)
    greedy = OrtCausalLM(out / "model.onnx").generate(ids, 8)
    model.config.eos_token_id = next(t for i, t in enumerate(greedy) if i >= 2 and t not in greedy[:i])
    write_client_files(SimpleNamespace(model=model, tokenizer=smollm2.tokenizer), out)
    return out, model


def _greedy_answer(path: Path, smollm2, messages: list[dict[str, str]], eos: int) -> str:
    ids = smollm2.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    new = OrtCausalLM(path / "model.onnx").generate(ids, 16, stop=frozenset({eos}))
    return smollm2.tokenizer.decode(new, skip_special_tokens=True)


def test_run_streams_the_greedy_answer_and_stops_at_eos(tiny, smollm2) -> None:
    path, model = tiny
    out = io.StringIO()
    run(path, PROMPT, max_new_tokens=16, out=out)
    expected = _greedy_answer(path, smollm2, [{"role": "user", "content": PROMPT}], model.config.eos_token_id)
    assert out.getvalue() == expected + "\n"
    assert len(smollm2.tokenizer(expected, add_special_tokens=False)["input_ids"]) <= 2  # stopped at the EOS


def test_chat_keeps_the_conversation(tiny, smollm2) -> None:
    path, model = tiny
    out = io.StringIO()
    run(path, None, max_new_tokens=16, out=out, lines=iter([PROMPT, "And another?", "/exit", "ignored"]))
    first, second, _ = out.getvalue().split("\n")
    history = [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": first},
               {"role": "user", "content": "And another?"}]
    assert second == _greedy_answer(path, smollm2, history, model.config.eos_token_id)


def test_bench_json(tiny, tmp_path: Path) -> None:
    path, model = tiny
    result = bench(path, prompt_len=16, decode_tokens=8, repeats=3, json_path=tmp_path / "b.json")
    assert json.loads((tmp_path / "b.json").read_text()) == json.loads(json.dumps(result))
    for key in ("prefill_tokens_per_s", "decode_tokens_per_s"):
        entry = result[key]
        assert 0 < entry["p10"] <= entry["p50"] <= entry["p90"] <= entry["best"]
    # weights read per decode step: every float32 parameter but the embedding table (gathered one row a token; the
    # rotary tables likewise), and a few shape constants (int64 scalars) on top
    params = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n) * 4
    assert 0 <= result["bytes_per_decode_token"]["weights"] - params < 256
    # the cache: 2 layers x (key, value) x 2 kv heads x 16 dims x 4 bytes, at the mean context of 16 + 8 / 2
    assert result["bytes_per_decode_token"]["kv_cache"] == 2 * 2 * 2 * 16 * 4 * 20
    assert result["peak_rss_bytes"]["value"] >= result["peak_rss_bytes"]["before_load"] > 0
    assert result["versions"]["onnxruntime"] and result["date"]


def test_bandwidth_probe_reads_at_memory_speed() -> None:
    """Between 100 MB/s and 10 TB/s: a probe that measured the cache or did nothing would fall outside."""
    assert 1e8 < read_bandwidth(1, probe_bytes=64 * 2**20, repeats=2) < 1e13


def test_bench_and_run_refuse_a_folder_that_is_not_an_artifact(tmp_path: Path) -> None:
    for command in (["bench", str(tmp_path)], ["run", str(tmp_path / "missing"), "hi"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2 and "Traceback" not in result.output


def test_compile_json_and_gates(monkeypatch: pytest.MonkeyPatch) -> None:
    """--json prints the report on stdout; a missed gate exits GATE_MISSED (not 2, which is bad input)."""
    import retarget.compile

    measured = {"value": 0.05, "unit": "nats/token"}
    report = {"ort": {"quantized": {"kl_to_fp32": measured}, "decode_tokens_per_s": {"value": 100.0}}}
    monkeypatch.setattr(retarget.compile, "compile_model", lambda *a, **k: report)
    monkeypatch.setattr(retarget.compile, "print_summary", lambda *a, **k: None)
    passed = CliRunner().invoke(app, ["compile", "--json", "--max-kl", "0.1", "--min-decode", "50"])
    assert passed.exit_code == 0 and json.loads(passed.stdout) == report
    assert GATE_MISSED != 2
    for gate in (["--max-kl", "0.01"], ["--min-decode", "150"]):
        result = CliRunner().invoke(app, ["compile", *gate])
        assert result.exit_code == GATE_MISSED and "gate missed" in result.output


def test_output_folder_follows_the_umask(tmp_path: Path) -> None:
    """The folder and its files get the modes the umask asks for, whatever mode their writer chose."""
    mask = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "data").write_bytes(b"x")
            (tmp / "data").chmod(0o600)
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out" / "data").stat().st_mode) == 0o644
