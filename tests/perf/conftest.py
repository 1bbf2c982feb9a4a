"""Fixtures shared by the perf tests."""

from __future__ import annotations

from typing import Any

import pytest

from retarget.perf.calibrate import cross_validate
from retarget.perf.validate import held_out_file
from retarget.perf.validation_doc import DEFAULT_FILES


@pytest.fixture(scope="session")
def folds() -> list[dict[str, Any]]:
    """The leave-one-source-out folds of the committed files not held out (one pass, ~30 s)."""
    return cross_validate([p for p in DEFAULT_FILES if p.exists() and not held_out_file(p)])
