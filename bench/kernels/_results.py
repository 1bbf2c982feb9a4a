"""Where GPU measurements go: bench/results/<device>.json, one list of rows per device, appended to."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results"


def results_file(device_name: str) -> Path:
    """bench/results/<device name in lower-case words joined by '-'>.json."""
    return RESULTS / f"{re.sub(r'[^A-Za-z0-9]+', '-', device_name).strip('-').lower()}.json"


def append_rows(device_name: str, rows: list[dict[str, Any]]) -> Path:
    """Append ROWS to the device's results file (written whole, so an interrupt leaves the old file)."""
    path = results_file(device_name)
    old = json.loads(path.read_text()) if path.exists() else []
    RESULTS.mkdir(exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(old + rows, indent=1) + "\n")
    tmp.replace(path)
    return path
