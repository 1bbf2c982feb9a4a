"""Pipeline stages of tensor-parallel groups (TP x PP, `predict --pp`): the step, the hand-offs, the memory per
device, the validation labels that state them, and the CLI's refusals."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from retarget.cli import app
from retarget.errors import RetargetError
from retarget.hw_profiles import load_profile
from retarget.models.registry import get_spec
from retarget.perf.efficiency import efficiency, multi_node
from retarget.perf.model import activation_bytes, predict, resolve_formats, weight_bytes
from retarget.perf.validate import plan_row

ROW = {"source_url": "https://example.org/t", "model": "Llama-3.1-70B", "params": "70B", "quant_format": "BF16",
       "hardware": "NVIDIA H100 SXM 80GB", "phase": "decode", "batch_size": "8", "input_len": "1000",
       "output_len": "1000", "metric": "output tokens/s", "value": "100"}


def _op(pred, op_class: str) -> float:
    return next(op.time_s for op in pred.decode.ops if op.op_class == op_class)


@pytest.mark.parametrize(("devices", "stages", "across"), [(8, 2, 0), (16, 2, 1), (16, 4, 1), (32, 4, 3)])
def test_a_staged_step_is_its_groups_step_plus_one_hand_off_per_stage_boundary(devices: int, stages: int,
                                                                              across: int) -> None:
    """A token passes every stage in turn, each stage's group running its layers tensor-parallel: the decode step
    costs what the group's tensor-parallel step over all layers costs, plus stages - 1 hand-offs of the step's
    activations (bf16, hidden size per token): ACROSS of them between 8-GPU nodes, over the NIC at the
    cross-node latency, the others over the device link."""
    spec, h100 = get_spec("llama-3.1-70b"), load_profile("h100-sxm")
    eff, node = efficiency("nvidia-hopper"), multi_node()
    group = devices // stages
    staged = predict(spec, h100, devices=devices, stages=stages, batch=8, ctx=2000, prompt_len=1000)
    flat = predict(spec, h100, devices=group, batch=8, ctx=2000, prompt_len=1000)
    link = h100.interconnect_gb_s / 2 * 1e9 * eff.interconnect
    msg = 8 * spec.hidden_size * 2
    hops = (across * (msg / (link * node.nic_per_link) + (eff.internode_latency_us + eff.stage_hop_us) * 1e-6)
            + (stages - 1 - across) * (msg / link + (eff.collective_latency_us + eff.stage_hop_us) * 1e-6))
    assert _op(staged, "comm") == pytest.approx(_op(flat, "comm") + hops, rel=1e-9)
    assert staged.tpot_s == pytest.approx(flat.tpot_s + hops, rel=1e-9)


def test_each_device_holds_its_stages_share_of_weights_and_cache() -> None:
    """TP4 x PP2 on eight devices: a device holds 1/8 of the weights and half of its TP4 group's per-sequence
    cache (its stage's layers), with the activation workspace of a four-device group."""
    spec, h100 = get_spec("llama-3.1-70b"), load_profile("h100-sxm")
    fmts = resolve_formats("bf16", "bf16", None)
    staged = predict(spec, h100, devices=8, stages=2, batch=8, ctx=2000, prompt_len=1000)
    tp4 = predict(spec, h100, devices=4, batch=8, ctx=2000, prompt_len=1000)
    kv_per_device_tp4 = tp4.memory.kv_cache_gb / 4
    expected = (weight_bytes(spec, fmts) / 8 + activation_bytes(spec, 8, 1000, 4)) / 1e9 + kv_per_device_tp4 / 2
    assert staged.memory.per_device_gb == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(devices=16, stages=3), "do not split into 3"),
    (dict(devices=4, stages=2, parallelism="pp"), "already splits"),
])
def test_stages_that_cannot_be_laid_out_are_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(RetargetError, match=message):
        predict(get_spec("llama-3.1-70b"), load_profile("h100-sxm"), **kwargs)


@pytest.mark.parametrize(("label", "devices", "parallelism", "stages"), [
    ("vLLM 0.11.0 (V1; 16x H200 over 2 nodes; TP8 x PP2)", 16, "tp", 2),
    ("TensorRT-LLM (DEP: DEP2 x PP2; PyTorch backend)", 4, "ep", 2),
    ("TensorRT-LLM (pipeline parallel: TP1 x PP4; PyTorch backend)", 4, "pp", None),
    ("vLLM 0.11.0 (V1; TP8 x PP1)", 8, "tp", None),
])
def test_a_label_stating_tp_x_pp_is_predicted_with_those_stages(label: str, devices: int, parallelism: str,
                                                                stages: int | None) -> None:
    """"TP8 x PP2" (or "DEP2 x PP2") in an engine label splits the layers into pipeline stages of tensor- (or
    expert-) parallel groups; TensorRT-LLM's "TP1 x PP4" stays its pure layer split."""
    plan = plan_row({**ROW, "engine": label, "num_devices": str(devices)})
    assert (plan.kwargs["parallelism"], plan.kwargs.get("stages")) == (parallelism, stages)  # type: ignore[union-attr]


def test_predict_cli_takes_pipeline_stages() -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["predict", "llama-3.1-70b", "--devices", "16", "--pp", "2", "--batch", "8", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["workload"]["stages"] == 2
    bad = runner.invoke(app, ["predict", "llama-3.1-70b", "--devices", "16", "--pp", "3"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output and len(bad.output.strip().splitlines()) == 1
