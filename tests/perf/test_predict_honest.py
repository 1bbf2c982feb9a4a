"""`retarget predict` answers honestly: no speed for what does not fit, compile recipe names and `native`,
context limits, and a stated confidence."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from retarget.cli import app
from retarget.models.registry import get_spec
from retarget.perf.recipes import resolve_recipe

runner = CliRunner()


def _predict(*args: str):
    return runner.invoke(app, ["predict", *args], env={"COLUMNS": "400"})


def test_a_model_that_does_not_fit_gets_no_speed_but_the_smallest_fit():
    result = _predict("deepseek-v3", "--target", "h100-sxm")
    assert result.exit_code == 2 and "tokens/s" not in result.output
    # 671B FP8 weights (1 byte each, spec arithmetic) over 72 GB usable per H100: 8 devices hold 576 GB,
    # so native needs 16; 4-bit weights (~0.53 bytes/param incl. scales, bf16 embeddings) fit 8
    assert "--devices 16 --recipe native" in result.output
    assert "--devices 8 --recipe int4-g128-asym" in result.output
    assert "Traceback" not in result.output
    assert _predict("deepseek-v3", "--target", "h100-sxm", "--devices", "16", "--json").exit_code == 0


def test_context_beyond_the_model_maximum_is_an_error():
    result = _predict("llama-3.1-8b", "--ctx", "1000000")
    assert result.exit_code == 2 and "131072" in result.output and "--ctx" in result.output


def test_native_is_the_checkpoint_format_and_every_prediction_states_confidence():
    result = _predict("gpt-oss-20b", "--target", "h100-sxm", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["recipe"] == "native" and data["workload"]["expert_format"] == "mxfp4"
    assert data["confidence"]["profile"] == "high" and "nvidia-hopper / tuned" in data["confidence"]["summary"]


def test_compile_recipe_names_map_to_their_number_formats():
    spec = get_spec("llama-3.1-8b")
    assert resolve_recipe("gptq-int4-g128-asym", spec).weights == "int4-g128-asym"
    assert resolve_recipe("w8a8-int8", spec).weights == "int8"
    assert resolve_recipe("fp8-block128+kv-fp8", spec).kwargs("bf16") == {
        "weight_format": "fp8", "expert_format": None, "kv_format": "fp8"}
    assert resolve_recipe("keep", get_spec("deepseek-v3")).weights == "fp8-e4m3-block128"
    result = _predict("llama-3.1-8b", "--recipe", "int5-magic")
    assert result.exit_code == 2 and "gptq-int4-g128-asym" in result.output


@pytest.mark.parametrize("recipe, bits", [("native", 16), ("awq-int4-g128-asym", 4 + 32 / 128)])
def test_recipe_sets_the_weight_bytes(recipe, bits):
    data = json.loads(_predict("llama-3.1-8b", "--recipe", recipe, "--json").output)
    spec = get_spec("llama-3.1-8b")
    linear = spec.params_total - spec.params_embedding - spec.params_lm_head
    # 4-bit g128 asym adds an fp16 scale and zero per 128 weights; embeddings and LM head stay bf16
    expected = linear * bits / 8 + (spec.params_embedding + spec.params_lm_head) * 2
    assert data["memory"]["weights_gb"]["value"] * 1e9 == pytest.approx(expected, rel=1e-6)


def test_an_unvalidated_engine_names_the_engines_validated_on_that_family():
    """No Gaudi row is predicted with the `tuned` engine; the confidence line says so and names the engines whose
    published Gaudi runs were predicted."""
    data = json.loads(_predict("llama-3.1-8b", "--target", "gaudi3", "--engine", "tuned", "--json").output)
    summary = data["confidence"]["summary"]
    assert "intel-gaudi / tuned has been predicted: unvalidated" in summary
    assert "validated with --engine optimum-habana" in summary


@pytest.mark.parametrize("target, engine", [("gaudi3", "optimum-habana"), ("m2-ultra", "llama.cpp-metal"),
                                            ("ryzen-9-7950x", "llama.cpp"), ("rx-7900xtx", "llama.cpp-hip"),
                                            ("h100-sxm", "tuned")])
def test_without_engine_predict_applies_the_family_stack_it_was_validated_on(target, engine):
    data = json.loads(_predict("llama-3.1-8b", "--target", target, "--recipe", "q4_k_m", "--json").output)
    assert data["workload"]["engine"] == engine
    assert "validated on published measurements of" in data["confidence"]["summary"]
    same = json.loads(_predict("llama-3.1-8b", "--target", target, "--recipe", "q4_k_m", "--engine", engine,
                               "--json").output)
    assert same["decode_tokens_s"] == data["decode_tokens_s"]


def test_llama_cpp_engines_split_layers_across_devices_by_default():
    """llama.cpp is modelled only as a layer split: two Radeons get pp without being told."""
    data = json.loads(_predict("llama-3.1-70b", "--target", "rx-7900xtx", "--devices", "2", "--recipe", "q4_k_m",
                               "--json").output)
    assert data["workload"]["parallelism"] == "pp"
    told = _predict("llama-3.1-70b", "--target", "rx-7900xtx", "--devices", "2", "--recipe", "q4_k_m",
                    "--parallelism", "tp")
    assert told.exit_code == 2 and "--parallelism pp only" in told.output



def test_every_family_default_is_a_known_engine_validated_on_that_family():
    """A family's own default (not the fallback `tuned`) must name an engine that published runs on that family
    were predicted with (validation_summary.json, written by the validation doc)."""
    from retarget.hw_profiles import list_profiles
    from retarget.perf.confidence import SUMMARY_FILE, group_key
    from retarget.perf.efficiency import default_engine, engines

    groups = json.loads(SUMMARY_FILE.read_text())["groups"]
    families = {profile.family for profile in list_profiles()}
    chosen = {family: default_engine(family) for family in families}
    assert set(chosen.values()) <= set(engines())
    assert {"apple", "cpu", "amd-rdna3", "intel-gaudi"} <= {f for f, e in chosen.items() if e != "tuned"}
    assert all(group_key(f, e) in groups for f, e in chosen.items() if e != "tuned")
