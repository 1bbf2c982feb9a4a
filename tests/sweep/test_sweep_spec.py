"""The sweep spec: the grid it expands to, and bad specs refused with one line naming the file and the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from retarget.errors import RetargetError
from retarget.quantize.configs import recipe_names
from retarget.sweep.spec import load_spec


def test_default_sweep_is_every_recipe_of_the_bundled_model() -> None:
    spec = load_spec(None)
    jobs = spec.jobs()
    assert [j.recipe for j in jobs] == recipe_names()
    assert {(j.kind, j.model, j.target) for j in jobs} == {("compile", "default", "cpu-x86")}
    assert len({j.id for j in jobs}) == len(jobs)


def test_grid_is_models_by_recipes_by_targets_by_option_lists(tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text("kind: predict\nmodels: [llama-3.1-8b, qwen3-8b]\nrecipes: [int4-g128-asym, fp8-tensor]\n"
                    "targets: [h100-sxm, mi300x]\noptions: {batch: [1, 64], ctx: 2048}\nout: runs/grid\n")
    spec = load_spec(path)
    jobs = spec.jobs()
    assert len(jobs) == 2 * 2 * 2 * 2
    assert {(j.model, j.recipe, j.target, j.options["batch"]) for j in jobs} == {
        (m, r, t, b) for m in ("llama-3.1-8b", "qwen3-8b") for r in ("int4-g128-asym", "fp8-tensor")
        for t in ("h100-sxm", "mi300x") for b in (1, 64)}
    assert all(j.options["ctx"] == 2048 for j in jobs)
    assert spec.axes() == ["batch"]
    assert spec.out == tmp_path / "runs" / "grid"  # relative to the spec file
    assert len({j.id for j in jobs}) == len(jobs)
    # the id covers every field: another option value is another job, the same one is the same file name
    assert jobs[0].id == load_spec(path).jobs()[0].id
    path.write_text(path.read_text().replace("ctx: 2048", "ctx: 4096"))
    assert jobs[0].id != load_spec(path).jobs()[0].id


@pytest.mark.parametrize(("text", "field"), [
    ("recipes: [int4-g128-asym, int5-g7]\n", "recipes[1]"),
    ("targets: [cpu-x86, no-such-device]\n", "targets[1]"),
    ("models: [/no/such/model.gguf]\n", "models[0]"),
    ("kind: train\n", "kind"),
    ("options: {eval_tokens: 1024, batch: 8}\n", "options.batch"),
    ("recipe: [int4-g128-asym]\n", "recipe"),
    ("workers: many\n", "workers"),
    ("models: []\n", "models"),
])
def test_bad_spec_names_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RetargetError) as err:
        load_spec(path)
    assert str(err.value).startswith(f"{path}: {field}: ")
    assert "\n" not in str(err.value)


def test_cli_refuses_a_bad_spec_with_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("recipes: [int4-g128-asym, int5-g7]\n")
    out = tmp_path / "sweep"
    run = subprocess.run([sys.executable, "-m", "retarget.cli", "sweep", str(path), "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert f"{path}: recipes[1]:" in run.stderr
    assert not out.exists()
