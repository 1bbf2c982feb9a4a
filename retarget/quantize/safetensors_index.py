"""Which safetensors file of an HF folder holds each tensor (the native-format readers open them one by one)."""

from __future__ import annotations

from pathlib import Path


def tensor_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> the *.safetensors file of FOLDER that holds it."""
    from safetensors import safe_open

    where: dict[str, Path] = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(file, "pt") as f:
            where.update({name: file for name in f.keys()})
    return where
