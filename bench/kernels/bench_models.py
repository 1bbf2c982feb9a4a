"""Seed models end to end on the kernels (`accelerate_`) against unpatched transformers, on one GPU.

Each model is built at its real layer shapes (hidden size, heads, latent rank, experts, Mamba2 heads: the config in
retarget's model registry) with a few layers and random bf16 weights, then generates greedily twice: unpatched
(transformers' own code: eager attention, expert loops, the torch Mamba2 scan) and after accelerate_. Prefill
tokens/s come from a one-token generate, decode tokens/s from the extra time of DECODE more tokens. Rows go to
bench/results/<device>.json (date, versions, command); a Markdown table of every model row to
bench/results/<device>-models.md. Without a GPU it prints one line and exits 0.

    python bench/kernels/bench_models.py [--models gpt-oss-20b deepseek-v3] [--layers 2] [--batch 1]
                                         [--prompt 1024] [--decode 64]
    python bench/kernels/bench_models.py --smoke    # tiny models on this CPU (torch references): checks the
                                                    # script end to end, writes nothing
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
from _results import append_rows, results_file

# registry model -> config overrides besides the layer count (DeepSeek-V3's first 3 layers are dense: keep MoE)
MODELS: dict[str, dict[str, Any]] = {"gpt-oss-20b": {}, "deepseek-v3": {"first_k_dense_replace": 0},
                                     "qwen3-30b-a3b": {}, "falcon-h1-7b": {}}
SMOKE = ("tiny:gpt-oss", "tiny:deepseek-v3", "tiny:falcon-h1")


@dataclass(frozen=True)
class Options:
    layers: int = 2
    batch: int = 1
    prompt: int = 1024
    decode: int = 64
    device: str = "cuda"


def build(name: str, opts: Options) -> Any:
    """A registry model at its real shapes with OPTS.layers layers and random bf16 weights, or a tiny model."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if name.startswith("tiny:"):
        from retarget.models.tiny import build_tiny

        return build_tiny(name.removeprefix("tiny:")).to(opts.device)
    from retarget.models.registry import get_entry

    fields = {k: v for k, v in get_entry(name).config.items() if k != "quantization_config"}
    config = AutoConfig.for_model(**{**fields, **MODELS[name], "num_hidden_layers": opts.layers})
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    with torch.device(opts.device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    return model.eval()


def _sync(device: str) -> None:
    if device != "cpu":
        torch.cuda.synchronize()


def _generate_s(model: Any, ids: torch.Tensor, new: int) -> float:
    _sync(str(ids.device))
    start = time.perf_counter()
    with torch.no_grad():
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                       do_sample=False, pad_token_id=0)
    _sync(str(ids.device))
    return time.perf_counter() - start


def speed(model: Any, ids: torch.Tensor, decode: int) -> tuple[float, float, torch.Tensor]:
    """(prefill tokens/s, decode tokens/s, last-position prompt logits) after a warm-up run (Triton compiles)."""
    _generate_s(model, ids, 2)
    first = min(_generate_s(model, ids, 1) for _ in range(3))
    total = _generate_s(model, ids, decode + 1)
    with torch.no_grad():
        logits = model(ids, use_cache=False).logits[:, -1].float()
    return ids.numel() / first, ids.shape[0] * decode / max(total - first, 1e-9), logits


def measure(name: str, opts: Options) -> dict[str, Any]:
    """One row: the model's speed unpatched and accelerated, and how far the accelerated logits moved."""
    from retarget.kernels import accelerate_

    model = build(name, opts)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    ids = torch.randint(3, model.config.vocab_size, (opts.batch, opts.prompt), device=opts.device,
                        generator=torch.Generator(opts.device).manual_seed(0))
    base_prefill, base_decode, base_logits = speed(model, ids, opts.decode)
    report = accelerate_(model)
    prefill, decode, logits = speed(model, ids, opts.decode)
    del model
    return {"bench": "model-e2e", "model": name, "layers": opts.layers, "batch": opts.batch,
            "prompt": opts.prompt, "decode": opts.decode, "dtype": dtype, "prefill_tok_s": prefill,
            "decode_tok_s": decode,
            "baseline": "transformers eager (unpatched)", "baseline_prefill_tok_s": base_prefill,
            "baseline_decode_tok_s": base_decode, "speedup_prefill": prefill / base_prefill,
            "speedup_decode": decode / base_decode,
            "max_abs_logit_diff": float((logits - base_logits).abs().max()), "accelerated": report.line()}


