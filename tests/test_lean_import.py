"""`import retarget` (and the CLI's startup) stays light: no torch, no triton, no CUDA initialisation."""

import subprocess
import sys


def test_import_retarget_loads_no_torch_or_triton() -> None:
    code = ("import sys, retarget, retarget.cli, retarget.errors, retarget.provenance; "
            "print(sorted(m for m in ('torch', 'triton', 'onnxruntime', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
