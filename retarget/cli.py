"""The `retarget` command line. Each command parses its arguments and calls one public function."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from retarget.errors import RetargetError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Retarget open-weight LLMs across accelerators and quantify hardware lock-in.")
console = Console()
T = TypeVar("T")


def _terminated(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds like an exception: temporary outputs are removed on the way


def _error(message: str) -> None:
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)


def run_or_exit(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call FN; a RetargetError (bad user input) becomes one line on stderr and exit code 2; SIGINT and
    SIGTERM leave nothing half-written and exit with 130 / 143."""
    signal.signal(signal.SIGTERM, _terminated)
    try:
        return fn(*args, **kwargs)
    except RetargetError as err:
        _error(str(err).replace("\n", " "))
        sys.exit(2)
    except KeyboardInterrupt:
        _error("interrupted; nothing was written")
        sys.exit(130)
    except SystemExit as exit_:
        if exit_.code == 128 + signal.SIGTERM:
            _error("terminated; nothing was written")
        raise


def check_options(**bounds: tuple[float, float, float]) -> None:
    """Each option NAME=(value, lo, hi) must be a whole number in [lo, hi]; else one line, exit code 2."""
    from retarget.inputs import number

    for name, (value, lo, hi) in bounds.items():
        run_or_exit(number, value, source=None, field=f"--{name.replace('_', '-')}", lo=lo, hi=hi, integer=True)


@app.command("compile")
def compile_cmd(
    model: Annotated[str, typer.Argument(help="HF folder, GGUF file, or 'default' (bundled SmolLM2-135M)")] = "default",
    target: Annotated[str, typer.Option(help="hardware profile id or YAML path")] = "cpu-x86",
    recipe: Annotated[str, typer.Option(help="recipe name; 'auto' picks the fastest for the target")] = "auto",
    out: Annotated[Path, typer.Option(help="output folder, written atomically")] = Path("out/smollm2"),
    eval_tokens: Annotated[int, typer.Option(help="tokens of the evaluation corpus to score (default 2048)")] = 0,
    lowering: Annotated[str, typer.Option(help="ONNX lowering: auto, matmulnbits or qdq (standard QDQ)")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON on stdout (table on stderr)")
                       ] = False,
    max_kl: Annotated[float | None, typer.Option(help="gate: exit 3 if ORT's KL to fp32 is above this")] = None,
    min_decode: Annotated[float | None, typer.Option(help="gate: exit 3 if decode tokens/s is below this")] = None,
) -> None:
    """Load, quantize, evaluate, export to ONNX, verify in ONNX Runtime and write the artifact."""
    import json

    from retarget.compile import compile_model, print_summary
    from retarget.runner.gates import GATE_MISSED, missed_gates

    check_options(eval_tokens=(eval_tokens, 0, 2**24))
    report = run_or_exit(compile_model, model, target=target, recipe=recipe, out=out,
                         eval_tokens=eval_tokens or None, lowering=lowering)
    print_summary(report, Console(stderr=True) if as_json else console)
    if as_json:
        print(json.dumps(report, indent=2))
    missed = missed_gates(report, max_kl, min_decode)
    for line in missed:
        Console(stderr=True).print(f"[bold red]gate missed:[/] {line}", highlight=False)
    if missed:
        sys.exit(GATE_MISSED)


@app.command("run")
def run_cmd(
    artifact: Annotated[Path, typer.Argument(help="artifact folder written by `retarget compile`")],
    prompt: Annotated[str | None, typer.Argument(help="one prompt; none: chat, one line per turn")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="most tokens per answer")] = 256,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads (0: one per core)")] = 0,
) -> None:
    """Answer a prompt, or chat, streaming greedy tokens until the model's end-of-sequence token."""
    from retarget.runner.chat import run

    run_or_exit(run, artifact, prompt, max_new_tokens, threads or None)


@app.command("bench")
def bench_cmd(
    artifact: Annotated[Path, typer.Argument(help="artifact folder written by `retarget compile`")],
    json_out: Annotated[Path | None, typer.Option("--json", help="write the benchmark as JSON here")] = None,
    prompt_len: Annotated[int, typer.Option(help="prompt tokens per prefill")] = 128,
    decode_tokens: Annotated[int, typer.Option(help="decode steps per repeat")] = 64,
    repeats: Annotated[int, typer.Option(help="measured repeats (after one warm-up)")] = 5,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads (0: one per core)")] = 0,
) -> None:
    """Prefill / decode tokens/s (percentiles over repeats), peak memory, decode vs this machine's bandwidth."""
    from retarget.runner.bench import bench, print_bench

    print_bench(run_or_exit(bench, artifact, prompt_len, decode_tokens, repeats, threads or None, json_out), console)


