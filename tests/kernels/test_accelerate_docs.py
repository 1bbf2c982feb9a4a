"""docs/kernels.md: the hand-written section on models survives `retarget kernels --markdown` and names exactly
the registered module classes."""

from __future__ import annotations

import re
from pathlib import Path

from retarget.kernels.accelerate._registry import PATCHES
from retarget.kernels.portability import KEEP_MARKER, with_kept_prose

DOC = Path(__file__).resolve().parents[2] / "docs" / "kernels.md"


def test_regenerating_the_matrix_keeps_the_hand_written_tail(tmp_path: Path) -> None:
    doc = tmp_path / "kernels.md"
    doc.write_text(f"# old matrix\n\n{KEEP_MARKER}\n\n## Running models\n")
    assert with_kept_prose("# new matrix\n", doc) == f"# new matrix\n\n{KEEP_MARKER}\n\n## Running models\n"
    assert with_kept_prose("# new matrix\n", tmp_path / "absent.md") == "# new matrix\n"


def test_the_doc_names_the_registered_classes() -> None:
    text = DOC.read_text()
    section = text[text.index(KEEP_MARKER):]
    table = section[section.index("| module class |"):section.index("\n\n", section.index("| module class |"))]
    documented = {name for row in table.splitlines()[2:] for name in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert documented == {cls.__name__ for cls in PATCHES}
