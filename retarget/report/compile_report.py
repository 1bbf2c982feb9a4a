"""Write a compile report: report.json (source of truth), recipe.json and report.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from retarget.report import compile_predictions


def _v(entry: dict[str, Any], fmt: str) -> str:
    return format(entry["value"], fmt)


def render_markdown(r: dict[str, Any]) -> str:
    """A human-readable page from the report dict."""
    ort, torch_ = r["ort"], r["torch"]
    machine = ort["decode_tokens_per_s"]["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    corpus = r["corpus"]
    lines = [
        f"# retarget compile: {r['model']['path']}",
        "",
        f"Target `{r['target']}`, recipe `{r['recipe']['name']}` ({r['recipe']['why']}).",
        "",
        "| metric | value | provenance |",
        "|---|---|---|",
        f"| ONNX artifact size | {r['onnx']['bytes'] / 2**20:.1f} MiB | measured (file size) |",
        f"| MatMulNBits nodes | {r['onnx']['matmulnbits_nodes']} | graph |",
        f"| perplexity fp32 (torch) | {_v(torch_['fp32']['perplexity'], '.3f')} | measured |",
        f"| perplexity quantized (torch) | {_v(torch_['quantized']['perplexity'], '.3f')} | measured |",
        f"| perplexity quantized (ONNX Runtime) | {_v(ort['quantized']['perplexity'], '.3f')} | measured |",
        f"| KL to fp32, torch (nats/token) | {_v(torch_['quantized']['kl_to_fp32'], '.5f')} | measured |",
        f"| KL to fp32, ONNX Runtime (nats/token) | {_v(ort['quantized']['kl_to_fp32'], '.5f')} | measured |",
        f"| ORT vs torch max abs logit diff | {_v(ort['parity_max_abs_logit_diff'], '.2e')} "
        f"(tolerance {ort['parity_max_abs_logit_diff']['tolerance']}) | measured |",
        f"| prefill tokens/s (batch 1, {ort['prefill_tokens_per_s']['prompt_len']} tokens) | "
        f"{_v(ort['prefill_tokens_per_s'], '.0f')} | measured |",
        f"| decode tokens/s (batch 1) | {_v(ort['decode_tokens_per_s'], '.1f')} | measured |",
        "",
        f"Evaluation corpus: {corpus['name']} (Python {corpus['python']}, sha256 `{corpus['sha256'][:16]}`), "
        f"{corpus['tokens_scored']} predicted tokens in windows of {corpus['window']}.",
        "",
        f"Measured on: {machine['cpu']} ({machine['cores']} cores), {versions}.",
        "",
        f"Greedy generation for *{ort['generation']['prompt']}*:",
        "",
        f"> {ort['generation']['text'].strip()}",
        "",
        *compile_predictions.markdown(r["predicted_on_profiles"]),
    ]
    return "\n".join(lines)


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    """report.json, recipe.json and report.md into OUT_DIR."""
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "recipe.json").write_text(json.dumps(report["recipe"], indent=2))
    (out_dir / "report.md").write_text(render_markdown(report))
