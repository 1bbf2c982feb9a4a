"""Write outputs atomically and never destroy what retarget did not write.

An output folder is built in a temporary sibling and renamed into place on success; it carries a marker
file, and only a folder with that marker (a previous output) or an empty one is ever replaced. Several
output files are written all-or-nothing. Every check runs before any work starts; SIGINT / SIGTERM during
the final renames are held back until the renames are done, and earlier ones remove the temporary files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from retarget.errors import RetargetError

MARKER = ".retarget-output"  # written into every output folder; only such folders are ever replaced
SYSTEM_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))
MAX_NAME_BYTES = 255


def _absolute(path: Path) -> Path:
    """PATH made absolute without following a link in its last part ('.' and '..' collapsed)."""
    return Path(os.path.abspath(path))


def _check_common(path: Path, option: str) -> Path:
    """Checks shared by folder and file outputs; returns PATH absolute."""
    out = _absolute(path)
    src = str(path)
    if not out.name or path.name in ("", ".", ".."):
        raise RetargetError("must name a folder or file, not '.' or '..'", source=src, field=option)
    if len(out.name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise RetargetError(f"name longer than {MAX_NAME_BYTES} bytes", source=src[:80], field=option)
    real_parent = out.parent.resolve()
    if any(real_parent == root or root in real_parent.parents for root in SYSTEM_ROOTS):
        raise RetargetError(f"inside {real_parent}, a system folder", source=src, field=option)
    if out.is_symlink():
        raise RetargetError("is a symbolic link; give the real path", source=src, field=option)
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RetargetError(f"{ancestor} is not a folder", source=src, field=option)
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise RetargetError(f"{ancestor} is not writable", source=src, field=option)
    return out


def check_output_dir(path: Path, option: str = "--out", inputs: Iterable[Path | None] = ()) -> Path:
    """Fail before any work when PATH cannot be written as an output folder without harm: it must not be a
    link, a file or device, a non-empty folder that is not a previous output, the current folder, or an
    input (or a folder holding one). Returns PATH absolute."""
    out = _check_common(path, option)
    src = str(path)
    if out.exists():
        if not out.is_dir():
            raise RetargetError("exists and is not a folder", source=src, field=option)
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise RetargetError(f"a folder with files not written by retarget (no {MARKER}); refusing to "
                                "replace it: choose a new or empty folder", source=src, field=option)
    real = out.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise RetargetError("is the current folder or holds it", source=src, field=option)
    for item in inputs:
        if item is None:
            continue
        source = Path(item).resolve()
        if source == real or real in source.parents:
            raise RetargetError(f"would replace the input {item}", source=src, field=option)
    return out


def check_output_file(path: Path, option: str) -> Path:
    """Fail before any work when PATH cannot be written as an output file: not a link, folder or device,
    not in a system folder, a name of at most 255 bytes, an existing writable parent. Returns PATH absolute."""
    out = _check_common(path, option)
    if not out.parent.is_dir():
        raise RetargetError("parent folder does not exist", source=str(path), field=option)
    if out.exists() and not stat.S_ISREG(out.stat().st_mode):
        raise RetargetError("exists and is not a regular file", source=str(path), field=option)
    return out


check_writable = check_output_dir  # the name the pipelines use


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back (delivered on exit) so a rename sequence is never cut in half."""
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held) if hasattr(signal, "pthread_sigmask") else None
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def atomic_dir(out: Path, inputs: Iterable[Path | None] = ()) -> Iterator[Path]:
    """Yield a temporary folder next to OUT; on success replace OUT with it, on failure remove it."""
    out = check_output_dir(Path(out), inputs=inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / MARKER).write_text("written by retarget; a folder with this file may be replaced by its next run\n")
        yield tmp
        _honour_umask(tmp)
        with _signals_held():
            old = None
            if out.exists():
                check_output_dir(out)  # still a previous output (or empty)
                old = out.with_name(f".{out.name}.old-{os.getpid()}")
                out.rename(old)
            tmp.rename(out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_files(files: dict[Path, str], options: dict[Path, str] | None = None) -> None:
    """Write every {path: text} all-or-nothing: each to a temporary sibling first, then all renamed into
    place (signals held); on any failure no temporary file is left and no target is touched."""
    options = options or {}
    targets = {check_output_file(p, options.get(p, str(p))): text for p, text in files.items()}
    temps: list[Path] = []
    try:
        for path, text in targets.items():
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
            temps.append(Path(name))
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
        with _signals_held():
            for tmp, path in zip(temps, targets, strict=True):
                tmp.replace(path)
            temps.clear()
    except OSError as err:
        raise RetargetError(f"cannot write: {err.strerror}", source=str(err.filename or "")) from None
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def _honour_umask(folder: Path) -> None:
    """Give FOLDER and everything in it the modes the user's umask asks for (mkdtemp makes the folder 0700, and
    some writers, such as ONNX's external data, make files 0600): others can read the artifact as usual."""
    mask = os.umask(0)
    os.umask(mask)
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)
