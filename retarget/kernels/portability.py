"""The kernel portability matrix: every kernel variant compiled ahead of time for every GPU target.

No GPU is needed: `triton.compile(ASTSource(...), target=GPUTarget(...))` runs the full compiler to PTX +
cubin (NVIDIA) or AMDGCN + HSACO (AMD) on the CPU. From the artifacts we read
  * compiled, or the compiler's error;
  * the tensor-core instruction family in the ISA (mma.sync / wgmma / tcgen05 / mfma / wmma) and its
    operand format, which says whether the kernel's format runs natively or is upcast to a wider one;
  * registers and spills (cuobjdump on the cubin; AMDGPU metadata in the assembly);
  * shared memory / LDS (`metadata.shared`) against the target's per-block limit (targets.py).
Method and caveats: kernels_anchors.md section 7; results depend on the Triton version, which every
report records.
"""

from __future__ import annotations

import collections
import concurrent.futures
import datetime
import json
import multiprocessing
import os
import re
import subprocess
import tempfile
import time
import warnings
from functools import cache
from pathlib import Path
from typing import Any

from retarget.errors import RetargetError
from retarget.kernels._aot import AotCase
from retarget.kernels.targets import BY_NAME, TARGETS, Target

OPS = ("w4a16_gemm", "w8a8_int8_gemm", "fp8_gemm", "mxfp4_gemm", "attention", "mla_decode", "fused_moe", "mamba2")
# the default-test subset: a bf16 tiled GEMM and an fp8 GEMM on Hopper and MI300
SMOKE_CASES = ("w4a16_gemm/w4a16-tiled-m512", "fp8_gemm/channel")
SMOKE_TARGETS = ("sm_90", "gfx942")
MAX_WORKERS = 64  # compile processes; each holds an LLVM instance

# MMA operand formats a wanted kernel format runs natively as ('f16/bf16': tcgen05 kind::f16, whose
# operand types live in the runtime instruction descriptor; 'mx': block-scaled MMA)
_NATIVE = {"f16": {"f16", "f16/bf16"}, "bf16": {"bf16", "f16/bf16"}, "e4m3": {"e4m3", "f8f6f4", "mx"},
           "e4m3fnuz": {"e4m3fnuz"}, "i8": {"i8"}, "mxf4": {"mx"}}
_PTX_MMA = re.compile(r"\b(tcgen05\.mma[\w.:]*|wgmma\.mma_async[\w.:]*|mma\.sync[\w.:]*)")
_AMD_MMA = re.compile(r"\bv_(?:mfma|wmma)\w*")
_PTX_OPERANDS = ("bf16", "f16", "tf32", "e4m3", "e5m2", "s8", "u8", "s4", "u4", "e2m1")
# operand suffix of AMD MFMA / WMMA mnemonics, most specific first
_AMD_SUFFIXES = (("f8f6f4", "f8f6f4"), ("fp8_fp8", "e4m3"), ("bf8_bf8", "e5m2"), ("iu8", "i8"), ("i8", "i8"),
                 ("bf16", "bf16"), ("f16", "f16"), ("xf32", "tf32"), ("f32", "f32"))
_TCGEN05_KINDS = {"f16": "f16/bf16", "tf32": "tf32", "f8f6f4": "f8f6f4", "i8": "i8"}


# lock-in evidence: weight / activation format -> the kernel variants that run it, best first
# (MXFP4 is native only through dot_scaled with MXFP8 activations; the dequant kernel is its fallback)
FORMAT_KERNELS = {
    "int4-g128": ("w4a16_gemm/w4a16-tiled-m512",),
    "int8-g128": ("w4a16_gemm/w8a16-tiled-m512",),
    "w8a8-int8": ("w8a8_int8_gemm/tiled-m4096",),
    "fp8-e4m3": ("fp8_gemm/channel",),
    "fp8-e4m3fnuz": ("fp8_gemm/channel-fnuz",),
    "fp8-e4m3-block128": ("fp8_gemm/block128",),
    "fp8-e4m3-block128-ue8m0": ("fp8_gemm/block128-ue8m0",),
    "mxfp4": ("mxfp4_gemm/dot_scaled-mxfp8", "mxfp4_gemm/dequant-bf16"),
}

