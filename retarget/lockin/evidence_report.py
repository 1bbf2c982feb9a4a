"""lockin-evidence.md: per model and device, the evidence behind each cell: the recipe and its conversions,
how the Triton kernels its formats and features need compile for the device (AOT matrix), and which ONNX
Runtime providers of the device run the operators of its export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retarget.lockin.accuracy import COST_SOURCE, price_text


def _kernels(recipe: dict[str, Any]) -> str:
    found = {**recipe.get("kernels", {}), **recipe.get("feature_kernels", {})}
    return "; ".join(f"{k}: {v}" for k, v in found.items()) or "no low-bit format or feature kernel needed"


def evidence_markdown(matrix: dict[str, Any]) -> str:
    """The evidence document as Markdown."""
    kernels = matrix.get("kernel_evidence") or {}
    runtimes = matrix.get("runtime_evidence") or {}
    out = ["# Lock-in evidence per cell", "",
           f"Workload {matrix['workload']['name']}. Recipes and speeds: predicted ({matrix['model']}). Kernels: "
           f"AOT compile matrix {kernels.get('source', 'not available')} (Triton {kernels.get('triton_version')}, "
           f"{kernels.get('date')}; compile-only, no GPU): native, constrained (spills or shared memory), "
           f"upcast or error. Runtimes: {runtimes.get('assumption', 'not available')}. Conversion prices: measured "
           f"({COST_SOURCE}).", ""]
    for m in matrix["models"]:
        out += [f"## {m['name']}", "", f"Home: {m['home']} ({m['home_why']}). Features: "
                f"{', '.join(m['features']) or 'none'}.", ""]
        for device, cell in m["cells"].items():
            recipe = cell["recipe"]
            li = cell["li"]["value"]
            out += [f"**{device}**: LI {'–' if li is None else f'{li:.2f}'}; {recipe['describe']}", "",
                    f"- kernels: {_kernels(recipe)}"]
            out += [f"- {line}" for line in recipe.get("runtimes", {}).get("ops", [])]
            out += [f"- conversion price: {price_text(p)}" for p in recipe.get("conversion_prices", [])]
            out.append("")
    return "\n".join(out)


def write_evidence(matrix: dict[str, Any], path: Path) -> None:
    path.write_text(evidence_markdown(matrix))
