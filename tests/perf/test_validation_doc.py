"""docs/validation.md and validation_summary.json are what the committed code makes of the committed data."""

from __future__ import annotations

import json

import pytest

from retarget.perf.confidence import SUMMARY_FILE
from retarget.perf.validation_doc import DEFAULT_FILES, ROOT, build


@pytest.mark.skipif(not DEFAULT_FILES[0].exists(), reason="shared measurements not found beside the repository")
def test_docs_and_summary_are_regenerated_from_the_committed_files():
    markdown, summary = build(list(DEFAULT_FILES))
    assert (ROOT / "docs" / "validation.md").read_text() == markdown, "run python -m retarget.perf.validation_doc"
    assert json.loads(SUMMARY_FILE.read_text()) == json.loads(json.dumps(summary))
    assert "| all files | decode |" in markdown and "target %" in markdown
    hopper = summary["groups"]["nvidia-hopper / tuned"]["decode"]
    assert hopper["rows"] >= 4  # the DeepSeek multi-GPU rows and the shared vLLM/SGLang rows
