"""The Pareto plot of a sweep: error (KL to fp32, lower is better) against speed (decode tokens/s, higher is
better), one colour per model and target, its Pareto front joined and labelled with the recipes."""

from __future__ import annotations

import io
import itertools
import textwrap
from typing import Any


def plot(table: list[dict[str, Any]], speed: str, error: str, title: str) -> bytes:
    """PNG bytes of the rows of TABLE marked with `pareto` (rows of other jobs are left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    done = sorted((r for r in table if "pareto" in r), key=lambda r: (r["model"], r["target"]))
    floor = min((r[error] for r in done if r[error] > 0), default=1e-6)
    for (model, target), group in itertools.groupby(done, key=lambda r: (r["model"], r["target"])):
        group = list(group)
        points = ax.scatter([r[speed] for r in group], [max(r[error], floor) for r in group], s=18, alpha=0.6,
                            label=f"{model} on {target}")
        front = sorted((r for r in group if r["pareto"]), key=lambda r: r[speed])
        ax.plot([r[speed] for r in front], [max(r[error], floor) for r in front], "-o", ms=5,
                color=points.get_facecolor()[0])
        for r in front:
            ax.annotate(r["recipe"], (r[speed], max(r[error], floor)), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xlabel(f"{speed} (higher is better)")
    ax.set_ylabel(f"{error} (lower is better; 0 drawn at {floor:.1g})")
    ax.set_title("\n".join(textwrap.wrap(title, 90)), fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
