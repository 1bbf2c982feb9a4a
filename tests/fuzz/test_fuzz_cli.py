"""Commands called in-process with fuzzed files and options: a profile YAML, `--set`, predict's options,
an HF config.json, a measurements CSV, `--workers`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from retarget.hw_profiles.loader import PROFILE_DIR
from tests.fuzz.conftest import assert_clean, finite_json, invoke

BAD_NUMBERS = st.one_of(
    st.sampled_from(["inf", "-inf", "nan", ".nan", "true", "1e400", "9" * 5000, "0", "-5", "1e-320", "abc", "",
                     "[1, 2]", "{a: 1}", "0x10", "1e12"]),
    st.integers(min_value=-(2**80), max_value=2**80).map(str), st.floats().map(repr))


@given(field=st.sampled_from(["memory_gb", "mem_bw_gb_s", "onchip_mb", "tdp_w", "peak_tflops.bf16",
                              "launch_year"]), value=BAD_NUMBERS)
def test_profile_yaml_numbers(tmp_path: Path, field: str, value: str) -> None:
    raw = yaml.safe_load((PROFILE_DIR / "h100-sxm.yaml").read_text())
    node = raw["peak_tflops"]["bf16"] if field == "peak_tflops.bf16" else raw.get(field)
    if isinstance(node, dict):
        node["value"] = yaml.safe_load(value) if len(value) < 100 else value
    else:
        raw[field] = yaml.safe_load(value) if len(value) < 100 else value
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    code, out, err = invoke("profiles", "show", str(path), "--json")
    assert_clean(code, out, err, str(path))
    if code == 0:
        finite_json(out)


@given(key=st.sampled_from(["memory_gb", "mem_bw_gb_s", "fp8", "bf16", "tdp_w", "launch_year", "fp8_variant",
                            "native_formats", "no_such_field", "peak_tflops.int8"]), value=BAD_NUMBERS)
def test_predict_set(key: str, value: str) -> None:
    code, out, err = invoke("predict", "llama-3.1-8b", "--target", "h100-sxm", "--set", f"{key}={value}", "--json")
    assert_clean(code, out, err, "--set", key)
    if code == 0:
        finite_json(out)


@given(option=st.sampled_from(["--batch", "--ctx", "--prompt-len", "--devices"]),
       value=st.sampled_from(["0", "-1", "1", "7", "4096", "9" * 400, "1e3", "x"]) | st.integers(-5, 2**70).map(str))
def test_predict_options(option: str, value: str) -> None:
    code, out, err = invoke("predict", "llama-3.1-8b", option, value, "--json")
    if code == 2 and "Usage" in out + err:  # click's own parse error (not an integer): exit 2, names the option
        assert option in out + err and "Traceback" not in out + err
        return
    assert_clean(code, out, err, option, "--devices")  # a batch or context that does not fit names --devices
    if code == 0:
        finite_json(out)


@pytest.mark.parametrize("args", [["predict", "x" * 100_000], ["inspect", "x" * 100_000],
                                  ["predict", "llama-3.1-8b", "--recipe", "int4-g0-asym"],
                                  ["predict", "llama-3.1-8b", "--target", "/dev/zero"],
                                  ["profiles", "show", "/proc/self/mem"], ["kernels", "--workers", "-1"],
                                  ["kernels", "--workers", "100000"], ["compile", "--eval-tokens", "-5"]])
def test_bad_names_and_options(args: list[str]) -> None:
    code, out, err = invoke(*args)
    assert code == 2 and "Traceback" not in out + err, (code, out[-500:], err[-500:])
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err


LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
         "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
         "vocab_size": 128256, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
         "eos_token_id": 128001, "bos_token_id": 128000, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
CONFIG_VALUES = st.one_of(st.integers(-(2**80), 2**80), st.floats(), st.booleans(), st.none(), st.text(max_size=8),
                          st.lists(st.integers(-3, 200_000), max_size=3), st.sampled_from([1e30, 2**70, -1, 0, 1.5]))


@given(key=st.sampled_from(sorted(LLAMA)), value=CONFIG_VALUES)
def test_inspect_config_json(tmp_path: Path, key: str, value: object) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**LLAMA, key: value}))
    code, out, err = invoke("inspect", str(path), "--json")
    assert_clean(code, out, err, str(path))
    if code == 0:
        finite_json(out)


HEADER = ("source_url,model,params,quant_format,hardware,num_devices,engine,phase,batch_size,input_len,output_len,"
          "metric,value,notes")
ROW = ["https://example.org", "Llama-3.1-8B", "8B", "BF16", "NVIDIA H100 SXM 80GB", "1", "vLLM", "decode", "1",
       "128", "128", "tokens/s", "100", ""]
CELLS = st.one_of(st.sampled_from(["0", "-5", "inf", "-inf", "nan", "abc", "", "1e-320", "1e400", "9" * 400,
                                   '"unterminated', "x" * 20_000, "3 context + 5 (0 tokens/step)"]),
                  st.text(max_size=12))


@given(edits=st.lists(st.tuples(st.integers(0, len(ROW) - 1), CELLS), max_size=3), rows=st.integers(1, 3))
def test_validate_csv(tmp_path: Path, edits: list[tuple[int, str]], rows: int) -> None:
    row = list(ROW)
    for index, cell in edits:
        row[index] = cell
    line = ",".join(f'"{c}"' if "," in c else c for c in row)
    path = tmp_path / "m.csv"
    path.write_text("\n".join([HEADER, *[line] * rows]) + "\n")
    report = tmp_path / "r.json"
    report.unlink(missing_ok=True)  # tmp_path is shared by the examples of one test
    code, out, err = invoke("validate", str(path), "--json", str(report))
    assert_clean(code, out, err, str(path))
    if code == 0:
        finite_json(report.read_text())
    else:
        assert not report.exists()


@pytest.mark.parametrize("content", [b"\xff\xfe" + "a,b\n".encode("utf-16-le"), "é,ü\n".encode("latin-1"),
                                     b"\x00\x01binary", b""])
def test_validate_csv_encodings(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(content)
    assert_clean(*invoke("validate", str(path)), str(path))


@pytest.mark.parametrize("setting, field", [("nosuch.fp8=560", "nosuch"), ("scale_compute=nan", "--set"),
                                            ("scale_bandwidth=1e400", "--set"), ("h100-sxm.memory_gb=inf", "memory_gb"),
                                            ("memory_gb=" + "9" * 5000, "memory_gb")])
def test_lockin_set(tmp_path: Path, setting: str, field: str) -> None:
    """A what-if on a device no bundled profile or target names, or a number that is not finite, is refused before any
    work (a bundled non-target can be a model's home device: its what-if applies and is echoed)."""
    out = tmp_path / "lockin"
    code, stdout, err = invoke("lockin", "--models", "llama-3.1-8b", "--targets", "h100-sxm", "--set", setting,
                               "--out", str(out))
    assert_clean(code, stdout, err, field)
    assert code == 2 and not out.exists() and list(tmp_path.iterdir()) == []
