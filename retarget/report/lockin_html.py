"""Self-contained HTML lock-in report: plotly figures with plotly.js embedded (opens with no network)."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from retarget.lockin.accuracy import COSINE_BUDGET, COST_SOURCE, PPL_BUDGET, price_text
from retarget.report.lockin_tables import FEATURES, li_grid

_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1400px;color:#222;line-height:1.45}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:left;vertical-align:top}th{background:#f2f2f2}td.n{text-align:right}details{margin:.3em 0}
summary{cursor:pointer;font-weight:600}code{background:#f4f4f4;padding:0 3px}.muted{color:#777}
details.ev summary{font-weight:400}.native{background:#e3f4e3}.absent{background:#fbe3d6}.unknown{color:#777}"""
_FEATURE_NAMES = {"format": "native format", "mla": "MLA", "moe": "MoE", "ssm": "SSM / linear attention",
                  "window": "sliding window / sinks", "memory": "memory capacity", "interconnect": "interconnect"}


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def _table(head: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{c}</td>" for i, c in
                                    enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _heatmap(matrix: dict[str, Any]) -> dict[str, Any]:
    models, devices, grid = li_grid(matrix)
    z = [[math.log2(v) if v else None for v in row] for row in grid]
    text = [[f"{v:.2f}" if v else "-" for v in row] for row in grid]
    hover = []
    for m in matrix["models"]:
        line = []
        for d in devices:
            r = m["cells"][d]["recipe"]
            mem = r.get("memory", {})
            line.append(f"{m['name']} on {d} (home {m['home']})<br>{_e(r['describe'])}<br>"
                        f"{r['tokens_s_per_device']:.1f} tok/s per device; "
                        f"{_num(mem.get('per_device_gb'), '.1f')} GB per device<br>"
                        f"runtimes: {_e(_runtime_summary(r))}<br>conversion price: {_e(_price_summary(r))}")
        hover.append(line)
    lim = max([0.5] + [abs(v) for row in z for v in row if v is not None])
    trace = {"type": "heatmap", "z": z, "x": devices, "y": models, "text": text, "texttemplate": "%{text}",
             "textfont": {"size": 9}, "customdata": hover,
             "hovertemplate": "%{customdata}<br>LI %{text}<extra></extra>", "colorscale": _scale("RdBu_r"),
             "zmid": 0, "zmin": -lim, "zmax": lim, "colorbar": {"title": {"text": "log2 LI"}},
             "hoverongaps": False}
    return {"data": [trace], "layout": _grid_layout(
        len(models), f"LI(M, h), workload {matrix['workload']['name']} (grey: does not run)")}


def _scale(name: str) -> list[list[Any]]:
    """A named plotly (Python-side) colour scale as explicit stops: plotly.js names differ in direction."""
    import plotly.colors as pc

    colours = getattr(pc.diverging, name, None) or getattr(pc.sequential, name)
    return [[i / (len(colours) - 1), c] for i, c in enumerate(colours)]


def _grid_layout(rows: int, title: str) -> dict[str, Any]:
    return {"height": 260 + 22 * rows, "margin": {"l": 140, "r": 20, "t": 30, "b": 120},
            "yaxis": {"autorange": "reversed"}, "plot_bgcolor": "#d9d9d9", "title": {"text": title}}


def _attribution_bars(matrix: dict[str, Any]) -> dict[str, Any]:
    rows = [m for m in matrix["models"] if m["summary"]["mean_log_shares"]]
    traces = []
    for f in FEATURES:
        xs = [m["summary"]["mean_log_shares"].get(f, 0.0) for m in rows]
        if any(abs(x) > 1e-9 for x in xs):
            traces.append({"type": "bar", "name": _FEATURE_NAMES[f], "x": xs, "y": [m["name"] for m in rows],
                           "orientation": "h"})
    layout = {"barmode": "relative", "height": 220 + 22 * len(rows), "margin": {"l": 140, "r": 20, "t": 30},
              "yaxis": {"autorange": "reversed"}, "xaxis": {"title": {"text": "mean share of log LI over devices"}},
              "title": {"text": "Which features cause the lock-in (Shapley shares, averaged over devices)"}}
    return {"data": traces, "layout": layout}


def _memory_fit(matrix: dict[str, Any]) -> dict[str, Any]:
    models, devices, _ = li_grid(matrix)
    counts = [[m["cells"][d]["recipe"]["devices"] if m["cells"][d]["recipe"]["runs"] else None for d in devices]
              for m in matrix["models"]]
    z = [[math.log2(c) if c else None for c in row] for row in counts]
    text = [[str(c) if c else "no" for c in row] for row in counts]
    trace = {"type": "heatmap", "z": z, "x": devices, "y": models, "text": text, "texttemplate": "%{text}",
             "textfont": {"size": 9}, "colorscale": _scale("YlOrRd"), "showscale": False, "hoverongaps": False,
             "hovertemplate": "%{y} on %{x}: %{text} device(s)<extra></extra>"}
    return {"data": [trace],
            "layout": _grid_layout(len(models), "Devices each model needs to fit (best recipe; 'no': does not fit)")}


def _summary_table(matrix: dict[str, Any]) -> str:
    rows = []
    for m in matrix["models"]:
        s = m["summary"]
        cells = [(d, c["li"]["value"]) for d, c in m["cells"].items() if c["li"]["value"]]
        worst = max(cells, key=lambda dc: dc[1]) if cells else ("-", None)
        shares = s["mean_log_shares"]
        top = max(shares, key=lambda f: abs(shares[f])) if shares else None
        rows.append([_e(m["name"]), _e(m["home"]), _e(", ".join(m["features"]) or "none"),
                     _num(s["geomean_li"]["value"]),
                     f"{_num(worst[1])} ({_e(worst[0])})" if worst[1] and worst[1] > 1.005 else _num(worst[1]),
                     f"{_e(_FEATURE_NAMES.get(top, '-'))} {_num(shares.get(top) if top else None, '+.3f')}"])
    return _table(["model", "home device", "features", "geomean LI", "worst LI (device)",
                   "largest mean share of log LI"], rows, {3, 4})


def _recipes(matrix: dict[str, Any]) -> str:
    parts = []
    for m in matrix["models"]:
        rows = []
        for d, c in m["cells"].items():
            r, ref, a = c["recipe"], c["reference_recipe"], c.get("attribution", {})
            mem = r.get("memory", {})
            shares = a.get("shares", {})
            att = ", ".join(f"{_FEATURE_NAMES[f]} {v:+.3f}" for f, v in shares.items() if abs(v) >= 5e-4)
            kernels = ", ".join(f"{f}: {v}" for f, v in r.get("kernels", {}).items())
            rows.append([_e(d), _num(c["li"]["value"]), _e(r["describe"]), _num(r["tokens_s_per_device"], ".1f"),
                         _num(ref["tokens_s_per_device"], ".1f"),
                         f"{_num(mem.get('per_device_gb'), '.1f')} / {_num(mem.get('usable_per_device_gb'), '.1f')}",
                         _e(r.get("bottleneck", "-")), _e(kernels or "-"), _e(att or a.get("error", "")),
                         _cell_evidence(m["name"], d, r)])
        table = _table(["device", "LI", "recipe (conversions; devices)", "tok/s per device", "R(M) tok/s per device",
                        "GB per device / usable", "bottleneck", "Triton kernels (compiled)", "shares of log LI",
                        "runtime coverage and conversion price"], rows, {1, 3, 4})
        parts.append(f"<details><summary>{_e(m['name'])}: home {_e(m['home'])} ({_e(m['home_why'])}); "
                     f"home recipe: {_e(m['home_recipe']['describe'])}</summary>{table}</details>")
    return "".join(parts)


_VERDICT = {"native": "native", "unknown": "not checked"}


def _verdict(verdicts: dict[str, str], provider: str) -> str:
    """A provider's verdict on an op in words: native, falls back to CPU, no kernel or not checked."""
    v = verdicts[provider]
    return _VERDICT.get(v) or ("falls back to CPU" if verdicts.get("CPU") == "native" else "no kernel")


def _runtime_summary(r: dict[str, Any]) -> str:
    """The ops that leave the device's providers, e.g. 'on CANN falls back to CPU: RotaryEmbedding, QMoE;
    mla: no ONNX Runtime operator'."""
    rt = r.get("runtimes")
    if not rt:
        return "not evaluated"
    groups: dict[str, list[str]] = {}
    for o in rt["verdicts"]:
        for p, v in o["verdicts"].items():
            if v != "native":
                groups.setdefault(f"on {p} {_verdict(o['verdicts'], p)}", []).append(o["op"])
    leaves = [f"{k}: {', '.join(ops)}" for k, ops in groups.items()]
    leaves += [f"{f}: no ONNX Runtime operator" for f in rt["no_operator"]]
    return "; ".join(leaves) or f"every op native on {', '.join(_providers(rt))}"


def _providers(rt: dict[str, Any]) -> list[str]:
    return list(rt["verdicts"][0]["verdicts"]) if rt["verdicts"] else []


def _price_summary(r: dict[str, Any]) -> str:
    prices = r.get("conversion_prices", [])
    if prices:
        return "; ".join(f"{p['native']} -> {p['target']} perplexity x{p['ppl_ratio_vs_native']:.3f} (measured)"
                         for p in prices)
    return "not measured" if r.get("conversions") else "none (native formats)"


def _cell_evidence(model: str, device: str, r: dict[str, Any]) -> str:
    """A cell's evidence, folded: per op of its export the verdict of each execution provider of the device,
    and the conversions made with their measured accuracy price and its source."""
    rt = r.get("runtimes")
    parts = []
    if rt:
        names = _providers(rt)
        rows = [[_e(o["op"])] + [f"<span class={v}>{_e(_verdict(o['verdicts'], p))}</span>"
                                 for p, v in o["verdicts"].items()] for o in rt["verdicts"]]
        rows += [[_e(f), *(["no ONNX Runtime operator"] * len(names))] for f in rt["no_operator"]]
        parts.append(_table(["op", *names], rows))
    prices = {f"{p['native']} -> {p['target']}": p for p in r.get("conversion_prices", [])}
    items = [f"<li>{_e(c)}</li>" for c in r.get("conversions", [])]
    items += [f"<li class=price>{_e(price_text(p))}<br><span class=muted>{_e(p['source'])}</span></li>"
              for p in prices.values()]
    if r.get("conversions") and not prices:
        items.append("<li class=muted>conversion price: not measured</li>")
    parts.append(f"<ul>{''.join(items)}</ul>" if items else "<p class=muted>native formats: no conversion</p>")
    return (f"<details class=ev data-model='{_e(model)}' data-device='{_e(device)}'><summary>"
            f"{_e(_runtime_summary(r))}; conversion: {_e(_price_summary(r))}</summary>{''.join(parts)}</details>")


def _kernels(evidence: dict[str, Any] | None) -> str:
    if not evidence:
        return ("<p class=muted>No kernel portability matrix was available (run <code>retarget kernels --json "
                "docs/kernels.json</code>); this section is empty.</p>")
    fmts = evidence["formats"]
    rows = [[_e(d), _e(v["target"] or "-")] + [_e(v["verdicts"].get(f, "-")) for f in fmts] + [_e(v.get("note", ""))]
            for d, v in evidence["devices"].items()]
    return (f"<p>From <code>{_e(evidence['source'])}</code> ({_e(evidence['provenance'])}: {_e(evidence['method'])};"
            f" Triton {_e(evidence['triton_version'])}, {_e(evidence['date'])}). native = the kernel compiled to "
            "the format's own tensor-core instructions; upcast = it compiled but computes in a wider format; "
            "error = it did not compile.</p>" + _table(["device", "target", *fmts, "note"], rows))


def _methodology(matrix: dict[str, Any]) -> str:
    items = "".join(f"<li>{_e(a)}</li>" for a in matrix["assumptions"])
    models = "".join(f"<li>{_e(m['name'])}: <a href='{_e(m['source'])}'>{_e(m['source'])}</a></li>"
                     for m in matrix["models"] if m.get("source"))
    devices = "".join(f"<li>{_e(p['id'])}: " + ", ".join(f"<a href='{_e(s)}'>{_e(s)}</a>" for s in p["sources"][:3])
                      + "</li>" for p in matrix["profiles"])
    overrides = matrix.get("overrides") or []
    return f"""<p><b>Definition.</b> <code>{_e(matrix['definition'])}</code>, with T the predicted tokens/s per
device of the best recipe, g the model's home device and R(M) the portable reference: a dense-BF16 GQA
transformer with M's active parameters and context. LI = 1: M travels from g to h as well as a plain model;
LI = 2: it loses twice as much. The raw hardware gap cancels; what is left is the architecture's fit.</p>
<p><b>Attribution.</b> Each feature is neutralised in turn (native format to BF16, MLA to GQA of equal KV
bytes, MoE to a dense MLP of equal active parameters, SSM/linear attention to softmax attention, windows
and sinks to full attention; on the device side h gets the home device's memory capacity or interconnect
bandwidth). Shares are exact Shapley values of log LI over those features, so they add up to log LI with
no order chosen; exp(share) is the factor of LI a feature accounts for.</p>
<p><b>Assumptions.</b></p><ul>{items}</ul>
<p><b>What-if overrides in effect:</b> {_e(', '.join(overrides) or 'none')}.</p>
<p><b>Limits.</b> Every number here is predicted by an analytic roofline model, not measured; its error
against published measurements is in docs/validation.md. Devices without a sourced INT8 rate run INT8
recipes at their BF16 rate.</p>
<p><b>Sources: models.</b></p><ul>{models}</ul><p><b>Sources: devices.</b></p><ul>{devices}</ul>"""


def write_html(matrix: dict[str, Any], evidence: dict[str, Any] | None, path: Path) -> None:
    """The report page: summary, LI heatmap, attribution bars, memory fit, recipes, kernels, methodology."""
    import plotly.io as pio

    figs = [_heatmap(matrix), _attribution_bars(matrix), _memory_fit(matrix)]
    # plain figure dicts, not validated graph objects: building those costs more than everything else here
    divs = [pio.to_html(f, full_html=False, include_plotlyjs=(i == 0), div_id=f"fig{i}", validate=False,
                        config={"responsive": True}) for i, f in enumerate(figs)]
    w = matrix["workload"]
    page = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>retarget lock-in report</title>
<style>{_CSS}</style></head><body>
<h1>Lock-in of open-weight models across {len(matrix['profiles'])} devices</h1>
<p>Workload <code>{_e(w['name'])}</code> (batch {w['batch']}, context {w['ctx']}, {_e(w['phase'])}).
All numbers are <b>predicted</b> by <code>{_e(matrix['model'])}</code>. Hover a cell for its recipe and evidence.</p>
<h2>Summary</h2>{_summary_table(matrix)}
<h2>Lock-in index</h2>{divs[0]}
<h2>Attribution</h2>{divs[1]}
<h2>Memory fit</h2>{divs[2]}
<h2>Retargeting recipe for every cell</h2>
<p>Each cell's last column folds its evidence: which operators of the recipe's ONNX Runtime export each
execution provider of the device runs natively ({_e((matrix.get('runtime_evidence') or {}).get('provenance',
'not evaluated'))}; {_e((matrix.get('runtime_evidence') or {}).get('assumption', ''))}), and the accuracy price
of its format conversions, measured ({_e(COST_SOURCE)}); lock-in picks a faster conversion only within
{PPL_BUDGET - 1:.0%} perplexity and {COSINE_BUDGET} cosine of the native format.</p>{_recipes(matrix)}
<h2>Kernel portability</h2>{_kernels(evidence)}
<h2>Methodology</h2>{_methodology(matrix)}
</body></html>"""
    path.write_text(page)
