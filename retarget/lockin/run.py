"""`retarget lockin`: compute the matrix for the chosen models, devices and workload, print it, and write
lockin.json, lockin.csv, lockin.png, lockin.html and lockin.md into an output folder atomically."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from retarget.hw_profiles import list_profiles, load_profile
from retarget.lockin.evidence import annotate, load_evidence
from retarget.lockin.matrix import lockin_matrix
from retarget.lockin.recipe import get_workload
from retarget.lockin.whatif import apply_all, split_overrides
from retarget.models.registry import get_spec, load_registry
from retarget.outdir import atomic_dir, check_writable
from retarget.report.lockin_md import DEBATE_DEVICES

MAX_COLUMNS = 9


def _li_text(value: float | None) -> str:
    if value is None:
        return "[dim]-[/]"
    colour = "green" if value <= 1.1 else "yellow" if value <= 1.5 else "red"
    return f"[{colour}]{value:.2f}[/]"


def render_table(matrix: dict[str, Any], width: int = 200) -> Table:
    """Models x devices (the key devices when there are too many for WIDTH columns of terminal), with the
    geometric-mean LI and the feature with the largest mean share of log LI."""
    ids = [p["id"] for p in matrix["profiles"]]
    room = max(2, min(MAX_COLUMNS, (width - 50) // 9))
    cols = ids if len(ids) <= room else [d for d in DEBATE_DEVICES if d in ids][:room]
    table = Table(title=f"Lock-in index LI(M, h), workload {matrix['workload']['name']} (predicted)",
                  box=box.SIMPLE_HEAD, pad_edge=False,
                  caption=None if cols == ids else f"{len(ids)} devices: full matrix in lockin.csv / lockin.html")
    for name in ("model", "home", *cols, "geomean", "largest share"):
        left = name in ("model", "home", "largest share")
        table.add_column(name, justify="left" if left else "right", no_wrap=name in ("model", "home"))
    for m in matrix["models"]:
        shares = m["summary"]["mean_log_shares"]
        top = max(shares, key=lambda f: abs(shares[f])) if shares else None
        table.add_row(m["name"], m["home"], *(_li_text(m["cells"][d]["li"]["value"]) for d in cols),
                      _li_text(m["summary"]["geomean_li"]["value"]),
                      f"{top} {shares[top]:+.2f}" if top else "-")
    return table


def _start(fn: Callable[..., None], *args: Any) -> Callable[[], None]:
    """Run FN(*ARGS) in a forked process where fork exists (else now); returns the wait function."""
    if "fork" not in multiprocessing.get_all_start_methods():
        fn(*args)
        return lambda: None
    proc = multiprocessing.get_context("fork").Process(target=fn, args=args)
    proc.start()

    def wait() -> None:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"{fn.__name__} failed in its worker process (exit code {proc.exitcode})")

    return wait


def run(models: list[str] | None = None, targets: list[str] | None = None, workload: str = "decode-b1",
        overrides: list[str] | None = None, out: Path = Path("out/lockin"), kernels_json: Path | None = None,
        console: Console | None = None) -> dict[str, Any]:
    """Build the lock-in matrix, print it, write the report files to OUT; returns the matrix dict."""
    from retarget.report.lockin_html import write_html
    from retarget.report.lockin_md import write_markdown
    from retarget.report.lockin_png import write_heatmap
    from retarget.report.lockin_tables import write_csv, write_json

    console = console or Console()
    start = time.perf_counter()
    check_writable(Path(out))
    wl = get_workload(workload)
    specs = [get_spec(m) for m in models] if models else list(load_registry().values())
    profiles = [load_profile(t) for t in targets] if targets else list_profiles()
    split = split_overrides(overrides or [], [p.id for p in list_profiles()] + [p.id for p in profiles])
    profiles = apply_all(profiles, split)
    matrix = lockin_matrix(specs, profiles, wl, overrides=split)
    matrix["overrides"] = list(overrides or [])
    evidence = load_evidence(profiles, kernels_json)
    matrix["kernel_evidence"] = evidence
    annotate(matrix, evidence)
    with atomic_dir(Path(out)) as tmp:
        png = _start(write_heatmap, matrix, tmp / "lockin.png")  # matplotlib is slow: draw meanwhile
        write_json(matrix, tmp / "lockin.json")
        write_csv(matrix, tmp / "lockin.csv")
        write_html(matrix, evidence, tmp / "lockin.html")
        write_markdown(matrix, tmp / "lockin.md")
        png()
    console.print(render_table(matrix, console.width))
    console.print(f"{len(specs)} models x {len(profiles)} devices in {time.perf_counter() - start:.1f} s; "
                  f"wrote {out}/lockin.{{json,csv,png,html,md}}")
    return matrix
