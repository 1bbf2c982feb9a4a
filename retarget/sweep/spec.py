"""The sweep spec (YAML): models x recipes x targets x options, expanded into jobs and checked before any runs.

    kind: compile            # compile (the default) or predict
    models: [default]        # model refs the kind takes (compile: 'default', tiny:NAME, a GGUF or HF folder)
    recipes: all             # 'all' (every registered recipe) or a list
    targets: [cpu-x86]
    options:                 # the kind's options; a list is one more axis of the grid
      eval_tokens: 1024
    workers: 2               # local pool size (0: one per two CPU cores); --workers overrides
    out: results/my-sweep    # relative to the spec file (default: out/sweeps/<spec name>)

No spec at all is the default sweep: the bundled model with every recipe on cpu-x86.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from retarget.errors import RetargetError
from retarget.sweep.jobs import Job, job_kind


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = "compile"
    models: list[str] = ["default"]
    recipes: list[str] | Literal["all"] = "all"
    targets: list[str] = ["cpu-x86"]
    options: dict[str, Any] = {}
    workers: int = 0
    keep_artifacts: bool = False  # the ONNX files of every job under artifacts/ (default: reports only)
    out: Path | None = None
    name: str = "default"  # the spec file's stem

    def pool_size(self) -> int:
        return self.workers or max(1, (os.cpu_count() or 2) // 2)

    def recipe_list(self) -> list[str]:
        from retarget.quantize.configs import recipe_names

        return recipe_names() if self.recipes == "all" else self.recipes

    def axes(self) -> list[str]:
        """The options the spec lists values of: one more dimension of the grid each."""
        return [k for k, v in self.options.items() if isinstance(v, list)]

    def jobs(self) -> list[Job]:
        """Every cell of the grid, in spec order (models, then recipes, then targets, then option axes)."""
        axes = {k: self.options[k] for k in self.axes()}
        fixed = {k: v for k, v in self.options.items() if k not in axes}
        return [Job(self.kind, model, recipe, target, {**fixed, **dict(zip(axes, values, strict=True))})
                for model, recipe, target, *values in itertools.product(
                    self.models, self.recipe_list(), self.targets, *axes.values())]


def load_spec(path: Path | None) -> SweepSpec:
    """The spec at PATH (None: the default sweep), checked: every name resolves, every option is the kind's."""
    source = str(path) if path else "default sweep"
    raw: Any = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise RetargetError(f"cannot read the spec: {str(err).splitlines()[0]}", source=source) from None
        if not isinstance(raw, dict):
            raise RetargetError("expected a mapping (kind, models, recipes, targets, options)", source=source)
        raw = {"name": Path(path).stem, **raw}
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise RetargetError(first["msg"].removeprefix("Value error, "), source=source, field=field) from None
    if path is not None and spec.out is not None and not spec.out.is_absolute():
        spec.out = Path(path).parent / spec.out
    _check(spec, source)
    return spec


def _check(spec: SweepSpec, source: str) -> None:
    """Resolve every model, recipe and target once, before any job runs; errors name the spec's field."""
    from retarget.hw_profiles import load_profile
    from retarget.quantize.kv_cache import split_recipe

    try:
        kind = job_kind(spec.kind)
    except RetargetError as err:
        raise RetargetError(str(err).removeprefix("kind: "), source=source, field="kind") from None
    for name, values in (("models", spec.models), ("recipes", spec.recipe_list()), ("targets", spec.targets)):
        if not values:
            raise RetargetError("must list at least one entry", source=source, field=name)
    unknown = sorted(set(spec.options) - kind.options)
    if unknown:
        raise RetargetError(f"not an option of {spec.kind} jobs (known: {', '.join(sorted(kind.options))})",
                            source=source, field=f"options.{unknown[0]}")
    if spec.workers < 0:
        raise RetargetError("must be >= 0", source=source, field="workers")
    checks = (("models", spec.models, kind.check_model),
              ("recipes", spec.recipe_list(), lambda r: r == "auto" or split_recipe(r)),
              ("targets", spec.targets, load_profile))
    for field, values, check in checks:
        for i, value in enumerate(values):
            try:
                check(value)
            except RetargetError as err:
                raise RetargetError(str(err), source=source, field=f"{field}[{i}]") from None
