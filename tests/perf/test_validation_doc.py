"""docs/validation.md and validation_summary.json are what the committed code makes of the committed data."""

from __future__ import annotations

import json

import pytest

from retarget.perf.confidence import SUMMARY_FILE
from retarget.perf.validation_doc import DEFAULT_FILES, ROOT, build


def targets_table_lines(markdown: str) -> list[str]:
    """The targets table at the top of docs/validation.md (from its header to the first blank line)."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| measurements |"))
    end = lines.index("", start)
    return lines[start:end]


@pytest.mark.skipif(not DEFAULT_FILES[0].exists(), reason="shared measurements not found beside the repository")
def test_docs_and_summary_are_regenerated_from_the_committed_files(folds: list[dict]):
    markdown, summary = build(list(DEFAULT_FILES), cross_validation=folds)
    assert (ROOT / "docs" / "validation.md").read_text() == markdown, "run python -m retarget.perf.validation_doc"
    assert json.loads(SUMMARY_FILE.read_text()) == json.loads(json.dumps(summary))
    assert "| all files | evaluation split | decode |" in markdown and "target %" in markdown
    assert "| fresh_benchmarks.csv | evaluation split | prefill |" in markdown
    readme = (ROOT / "README.md").read_text()
    assert all(line in readme for line in targets_table_lines(markdown)), "copy the targets table into README.md"
    hopper = summary["groups"]["nvidia-hopper / tuned"]["decode"]
    assert hopper["rows"] >= 4  # the DeepSeek multi-GPU rows and the shared vLLM/SGLang rows


@pytest.mark.skipif(not DEFAULT_FILES[0].exists(), reason="shared measurements not found beside the repository")
def test_validated_devices_are_the_profiles_of_predicted_rows():
    """The fleet marks a device validated only when a published measurement on it was predicted: the summary's
    per-profile counts are the scored rows of the documents (an alias-matched label counts, a skipped row not)."""
    from retarget.perf.confidence import validated_profiles

    summary = json.loads(SUMMARY_FILE.read_text())
    assert validated_profiles() == set(summary["profiles"])
    assert summary["profiles"]["h20"] > 0 and all(n > 0 for n in summary["profiles"].values())
    assert "tpu-v5e" not in summary["profiles"]  # no measurement of it in any file
