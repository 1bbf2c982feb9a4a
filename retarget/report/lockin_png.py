"""PNG heatmap of the lock-in index (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from retarget.report.lockin_tables import li_grid

LABEL_FROM = 0.1  # |log2 LI| from which a cell gets its number printed


def prepare() -> None:
    """Import matplotlib with the Agg backend (no display needed); slow, so callers may do it early."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401


def write_heatmap(matrix: dict[str, Any], path: Path) -> None:
    """Models x devices, colour = log2 LI (blue: travels better than a plain model, red: worse), grey
    where the model does not run; cells away from 1 printed with their LI."""
    prepare()
    import matplotlib.pyplot as plt
    import numpy as np

    models, devices, grid = li_grid(matrix)
    z = np.array([[math.log2(v) if v else np.nan for v in row] for row in grid], dtype=float)
    lim = max(0.5, float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 0.5)
    fig, ax = plt.subplots(figsize=(2.0 + 0.5 * len(devices), 1.6 + 0.3 * len(models)), dpi=100)
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="#d9d9d9")
    im = ax.imshow(np.ma.masked_invalid(z), cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(devices)), devices, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(models)), models, fontsize=8)
    for i, row in enumerate(grid):  # label cells away from 1 only: 900 labels would double the render time
        for j, v in enumerate(row):
            if v and abs(math.log2(v)) >= LABEL_FROM:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5.5,
                        color="white" if abs(math.log2(v)) > 0.6 * lim else "black")
    w = matrix["workload"]
    ax.set_title(f"Lock-in index LI(M, h), workload {w['name']} (predicted; grey: does not run; "
                 f"unlabelled: {2 ** -LABEL_FROM:.2f} < LI < {2 ** LABEL_FROM:.2f})", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01).set_label("log2 LI", fontsize=8)
    fig.subplots_adjust(left=0.14, bottom=0.14, right=0.95, top=0.95)
    fig.savefig(path)
    plt.close(fig)