def _provenance(device_name: str) -> dict[str, Any]:
    import transformers
    import triton

    import retarget

    return {"provenance": "measured", "device_name": device_name, "torch_version": torch.__version__,
            "triton_version": triton.__version__, "transformers_version": transformers.__version__,
            "retarget_version": retarget.__version__,
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python", "bench/kernels/bench_models.py", *sys.argv[1:]])}


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = ["| model | layers | batch x prompt | decode | prefill tok/s (transformers -> kernels) | "
             "decode tok/s (transformers -> kernels) | max abs logit diff | device | date |", "|---" * 9 + "|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['layers']} | {r['batch']} x {r['prompt']} | {r['decode']} | "
                     f"{r['baseline_prefill_tok_s']:.0f} -> {r['prefill_tok_s']:.0f} ({r['speedup_prefill']:.2f}x) | "
                     f"{r['baseline_decode_tok_s']:.1f} -> {r['decode_tok_s']:.1f} ({r['speedup_decode']:.2f}x) | "
                     f"{r['max_abs_logit_diff']:.3g} | {r.get('device_name', 'cpu')} | "
                     f"{r.get('timestamp', '')[:10]} |")
    return "\n".join(lines)


def run(models: list[str], opts: Options, write: bool) -> list[dict[str, Any]]:
    """Measure MODELS with a progress bar; append the rows to the device's results when WRITE."""
    from rich.progress import Progress

    device_name = torch.cuda.get_device_name() if opts.device != "cpu" else "cpu"
    rows = []
    with Progress(transient=True) as progress:
        task = progress.add_task("models", total=len(models))
        for name in models:
            progress.update(task, description=name)
            try:
                rows.append({**measure(name, opts), **(_provenance(device_name) if write else {})})
            except torch.OutOfMemoryError:
                print(f"bench_models: {name} with {opts.layers} layers does not fit this device; try --layers 1")
            except Exception as err:  # a kernel that cannot launch on this device must not lose the other rows
                print(f"bench_models: {name} failed: {type(err).__name__}: {str(err).splitlines()[0]}")
            progress.advance(task)
            if opts.device != "cpu":
                torch.cuda.empty_cache()
    print(table(rows))
    if write and rows:
        path = append_rows(device_name, rows)
        every = [r for r in json.loads(path.read_text()) if r.get("bench") == "model-e2e"]
        path.with_name(path.stem + "-models.md").write_text(
            "# Seed models on the kernels vs unpatched transformers\n\nMeasured by `bench/kernels/bench_models.py`"
            " (command, versions and date per row in " + results_file(device_name).name + ").\n\n"
            + table(every) + "\n")
    return rows


def test_models_end_to_end(benchmark: Any) -> None:
    """`make bench`: every registry model with the default options (skipped without a GPU by conftest)."""
    rows = benchmark.pedantic(run, args=(list(MODELS), Options(), True), rounds=1, iterations=1)
    assert len(rows) == len(MODELS) and all(r["decode_tok_s"] > 0 for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--layers", type=int, default=Options.layers)
    parser.add_argument("--batch", type=int, default=Options.batch)
    parser.add_argument("--prompt", type=int, default=Options.prompt)
    parser.add_argument("--decode", type=int, default=Options.decode)
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU; writes nothing")
    args = parser.parse_args(argv)
    if args.smoke:
        run(list(SMOKE), Options(args.layers, 1, 24, 4, "cpu"), write=False)
        return 0
    if not torch.cuda.is_available():
        print("bench_models: no CUDA/ROCm GPU here; nothing measured, nothing written")
        return 0
    run(args.models, Options(args.layers, args.batch, args.prompt, args.decode), write=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
