"""SmolLM2 artifacts as `retarget compile` writes them, for the CPU benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def build_recipe(smollm2: Any, recipe: str, out: Path) -> Path:
    """OUT as `retarget compile --recipe RECIPE` writes it (graph and client files; no evaluation); an OUT that
    holds a model.onnx already (RETARGET_PARETO_REUSE) is taken as it is."""
    if (out / "model.onnx").exists():
        return out
    from retarget.export.client_metadata import write_client_files
    from retarget.export.onnx_export import export_artifact
    from retarget.hw_profiles import load_profile
    from retarget.plan import plan_recipe
    from retarget.quantize.api import quantized_copy, quantized_weights

    plan = plan_recipe(recipe, load_profile("cpu-x86"), has_source_blocks=True)
    quantized, _ = quantized_copy(smollm2, plan.weights)
    out.mkdir(parents=True, exist_ok=True)
    export_artifact(smollm2.model, quantized, quantized_weights(quantized), plan, out)
    write_client_files(smollm2, out)
    return out