profiles_app = typer.Typer(help="Hardware profiles: list them, or show one with its sources.")
app.add_typer(profiles_app, name="profiles")


@profiles_app.callback(invoke_without_command=True)
def profiles_cmd(ctx: typer.Context) -> None:
    """Table of every bundled hardware profile."""
    if ctx.invoked_subcommand is None:
        from retarget.hw_profiles.show import show_profiles

        run_or_exit(show_profiles, console)


@profiles_app.command("show")
def profiles_show_cmd(
    profile: Annotated[str, typer.Argument(help="profile id or path to a profile YAML")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="override FIELD=VALUE (e.g. fp8=0)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the profile as JSON")] = False,
) -> None:
    """One profile: every number with its kind (published/derived/assumed) and source URL."""
    from retarget.hw_profiles.show import show_profile

    run_or_exit(show_profile, profile, set_ or [], as_json, console)


@app.command("inspect")
def inspect_cmd(
    model: Annotated[str | None, typer.Argument(help="registry name/HF id, HF folder or config.json, GGUF "
                                                "file, compiled artifact folder")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    list_all: Annotated[bool, typer.Option("--list", help="list the registry models")] = False,
) -> None:
    """What matters for hardware: attention and KV bytes, MoE sparsity, SSM layers, formats, weight bytes."""
    from retarget.models.inspect import show

    run_or_exit(show, model, as_json, list_all, console)


@app.command("predict")
def predict_cmd(
    model: Annotated[str, typer.Argument(help="registry name/HF id, HF folder or config.json, GGUF file, "
                                         "compiled artifact folder")],
    target: Annotated[str, typer.Option(help="hardware profile id or YAML path")] = "h100-sxm",
    devices: Annotated[int, typer.Option(help="number of devices (tensor/expert parallel)")] = 1,
    batch: Annotated[int, typer.Option(help="concurrent sequences")] = 1,
    ctx: Annotated[int, typer.Option(help="cached tokens per sequence during decode")] = 4096,
    prompt_len: Annotated[int, typer.Option(help="prompt tokens per sequence for prefill / TTFT")] = 4096,
    recipe: Annotated[str, typer.Option("--recipe", "--weights", help="'native' (the checkpoint's formats), a "
                                        "compile recipe (gptq-int4-g128-asym, w8a8-int8, fp8-block128, keep, "
                                        "...+kv-fp8) or a number format (bf16, fp8, q4_k_m, nvfp4)")] = "native",
    kv: Annotated[str, typer.Option(help="KV-cache format: bf16, fp8, int8")] = "bf16",
    engine: Annotated[str | None, typer.Option(help="software stack and release whose factors apply (an engine of "
                                        "retarget/perf/efficiency.yaml): tuned (vendor-tuned vLLM/SGLang/NIM), vllm-v1 "
                                        "(vLLM 0.10+), vllm-v0, "
                                        "vllm-eager, sglang-0.4, tensorrt-llm, tensorrt-llm-0.1x, llama.cpp, "
                                        "llama.cpp-metal, turbomind, vllm-rocm-v1, optimum-habana (Intel Gaudi), "
                                        "sglang-jax, vllm-tpu (TPUs), ...; default: the device family's "
                                        "(llama.cpp-metal on Apple, llama.cpp on CPUs, llama.cpp-hip on Radeon, "
                                        "optimum-habana on Gaudi, else tuned)")] = None,
    parallelism: Annotated[str | None, typer.Option(help="tp (tensor parallel, experts split in the group), pp "
                                                    "(layers split, llama.cpp) or ep (data-parallel attention, "
                                                    "expert-parallel MoE with all-to-all); default: the engine's "
                                                    "first (pp for llama.cpp, else tp)")] = None,
    pp: Annotated[int, typer.Option("--pp", help="pipeline stages: the layers split into this many stages, each run "
                                    "by devices/pp devices in --parallelism tp or ep (multi-node: tensor parallel "
                                    "in a node, pipeline across nodes)")] = 1,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a profile FIELD=VALUE")] = None,
    output_len: Annotated[int | None, typer.Option(help="tokens generated per request: also predict serving "
                                                   "--batch clients in a closed loop (as vllm bench serve "
                                                   "--max-concurrency)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the prediction as JSON")] = False,
) -> None:
    """Predicted time to first token, tokens/s, memory fit and the bottleneck per op class."""
    from retarget.perf.show import show_prediction

    check_options(devices=(devices, 1, 4096), pp=(pp, 1, 4096), batch=(batch, 1, 2**20), ctx=(ctx, 1, 2**24),
                  prompt_len=(prompt_len, 1, 2**24), output_len=(1 if output_len is None else output_len, 1, 2**24))
    run_or_exit(show_prediction, model, target, set_ or [], as_json, console, devices=devices, batch=batch,
                ctx=ctx, prompt_len=prompt_len, recipe=recipe, kv_format=kv, engine=engine, parallelism=parallelism,
                stages=pp, output_len=output_len)


@app.command("validate")
def validate_cmd(
    measurements: Annotated[Path, typer.Argument(help="CSV with the columns of measured_benchmarks.csv")],
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report as JSON here")] = None,
    markdown: Annotated[Path | None, typer.Option(help="write the markdown table here")] = None,
) -> None:
    """Predict every row the model can express; per-row error and MAPE/MdAPE split by phase."""
    from retarget.perf.validate import run
    from retarget.perf.validate_report import print_report

    print_report(run_or_exit(run, measurements, json_out, markdown), console)


@app.command("kernels")
def kernels_cmd(
    targets: Annotated[str, typer.Option(help="comma-separated, e.g. sm_90,gfx942 (default: all)")] = "",
    smoke: Annotated[bool, typer.Option(help="two kernels on sm_90 and gfx942 (the test subset)")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the matrix as JSON")] = None,
    markdown: Annotated[Path | None, typer.Option(help="write the matrix as Markdown")] = None,
    workers: Annotated[int, typer.Option(help="compile processes (0: one per CPU, at most 64)")] = 0,
) -> None:
    """Compile every Triton kernel ahead of time for each GPU target and print the portability matrix."""
    from retarget.kernels.portability import MAX_WORKERS
    from retarget.kernels.portability import run as run_kernels

    check_options(workers=(workers, 0, MAX_WORKERS))
    run_or_exit(run_kernels, targets or None, smoke=smoke, json_path=json_out, markdown_path=markdown,
                workers=workers, console=console)


def _csv_list(values: list[str] | None) -> list[str] | None:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()] or None


@app.command("lockin")
def lockin_cmd(
    models: Annotated[list[str] | None, typer.Option(help="registry models, comma-separated (default: all)")] = None,
    targets: Annotated[list[str] | None, typer.Option(help="profile ids or YAML paths (default: all bundled)")] = None,
    workload: Annotated[str, typer.Option(help="decode-b1 | decode-b64 | prefill-4k")] = "decode-b1",
    set_: Annotated[list[str] | None,
                    typer.Option("--set", help="what-if: [PROFILE.]FIELD=VALUE, e.g. h20.scale_compute=2")] = None,
    out: Annotated[Path, typer.Option(help="output folder, written atomically")] = Path("out/lockin"),
    kernels_json: Annotated[Path | None, typer.Option(help="kernel matrix JSON (default docs/kernels.json)")] = None,
) -> None:
    """Lock-in index of models x devices, its attribution to features, and the retargeting recipe per cell."""
    from retarget.lockin.run import run as run_lockin

    run_or_exit(run_lockin, _csv_list(models), _csv_list(targets), workload, set_ or [], out, kernels_json, console)


@app.command("fleet")
def fleet_cmd(
    vendor: Annotated[list[str] | None, typer.Option(help="only these hardware vendors (comma-separated)")] = None,
    exclude_vendor: Annotated[list[str] | None, typer.Option(help="never these hardware vendors")] = None,
    country: Annotated[list[str] | None, typer.Option(help="only hardware designed in (US, CN)")] = None,
    exclude_country: Annotated[list[str] | None, typer.Option(help="never hardware designed in")] = None,
    no_export_controlled: Annotated[bool, typer.Option(help="leave out parts under US export licensing")] = False,
    origin: Annotated[list[str] | None, typer.Option(help="only models from these countries (US, CN, FR, AE)")] = None,
    exclude_origin: Annotated[list[str] | None, typer.Option(help="never models from these countries")] = None,
    license: Annotated[list[str] | None, typer.Option(help="only licenses containing this text (apache, mit)")] = None,
    exclude_license: Annotated[list[str] | None, typer.Option(help="never licenses containing this text")] = None,
    min_quality: Annotated[float | None, typer.Option(help="quality floor, MMLU-Pro %")] = None,
    models: Annotated[list[str] | None, typer.Option(help="registry models (default: all)")] = None,
    targets: Annotated[list[str] | None, typer.Option(help="profile ids (default: all bundled)")] = None,
    prompt_len: Annotated[int, typer.Option(help="prompt tokens per request")] = 2048,
    output_len: Annotated[int, typer.Option(help="generated tokens per request (sets the prefill/decode mix)")] = 512,
    batch: Annotated[int, typer.Option(help="concurrent requests per replica")] = 16,
    tokens_s: Annotated[float | None, typer.Option("--tokens-s", help="generated tokens/s to serve")] = None,
    utilisation: Annotated[float, typer.Option(help="assumed share of hours serving")] = 0.6,
    years: Annotated[float, typer.Option(help="assumed amortisation years of a purchase")] = 4.0,
    power_price: Annotated[float, typer.Option(help="assumed USD per kWh")] = 0.12,
    blocs: Annotated[bool, typer.Option("--blocs", help="print the origin x hardware-bloc matrix")] = False,
    bloc_floor: Annotated[float, typer.Option(help="quality floor of the bloc view (MMLU-Pro %)")] = 65.0,
    rank_by: Annotated[str, typer.Option(help="cost (rent, else own), rent, own, energy, speed, quality")] = "cost",
    rows: Annotated[int, typer.Option(help="plans printed")] = 20,
    out: Annotated[Path, typer.Option(help="output folder, written atomically")] = Path("out/fleet"),
) -> None:
    """Which open model to run on which hardware you can get: ranked plans with predicted speed, $ and kWh per
    1M tokens, quality, lock-in; with --blocs, model origin x hardware bloc."""
    from retarget.fleet.constraints import Constraints, FleetWorkload
    from retarget.fleet.costs import Assumptions
    from retarget.fleet.run import run as run_fleet

    def build() -> None:
        if not 0 < utilisation <= 1:
            raise RetargetError("must be in (0, 1]", field="--utilisation")
        if years <= 0 or power_price < 0:
            raise RetargetError("years must be > 0 and the power price >= 0", field="--years/--power-price")
        c = Constraints.of(vendor=_csv_list(vendor), exclude_vendor=_csv_list(exclude_vendor),
                           country=_csv_list(country), exclude_country=_csv_list(exclude_country),
                           no_export_controlled=no_export_controlled, origin=_csv_list(origin),
                           exclude_origin=_csv_list(exclude_origin), license=_csv_list(license),
                           exclude_license=_csv_list(exclude_license), min_quality=min_quality)
        wl = FleetWorkload(prompt_len, output_len, batch, tokens_s)
        a = Assumptions(utilisation, years, power_price)
        run_fleet(c, wl, a, _csv_list(models), _csv_list(targets), blocs, bloc_floor, rank_by, rows, out, console)

    run_or_exit(build)


@app.command("sweep")
def sweep_cmd(
    spec: Annotated[Path | None, typer.Argument(help="sweep spec YAML (default: the bundled model, every recipe, "
                                                     "cpu-x86)")] = None,
    workers: Annotated[int, typer.Option(help="jobs at a time on the local pool (0: the spec's)")] = 0,
    ray: Annotated[str | None, typer.Option(help="run on the Ray cluster at ADDRESS ('local': start one here)")] = None,
    out: Annotated[Path | None, typer.Option(help="the sweep's folder (default: the spec's out)")] = None,
    retry_failed: Annotated[bool, typer.Option(help="run failed jobs again")] = False,
    threads: Annotated[int, typer.Option(help="threads (Ray: CPUs) per job (0: cores / workers; Ray: 1)")] = 0,
) -> None:
    """Every job of the spec (models x recipes x targets x options) in its own process; a rerun resumes."""
    from retarget.sweep.run import sweep

    result = run_or_exit(sweep, spec, workers=workers, ray=ray, out=out, retry_failed=retry_failed,
                         threads_per_job=threads, console=console)
    if result.interrupted:
        sys.exit(130)
    if result.failed:
        sys.exit(1)


if __name__ == "__main__":
    app()
