"""A recorded failure is finished (a rerun skips it) until --retry-failed; a predict job's row is predict's."""

from __future__ import annotations

from pathlib import Path

import pytest

from retarget.hw_profiles import load_profile
from retarget.perf.model import predict
from retarget.perf.show import resolve_spec
from retarget.sweep.run import sweep
from retarget.sweep.spec import load_spec
from retarget.sweep.store import SweepDir
from retarget.sweep.worker import record


def test_failed_job_is_skipped_until_retried(tmp_path: Path) -> None:
    path = tmp_path / "one.yaml"
    path.write_text("kind: predict\nmodels: [llama-3.1-8b]\nrecipes: [int4-g128-asym]\ntargets: [h100-sxm]\n"
                    "options: {batch: 4}\nworkers: 1\n")
    [job] = load_spec(path).jobs()
    out = tmp_path / "out"
    SweepDir(out).write_record(record(job, error="an earlier run failed"))

    skipped = sweep(path, out=out)
    assert skipped.skipped == 1 and skipped.rows[0]["error"] == "an earlier run failed"

    retried = sweep(path, out=out, retry_failed=True)
    assert retried.skipped == 0 and retried.rows[0]["status"] == "ok"
    expected = predict(resolve_spec("llama-3.1-8b"), load_profile("h100-sxm"), batch=4,
                       weight_format="int4-g128-asym")
    assert retried.rows[0]["decode_tok_s"] == pytest.approx(expected.decode_tokens_s, rel=1e-12)
    assert retried.rows[0]["ttft_ms"] == pytest.approx(expected.ttft_s * 1e3, rel=1e-12)
    assert SweepDir(out).record(job)["status"] == "ok"