# lock-in evidence for architecture features: feature -> the kernels it needs, all of them (the verdict is
# the worst of theirs: a feature runs natively only when every kernel it needs does)
FEATURE_KERNELS = {
    "attention-window-sinks": ("attention/decode-splitkv", "attention/decode-combine",
                               "attention/prefill-window-sinks"),
    "mla": ("mla_decode/latent-splitkv", "attention/decode-combine"),
    "moe-bf16": ("fused_moe/routing-grouped-topk", "fused_moe/gemm-bf16"),
    "moe-w4a16": ("fused_moe/routing-grouped-topk", "fused_moe/gemm-w4a16-g128"),
    "moe-fp8-block": ("fused_moe/routing-grouped-topk", "fused_moe/gemm-fp8-block128"),
    "moe-mxfp4": ("fused_moe/routing-grouped-topk", "fused_moe/gemm-mxfp4"),
    "mamba2": ("mamba2/chunk-scan", "mamba2/state-update"),
}


@cache
def cases_for(family: str) -> tuple[AotCase, ...]:
    """Every kernel variant of every operator, configured for one vendor family."""
    import importlib

    return tuple(c for op in OPS for c in importlib.import_module(f"retarget.kernels.{op}").aot_cases(family))


def case_names() -> list[str]:
    return [c.name for c in cases_for("nvidia")]


def mma_format(instr: str, target: Target) -> tuple[str, str]:
    """(family, operand format) of one MMA mnemonic from PTX or AMDGCN."""
    if instr.startswith("tcgen05"):
        kind = re.search(r"kind::(\w+)", instr)
        name = kind.group(1) if kind else "?"
        scaled = "block_scale" in instr or name.startswith("mx")
        return "tcgen05", "mx" if scaled else _TCGEN05_KINDS.get(name, name)
    if instr.startswith(("wgmma", "mma.sync")):
        ops = [t for t in instr.split(".") if t in _PTX_OPERANDS]
        fmt = ops[0] if ops else "?"
        return ("wgmma" if instr.startswith("wgmma") else "mma.sync"), {"s8": "i8", "u8": "i8"}.get(fmt, fmt)
    fam = "mfma" if instr.startswith("v_mfma") else "wmma"
    if instr.startswith("v_mfma_scale"):
        return fam, "mx"
    for suffix, fmt in _AMD_SUFFIXES:
        if suffix in instr.split("_", 3)[-1]:
            if fmt == "e4m3" and target.fp8 == "fnuz":
                fmt = "e4m3fnuz"
            return fam, fmt
    return fam, "?"


def _tool(name: str) -> str:
    import triton

    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def _nvidia_resources(cubin: bytes) -> dict[str, Any]:
    """Registers, stack and spill stores of a cubin, read with the cuobjdump bundled with Triton."""
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(cubin)
    try:
        usage = subprocess.run([_tool("cuobjdump"), "--dump-resource-usage", f.name], capture_output=True,
                               text=True, check=False).stdout
        sass = subprocess.run([_tool("cuobjdump"), "-sass", f.name], capture_output=True, text=True,
                              check=False).stdout
    finally:
        os.unlink(f.name)
    found = dict(re.findall(r"\b(REG|STACK|LOCAL):(\d+)", usage))
    return {"registers": int(found["REG"]) if "REG" in found else None,
            "stack_bytes": int(found.get("STACK", 0)),
            "spills": len(re.findall(r"\bSTL\b", sass)), "spills_unit": "STL instructions"}


def _amd_resources(amdgcn: str) -> dict[str, Any]:
    """VGPR / AGPR / SGPR counts and spills from the AMDGPU metadata in the assembly."""
    meta = {k: int(v) for k, v in re.findall(r"\.(\w+_count):\s+(\d+)", amdgcn)}
    return {"registers": meta.get("vgpr_count"), "agprs": meta.get("agpr_count"),
            "sgprs": meta.get("sgpr_count"),
            "spills": meta.get("vgpr_spill_count", 0) + meta.get("sgpr_spill_count", 0),
            "spills_unit": "VGPR + SGPR spills"}


def _short_error(err: BaseException) -> str:
    """The innermost cause's message, on one line (the compiler wraps it in a source listing)."""
    while err.__cause__ is not None:
        err = err.__cause__
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    key = [ln for ln in lines if "error" in ln.lower() or "not supported" in ln.lower()]
    text = (key or lines or [""])[-1]
    return f"{type(err).__name__}: {text}"[:240]


def _header(case: AotCase, target: Target) -> dict[str, Any]:
    return {"kernel": case.name, "op": case.op, "variant": case.variant, "shape": case.shape,
            "target": target.name, "config": case.config.to_dict(), "wanted_mma": case.mma}


