"""`retarget lockin`: compute the matrix for the chosen models, devices and workload, print it, and write
lockin.json, lockin.csv, lockin.png, lockin.html, lockin.md and lockin-evidence.md into an output folder
atomically."""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from retarget.errors import RetargetError
from retarget.hw_profiles import list_profiles, load_profile
from retarget.inputs import load_json
from retarget.lockin.evidence import annotate, load_evidence
from retarget.lockin.evidence_report import write_evidence
from retarget.lockin.matrix import lockin_matrix
from retarget.lockin.recipe import get_workload
from retarget.lockin.runtimes import annotate_runtimes
from retarget.lockin.whatif import apply_all, changes, describe, split_overrides
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


def _paint(conn: Any, other_end: Any, path: Path) -> None:
    """Painter process: import matplotlib while the matrix is computed, then draw the one it is sent."""
    from retarget.report.lockin_png import prepare, write_heatmap

    other_end.close()  # the child got the sender's end too; closed here, recv sees EOF when the sender closes
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupt is the parent's to handle: it kills this process
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    prepare()
    try:
        matrix = conn.recv()
    except EOFError:  # the run failed before the matrix was ready
        return
    write_heatmap(matrix, path)


def _painter(path: Path) -> tuple[Callable[[dict[str, Any]], None], Callable[[bool], None]]:
    """(send, wait) of a process drawing the heatmap to PATH (matplotlib's import and drawing take seconds,
    which overlap with the matrix and the other files). Spawned, not forked: a fork of a process whose other
    threads hold a lock (ONNX Runtime's, torch's, an allocator's) can hang in the child."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_paint, args=(child, parent, path))
    proc.start()
    child.close()
    sent = []

    def send(matrix: dict[str, Any]) -> None:
        parent.send(matrix)
        sent.append(True)

    def wait(abort: bool) -> None:
        """Wait for the drawing; ABORT (the run failed or was interrupted): kill it first."""
        parent.close()
        if abort:
            proc.kill()
        try:
            proc.join()
        except BaseException:
            proc.kill()
            raise
        if sent and not abort and proc.exitcode != 0:
            raise RuntimeError(f"drawing {path.name} failed in its worker process (exit code {proc.exitcode})")

    return send, wait


def check_kernel_matrix(path: Path) -> None:
    """PATH must be a kernel matrix as `retarget kernels --json` writes it: {'evidence': {target: {format:
    {'verdict': ...}}}}; anything else fails naming the file and the first wrong field."""
    matrix = load_json(path)
    evidence = matrix.get("evidence") if isinstance(matrix, dict) else None
    if not isinstance(evidence, dict):
        raise RetargetError("expected a kernel matrix with an 'evidence' mapping", source=str(path),
                            field="evidence")
    for target, per_format in evidence.items():
        if not isinstance(per_format, dict):
            raise RetargetError("expected a mapping of format -> verdict", source=str(path), field=f"evidence.{target}")
        for fmt, verdict in per_format.items():
            if not isinstance(verdict, dict) or not isinstance(verdict.get("verdict"), str):
                raise RetargetError("expected {'verdict': text}", source=str(path), field=f"evidence.{target}.{fmt}")


def run(models: list[str] | None = None, targets: list[str] | None = None, workload: str = "decode-b1",
        overrides: list[str] | None = None, out: Path = Path("out/lockin"), kernels_json: Path | None = None,
        console: Console | None = None) -> dict[str, Any]:
    """Build the lock-in matrix, print it, write the report files to OUT; returns the matrix dict."""
    from retarget.report.lockin_html import write_html
    from retarget.report.lockin_md import write_markdown
    from retarget.report.lockin_tables import write_csv, write_json

    console = console or Console()
    start = time.perf_counter()
    check_writable(Path(out), inputs=[kernels_json, *(Path(t) for t in targets or [])])
    if kernels_json is not None:
        check_kernel_matrix(Path(kernels_json))
    wl = get_workload(workload)
    specs = [get_spec(m) for m in models] if models else list(load_registry().values())
    bundled = [load_profile(t) for t in targets] if targets else list_profiles()
    split = split_overrides(overrides or [], [p.id for p in list_profiles()] + [p.id for p in bundled])
    profiles = apply_all(bundled, split)
    changed = changes(list_profiles(), apply_all(list_profiles(), split))
    with atomic_dir(Path(out)) as tmp:
        draw, drawn = _painter(tmp / "lockin.png")
        try:
            matrix = lockin_matrix(specs, profiles, wl, overrides=split)
            matrix["overrides"] = list(overrides or [])
            matrix["whatif_changes"] = changed
            homes = {m["name"]: m["home"] for m in matrix["models"]}
            whatif_lines = describe(matrix["overrides"], changed, homes)
            evidence = load_evidence(profiles, kernels_json)
            matrix["kernel_evidence"] = evidence
            annotate(matrix, evidence)
            annotate_runtimes(matrix, {s.name: s for s in specs})
            draw(matrix)
            write_json(matrix, tmp / "lockin.json")
            write_csv(matrix, tmp / "lockin.csv")
            write_html(matrix, evidence, tmp / "lockin.html")
            write_markdown(matrix, tmp / "lockin.md")
            write_evidence(matrix, tmp / "lockin-evidence.md")
        except BaseException:
            drawn(True)
            raise
        drawn(False)
    console.print(render_table(matrix, console.width))
    for line in whatif_lines:
        console.print(line, highlight=False)
    console.print(f"{len(specs)} models x {len(profiles)} devices in {time.perf_counter() - start:.1f} s; "
                  f"wrote {out}/lockin.{{json,csv,png,html,md}} and lockin-evidence.md")
    return matrix
