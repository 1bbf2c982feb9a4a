"""The small sweep end to end: 3 tiny models x 2 recipes through `retarget compile`, on the local pool (killed
mid-way, then resumed without redoing finished jobs) and on a local Ray runtime; both give the same numbers.

Recipe 'keep' needs a GGUF's own blocks, so on a tiny model it fails after loading: a failed job with a one-line
error in the table, and a cheap one."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retarget.compile import PARITY_ATOL
from retarget.outdir import MARKER
from retarget.sweep.run import SweepResult, sweep

MODELS = ["tiny:qwen3", "tiny:qwen2", "tiny:mistral"]
RECIPES = ["int8-channel-sym", "keep"]
SPEC = f"models: {json.dumps(MODELS)}\nrecipes: {json.dumps(RECIPES)}\noptions: {{eval_tokens: 1024}}\nworkers: 2\n"
SAME = ("onnx_mib", "parity", "ppl_fp32", "ppl_torch", "ppl_ort", "kl_ort")  # deterministic: equal both ways


def _records(out: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "jobs").glob("*.json")}


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "small.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def killed_and_resumed(spec: Path) -> tuple[dict, set[str], SweepResult]:
    """The sweep killed (SIGKILL to the driver and its workers, as a crash) once its first job has finished,
    then run again: (records before the rerun, jobs that had started, the rerun's result)."""
    out = spec.parent / "local"
    sweep_cmd = [sys.executable, "-m", "retarget.cli", "sweep", str(spec), "--out", str(out)]
    proc = subprocess.Popen(sweep_cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not _records(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _records(out)
    started = {p.stem for p in (out / "logs").glob("*.log")}
    return before, started, sweep(spec, out=out)


def test_killed_sweep_resumes_without_redoing_finished_jobs(killed_and_resumed: tuple) -> None:
    before, started, result = killed_and_resumed
    assert 1 <= len(before) < len(MODELS) * len(RECIPES)
    assert started - {Path(name).stem for name in before}, "no job was running when the sweep was killed"
    assert result.skipped == len(before) and not result.interrupted
    after = _records(result.root)
    assert {name: after[name] for name in before} == before  # not rewritten: same bytes, same mtime
    assert len(after) == len(MODELS) * len(RECIPES)
    assert not [p for p in result.root.rglob(".*") if p.name != MARKER]  # no temp file of the killed run is left


def test_table_has_every_job_with_its_numbers_or_its_error(killed_and_resumed: tuple) -> None:
    result = killed_and_resumed[2]
    assert [(r["model"], r["recipe"]) for r in result.rows] == [(m, r) for m in MODELS for r in RECIPES]
    for row in result.rows:
        assert row["cpu_s"] > 0 and row["max_rss_mib"] > 0  # the worker process's own usage
        if row["recipe"] == "keep":
            assert row["status"] == "failed" and "needs a pre-quantized source" in row["error"]
            continue
        assert row["status"] == "ok", row["error"]
        assert row["parity"] <= PARITY_ATOL and row["kl_ort"] > 0 and row["decode_tok_s"] > 0
        assert row["pareto"] is True  # the only compiled recipe of its model
    table = json.loads((result.root / "results.json").read_text())
    assert table["rows"] == json.loads(json.dumps(result.rows)) and table["machine"]["cores"] == os.cpu_count()
    assert (result.root / "results.csv").read_text().count("\n") == 1 + len(result.rows)
    assert all("| failed |" in line for line in (result.root / "results.md").read_text().splitlines()
               if "| keep |" in line)
    assert (result.root / "pareto.png").stat().st_size > 0


@pytest.mark.slow  # starting a Ray runtime takes 40-80 s on 2 cores
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed: pip install '.[ray]'")
def test_small_sweep_on_a_local_ray_runtime_matches_the_local_pool(spec: Path, killed_and_resumed: tuple,
                                                                   tmp_path: Path) -> None:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = sweep(spec, ray="local", out=tmp_path / "ray")
    finally:
        ray.shutdown()
    local = killed_and_resumed[2].rows
    assert [(r["model"], r["recipe"], r["status"]) for r in result.rows] == [
        (r["model"], r["recipe"], r["status"]) for r in local]
    for on_ray, on_pool in zip(result.rows, local, strict=True):
        if on_pool["status"] == "ok":
            assert {k: on_ray[k] for k in SAME} == pytest.approx({k: on_pool[k] for k in SAME}, rel=1e-6)
        else:
            assert on_ray["error"] == on_pool["error"]
    assert len(list((tmp_path / "ray" / "logs").glob("*.log"))) == len(local)
