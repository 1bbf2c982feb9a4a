"""Write an output folder atomically: build it in a temporary sibling, rename it into place on success."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from retarget.errors import RetargetError


def check_writable(out: Path) -> None:
    """Fail early (before any work) if OUT cannot be created: its nearest existing ancestor must be a
    writable folder (missing parents are created when the output is written)."""
    ancestor = out.resolve().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RetargetError(f"{ancestor} is not a folder", source=str(out), field="--out")
    if not os.access(ancestor, os.W_OK):
        raise RetargetError(f"{ancestor} is not writable", source=str(out), field="--out")
    if out.exists() and not out.is_dir():
        raise RetargetError("exists and is not a folder", source=str(out), field="--out")


@contextlib.contextmanager
def atomic_dir(out: Path) -> Iterator[Path]:
    """Yield a temporary folder next to OUT; on success replace OUT with it, on failure remove it."""
    out = Path(out)
    check_writable(out)
    out.resolve().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.resolve().parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _honour_umask(tmp)
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _honour_umask(folder: Path) -> None:
    """Give FOLDER and everything in it the modes the user's umask asks for (mkdtemp makes the folder 0700, and
    some writers, such as ONNX's external data, make files 0600): others can read the artifact as usual."""
    mask = os.umask(0)
    os.umask(mask)
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)