def compile_case(case: AotCase, target: Target) -> dict[str, Any]:
    """Compile one case for one target and read the artifacts (see module docstring)."""
    import triton
    from triton.compiler import ASTSource

    row = _header(case, target)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            src = ASTSource(fn=case.fn, signature=case.signature(), constexprs=case.constexprs,
                            attrs=case.attrs())
            kernel = triton.compile(src, target=target.gpu_target(), options=case.config.options())
    except Exception as err:  # noqa: BLE001 - the compiler's error is the result
        row.update(compiled=False, error=_short_error(err), compile_s=round(time.perf_counter() - start, 2))
        row["lacks"] = lacks(row, target)
        return row
    row["compile_s"] = round(time.perf_counter() - start, 2)
    asm = kernel.asm.get("ptx") or kernel.asm.get("amdgcn") or ""
    pattern = _PTX_MMA if target.backend == "cuda" else _AMD_MMA
    counts = collections.Counter(pattern.findall(asm))
    instrs = [mma_format(i, target) for i, _ in counts.most_common()]
    row.update(compiled=True, error=None, mma_instructions=sorted(counts),
               mma_family=instrs[0][0] if instrs else None, mma_format=instrs[0][1] if instrs else None)
    if case.mma is None:
        row["native"] = "n/a"
    elif not instrs:
        row["native"] = "no-mma"
    else:
        row["native"] = "native" if any(f in _NATIVE[case.mma] for _, f in instrs) else "upcast"
    shared = int(kernel.metadata.shared)
    row.update(shared_bytes=shared, shared_limit=target.shared_limit,
               shared_fits=shared <= target.shared_limit)
    row.update(_nvidia_resources(kernel.asm["cubin"]) if target.backend == "cuda"
               else _amd_resources(kernel.asm["amdgcn"]))
    row["lacks"] = lacks(row, target)
    return row


def lacks(row: dict[str, Any], target: Target) -> list[str]:
    """What TARGET lacks for this kernel, in words (instruction, data type, registers, shared memory); empty
    when the kernel compiled natively, without spills, within the shared-memory limit."""
    if not row["compiled"]:
        return [f"does not compile for {target.name}: {row['error']}"]
    out = []
    wanted = row["wanted_mma"]
    if row["native"] == "upcast":
        out.append(f"no {wanted} tensor-core instruction: the compiler widens the operands to "
                   f"{row['mma_format']} on {row['mma_family']}")
    elif row["native"] == "no-mma":
        out.append(f"no tensor-core instruction for {wanted}: the products run on scalar FMA units")
    if row.get("spills"):
        out.append(f"not enough registers: {row['spills']} spills ({row['spills_unit']}) at "
                   f"{row['registers']} registers per thread")
    if not row["shared_fits"]:
        out.append(f"not enough shared memory: {row['shared_bytes'] / 1024:.0f} KB wanted, "
                   f"{target.shared_limit / 1024:.0f} KB per block")
    return out


def _job(kernel: str, target_name: str) -> dict[str, Any]:
    target = BY_NAME[target_name]
    case = next(c for c in cases_for(target.family) if c.name == kernel)
    return compile_case(case, target)


def _crashed(kernel: str, target_name: str) -> dict[str, Any]:
    target = BY_NAME[target_name]
    case = next(c for c in cases_for(target.family) if c.name == kernel)
    return {**_header(case, target), "compiled": False, "error": "compiler process crashed",
            "compile_s": None, "lacks": [f"does not compile for {target_name}: the compiler process crashed"]}


