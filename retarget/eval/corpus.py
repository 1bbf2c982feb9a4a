"""The evaluation and calibration corpora: docstrings of the Python standard library.

They ship with every Python, need no network, and are real English technical prose. The text is a
fixed function of the module list and the Python version (recorded with its SHA-256 in every report).
Evaluation and calibration use disjoint module lists.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import platform
from functools import cache

EVAL_MODULES = (
    "argparse", "asyncio.events", "asyncio.tasks", "collections", "configparser", "contextlib", "csv",
    "dataclasses", "datetime", "difflib", "email.message", "enum", "fractions", "functools", "http.client",
    "inspect", "json", "logging", "pathlib", "pickle", "shutil", "statistics", "string", "subprocess",
    "tarfile", "tempfile", "textwrap", "threading", "typing", "unittest.case", "urllib.request", "zipfile",
)
CALIBRATION_MODULES = (
    "ast", "calendar", "decimal", "doctest", "ftplib", "gettext", "imaplib", "ipaddress", "locale",
    "mailbox", "optparse", "pdb", "pprint", "pydoc", "smtplib", "socketserver", "sqlite3", "tokenize",
    "uuid", "wave", "xml.dom.minidom", "zoneinfo",
)


def _docstrings(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    docs = [module.__doc__ or ""]
    for _, obj in sorted(vars(module).items()):
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            docs.append(obj.__doc__ or "")
        if inspect.isclass(obj):
            for _, member in sorted(vars(obj).items()):
                if inspect.isfunction(member):
                    docs.append(member.__doc__ or "")
    return [inspect.cleandoc(d) for d in docs if isinstance(d, str) and d.strip()]


@cache
def corpus_text(modules: tuple[str, ...] = EVAL_MODULES) -> str:
    """All docstrings of MODULES (module, then classes and functions in name order), blank-line separated."""
    return "\n\n".join(doc for name in modules for doc in _docstrings(name))


def describe(modules: tuple[str, ...] = EVAL_MODULES) -> dict[str, object]:
    """What the corpus is, for the report."""
    text = corpus_text(modules)
    return {
        "name": "python-stdlib-docstrings",
        "python": platform.python_version(),
        "modules": list(modules),
        "characters": len(text),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