def _quiet() -> None:
    """Pool initializer: drop the workers' stderr, where LLVM dumps whole IR modules on a failed compile
    (the error itself comes back in the result row)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)


def _run_isolated(jobs: list[tuple[str, str]], workers: int, advance: Any) -> list[dict[str, Any]]:
    """Run JOBS in a process pool. A compiler crash (segfault) breaks the pool: the jobs it took down are
    retried one per fresh process, and a job that crashes again is reported as such."""
    ctx = multiprocessing.get_context("fork")  # workers only compile; nothing runs torch or CUDA
    done: dict[tuple[str, str], dict[str, Any]] = {}
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_quiet) as pool:
        futures = {pool.submit(_job, *job): job for job in jobs}
        for fut in concurrent.futures.as_completed(futures):
            if fut.exception() is None:
                done[futures[fut]] = fut.result()
                advance()
    for job in (j for j in jobs if j not in done):
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_quiet) as pool:
            try:
                done[job] = pool.submit(_job, *job).result()
            except concurrent.futures.process.BrokenProcessPool:
                done[job] = _crashed(*job)
        advance()
    return [done[j] for j in jobs]


def parse_targets(spec: str | None, smoke: bool) -> list[Target]:
    """Targets named in a comma-separated SPEC (default: all, or the smoke pair)."""
    if not spec:
        return [BY_NAME[t] for t in SMOKE_TARGETS] if smoke else list(TARGETS)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise RetargetError(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}",
                            field="--targets")
    return [BY_NAME[n] for n in names]


def build_matrix(targets: list[Target], kernels: list[str] | None = None, workers: int = 0,
                 progress: Any = None) -> dict[str, Any]:
    """Compile KERNELS (default: all) for TARGETS; WORKERS processes (0: one per CPU, 1: in this process)."""
    import triton

    from retarget.provenance import machine

    kernels = kernels or case_names()
    jobs = [(k, t.name) for t in targets for k in kernels]
    workers = max(1, min(workers or os.cpu_count() or 1, MAX_WORKERS, len(jobs)))
    task = progress.add_task("compiling", total=len(jobs)) if progress else None
    start = time.perf_counter()
    rows = []
    if workers == 1:
        for job in jobs:
            rows.append(_job(*job))
            if progress:
                progress.advance(task)
    else:
        rows = _run_isolated(jobs, workers, lambda: progress.advance(task) if progress else None)
    return {
        "provenance": "measured",
        "method": "triton.compile(ASTSource, target=GPUTarget) on CPU; ISA, cuobjdump and AMDGPU "
                  "metadata read back",
        "triton_version": triton.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "wall_s": round(time.perf_counter() - start, 1),
        "targets": [{"name": t.name, "backend": t.backend, "arch": t.arch, "warp_size": t.warp_size,
                     "family": t.family, "devices": t.devices, "fp8": t.fp8,
                     "shared_limit": {"value": t.shared_limit, "unit": "B", "provenance": "published",
                                      "url": t.source}} for t in targets],
        "kernels": kernels,
        "results": rows,
        "evidence": evidence(rows),
    }


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """NEW's rows over OLD's (same Triton version required): the kernels NEW compiled replace theirs in OLD,
    the others keep OLD's rows, with what each target lacks recomputed; `merged` records OLD's run."""
    if old["triton_version"] != new["triton_version"]:
        raise RetargetError(f"cannot merge matrices of Triton {old['triton_version']} and {new['triton_version']}")
    kept = [r for r in old["results"] if r["kernel"] not in new["kernels"]]
    for r in kept:
        r["lacks"] = lacks(r, BY_NAME[r["target"]])
    rows = kept + new["results"]
    kernels = [k for k in old["kernels"] if k not in new["kernels"]] + new["kernels"]
    return {**new, "kernels": kernels, "results": rows, "evidence": evidence(rows),
            "merged": {"date": old["date"], "wall_s": old["wall_s"], "machine": old["machine"],
                       "kernels": [k for k in old["kernels"] if k not in new["kernels"]]}}


def evidence(results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """target -> format -> {verdict: native | upcast | error, kernel, spills, shared_fits}: how each format
    runs on each target, from the best kernel that compiled for it (the lock-in model's evidence)."""
    by = {(r["kernel"], r["target"]): r for r in results}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for target in dict.fromkeys(r["target"] for r in results):
        out[target] = {}
        for fmt, kernels in FORMAT_KERNELS.items():
            rows = [by[(k, target)] for k in kernels if (k, target) in by]
            if not rows:
                continue
            ok = [r for r in rows if r["compiled"]]
            best = next((r for r in ok if r["native"] == "native"), ok[0] if ok else rows[0])
            if not best["compiled"]:
                verdict = "error"
            elif best["native"] == "native" and best is rows[0]:
                verdict = "native"
            else:  # upcast by the compiler, or only the fallback (wider-format) kernel runs
                verdict = "upcast"
            out[target][fmt] = {"verdict": verdict, "kernel": best["kernel"], "spills": best.get("spills"),
                                "shared_fits": best.get("shared_fits")}
        for feature, kernels in FEATURE_KERNELS.items():
            rows = [by[(k, target)] for k in kernels if (k, target) in by]
            if len(rows) == len(kernels):
                out[target][feature] = feature_verdict(rows)
    return out


def feature_verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The worst verdict over the kernels a feature needs: error > upcast > spills / shared memory > native,
    with everything those kernels lack."""
    if not all(r["compiled"] for r in rows):
        verdict = "error"
    elif any(r["native"] in ("upcast", "no-mma") for r in rows):
        verdict = "upcast"
    elif any(r.get("spills") or not r["shared_fits"] for r in rows):
        verdict = "constrained"
    else:
        verdict = "native"
    return {"verdict": verdict, "kernel": ", ".join(r["kernel"] for r in rows),
            "spills": sum(r.get("spills") or 0 for r in rows),
            "shared_fits": all(r.get("shared_fits", False) for r in rows),
            "lacks": [f"{r['kernel']}: {text}" for r in rows for text in r.get("lacks", [])]}


def cell(row: dict[str, Any], markup: bool = False) -> str:
    """One matrix cell: 'wgmma bf16 native, 154 regs, 64 KB' or 'error'."""
    if not row["compiled"]:
        return "[red]error[/]" if markup else "**error**"
    mma = f"{row['mma_family']} {row['mma_format']}" if row["mma_family"] else "no MMA"
    verdict = row["native"]
    if markup:
        colour = {"native": "green", "upcast": "yellow", "no-mma": "red"}.get(verdict, "white")
        verdict = f"[{colour}]{verdict}[/]"
    parts = [f"{mma} {verdict}" if row["native"] != "n/a" else mma, f"{row['registers']} regs"]
    if row["spills"]:
        parts.append(f"{row['spills']} spills")
    kb = row["shared_bytes"] / 1024
    parts.append(f"{kb:.0f} KB" + ("" if row["shared_fits"] else " > limit"))
    return ", ".join(parts)


def render_table(matrix: dict[str, Any], width: int = 200) -> Any:
    """A rich Table: kernels down, targets across when WIDTH allows, else one row per (kernel, target)."""
    from rich.table import Table

    title = f"Kernel portability matrix (AOT, triton {matrix['triton_version']})"
    names = [t["name"] for t in matrix["targets"]]
    by = {(r["kernel"], r["target"]): r for r in matrix["results"]}
    wide = width >= 34 + 20 * len(names)
    table = Table(title=title, show_lines=wide)
    if wide:
        table.add_column("kernel", no_wrap=True)
        for name in names:
            table.add_column(name)
        for k in matrix["kernels"]:
            table.add_row(k, *[cell(by[(k, n)], markup=True).replace(", ", "\n", 1) for n in names])
        return table
    for col in ("kernel", "target", "result"):
        table.add_column(col, no_wrap=col != "result")
    for k in matrix["kernels"]:
        for n in names:
            table.add_row(k, n, cell(by[(k, n)], markup=True))
    return table


def _verdict_table(evidence: dict[str, dict[str, Any]], columns: list[str]) -> list[str]:
    """Markdown rows: one per target, its verdict per column ('-' where it has none)."""
    rows = ["| target | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    return rows + [f"| {target} | " + " | ".join(verdicts[c]["verdict"] if c in verdicts else "-" for c in columns)
                   + " |" for target, verdicts in evidence.items()]


def to_markdown(matrix: dict[str, Any]) -> str:
    """The matrix as a Markdown document (docs/kernels.md)."""
    names = [t["name"] for t in matrix["targets"]]
    by = {(r["kernel"], r["target"]): r for r in matrix["results"]}
    shapes = {r["kernel"]: r["shape"] for r in matrix["results"]}
    out = ["# Kernel portability matrix", "",
           "Generated by `retarget kernels --markdown docs/kernels.md --json docs/kernels.json` with "
           f"Triton {matrix['triton_version']} on {matrix['machine']['cpu']} ({matrix['date']}, "
           f"{matrix['wall_s']} s). No GPU is involved: each kernel is compiled ahead of time for each "
           "target and the ISA is read back." + (
               f" Rows of {', '.join(f'`{k}`' for k in matrix['merged']['kernels'])} come from the run of "
               f"{matrix['merged']['date']} ({matrix['merged']['wall_s']} s), same Triton."
               if "merged" in matrix else ""),
           "",
           "Cell: tensor-core instruction family and operand format found in the ISA; **native** when that "
           "is the kernel's own format (fp8 on fp8 MMAs, int8 on int8, MXFP4 on block-scaled MMAs, "
           "f16/bf16 for the weight-only kernels, which dequantize by design), **upcast** when the "
           "compiler widened it; "
           "registers per thread (VGPRs on AMD); spills (NVIDIA: STL instructions, AMD: VGPR + SGPR spills); "
           "dynamic shared memory / LDS, flagged when above the target's per-block limit. GEMV rows use no "
           "tensor cores by design.", "",
           "| kernel | shape | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for k in matrix["kernels"]:
        out.append(f"| `{k}` | {shapes[k]} | " + " | ".join(cell(by[(k, n)]) for n in names) + " |")
    out += ["", "## Targets", "", "| target | devices | warp | fp8 flavour | shared memory limit | source |",
            "|---|---|---|---|---|---|"]
    for t in matrix["targets"]:
        lim = t["shared_limit"]
        out.append(f"| {t['name']} | {t['devices']} | {t['warp_size']} | {t['fp8']} | {lim['value']} B | "
                   f"{lim['url']} |")
    formats = list(FORMAT_KERNELS)
    out += ["", "## Formats per target", "",
            "How each format runs on each target, from the best kernel above that compiles for it "
            "(MXFP4: block-scaled `dot_scaled` with MXFP8 activations, else the dequantizing kernel).", "",
            *_verdict_table(matrix["evidence"], formats)]
    features = [f for f in FEATURE_KERNELS if any(f in v for v in matrix["evidence"].values())]
    if features:
        out += ["", "## Architecture features per target", "",
                "A feature is **native** when every kernel it needs compiles to the tensor-core instructions of "
                "its own format with no spills within the shared-memory limit; **constrained** when it "
                "compiles natively but spills or overflows shared memory; **upcast** when an operand is "
                "widened; **error** when a kernel does not compile.", "",
                *_verdict_table(matrix["evidence"], features)]
    lacking = [r for r in matrix["results"] if r.get("lacks")]
    if lacking:
        out += ["", "## What each target lacks", "",
                "Per kernel and target, in words, from the compiled artifacts (kernels not listed compile "
                "natively, without spills, within the target's shared memory).", ""]
        for target in names:
            items = [f"`{r['kernel']}`: {'; '.join(r['lacks'])}" for r in lacking if r["target"] == target]
            if items:
                out += [f"**{target}**", ""] + [f"- {item}" for item in items] + [""]
    errors = [r for r in matrix["results"] if not r["compiled"]]
    if errors:
        out += ["", "## Compiler errors", ""]
        out += [f"- `{r['kernel']}` on {r['target']}: {r['error']}" for r in errors]
    return "\n".join(out) + "\n"


KEEP_MARKER = "<!-- hand-written below this line: kept when `retarget kernels --markdown` rewrites the file -->"


def with_kept_prose(generated: str, path: Path) -> str:
    """GENERATED followed by the hand-written tail of the file at PATH (from KEEP_MARKER on), if it has one."""
    old = path.read_text() if path.is_file() else ""
    return generated + ("\n" + old[old.index(KEEP_MARKER):] if KEEP_MARKER in old else "")


def run(targets: str | None = None, smoke: bool = False, json_path: Path | None = None,
        markdown_path: Path | None = None, workers: int = 0, console: Any = None) -> dict[str, Any]:
    """`retarget kernels`: build the matrix, print it, optionally write JSON and Markdown."""
    from rich.progress import Progress

    from retarget.outdir import check_output_file, write_files

    if not 0 <= workers <= MAX_WORKERS:
        raise RetargetError(f"must be between 0 and {MAX_WORKERS}", field="--workers")
    outputs = {p: o for p, o in ((json_path, "--json"), (markdown_path, "--markdown")) if p is not None}
    for path, option in outputs.items():
        check_output_file(path, option)
    chosen = parse_targets(targets, smoke)
    kernels = list(SMOKE_CASES) if smoke else None
    with Progress(console=console, transient=True) as progress:
        matrix = build_matrix(chosen, kernels, workers=workers, progress=progress)
    if console is not None:
        console.print(render_table(matrix, console.width))
        ok = sum(r["compiled"] for r in matrix["results"])
        console.print(f"{ok}/{len(matrix['results'])} compiled in {matrix['wall_s']} s "
                      f"(triton {matrix['triton_version']})")
    texts = {json_path: lambda: json.dumps(matrix, indent=1, default=str),
             markdown_path: lambda: with_kept_prose(to_markdown(matrix), markdown_path)}
    write_files({path: texts[path]() for path in outputs}, outputs)
    return matrix
