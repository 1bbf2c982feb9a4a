"""Measurement labels -> profiles and model specs: validation_map.yaml's exact entries first, then aliases.

A hardware label such as 'NVIDIA GeForce RTX 5090 32GB' or 'RTX 5090' matches a profile when every model
token of the profile id (tokens with a digit: 'rtx-5090' -> 5090, 'a100-80g-pcie' -> a100, 80g) is in the
label, the label names no variant ('pcie', 'sxm', 'max', 'pro', ...) the profile lacks and no memory size
above the profile's (a 144 GB GH200 is not the 96 GB profile); of several
matches the one sharing most tokens wins, and a tie is reported as ambiguous rather than guessed.
A model label matches a registry name, HF id or validation_models.yaml entry after dropping an organisation
prefix, 'Meta-' and '-Instruct'/'-Chat'/'-hf' suffixes.
"""

from __future__ import annotations

import re
from functools import cache

from retarget.hw_profiles import HardwareProfile, list_profiles

VARIANTS = {"pcie", "sxm", "nvl", "max", "pro", "ultra", "mini", "ti", "super", "server"}
_SIZE = re.compile(r"^(\d+)gb?$")


def tokens(text: str) -> set[str]:
    """Lower-case alphanumeric runs; memory sizes as '<n>g' ('80GB' -> '80g'); a word and a short number that
    follows it also as one token ('Gaudi 2' -> gaudi2); form factors without their generation ('SXM4' -> sxm)."""
    runs = re.findall(r"[a-z0-9]+", text.lower())
    out = set()
    for i, tok in enumerate(runs):
        size = _SIZE.match(tok)
        out.add(f"{size.group(1)}g" if size else tok)
        if i and runs[i - 1].isalpha() and tok.isdigit() and len(tok) <= 2:
            out.add(runs[i - 1] + tok)
        if (base := tok.rstrip("0123456789")) in VARIANTS:
            out.add(base)
    return out


@cache
def _profiles() -> list[tuple[HardwareProfile, set[str], set[str]]]:
    """(profile, model tokens of its id, all tokens of its id and name)."""
    out = []
    for p in list_profiles():
        id_tokens = tokens(p.id.replace("-", " "))
        out.append((p, {t for t in id_tokens if re.search(r"\d", t)}, id_tokens | tokens(p.name)))
    return out


def match_hardware(label: str) -> str | list[str] | None:
    """The profile id LABEL names, the tied candidates when it is ambiguous, or None."""
    words = tokens(label)
    label_sizes = {t for t in words if _SIZE.match(t)}
    scored = []
    for p, model, every in _profiles():
        sizes = {t for t in model if _SIZE.match(t)}
        if not model or not (model - sizes) <= words or (sizes and label_sizes and not sizes & label_sizes):
            continue
        if (words & VARIANTS) - every:
            continue
        if any(int(t[:-1]) > 1.1 * (p.memory_gb or 0) for t in label_sizes):  # e.g. GH200 144GB vs 96GB
            continue
        scored.append((len(words & every), p.id))
    if not scored:
        return None
    best = max(s for s, _ in scored)
    winners = sorted(pid for s, pid in scored if s == best)
    return winners[0] if len(winners) == 1 else winners


def model_key(label: str) -> str:
    """LABEL without organisation prefix, 'Meta-' and chat/instruct suffixes, lower case."""
    name = label.strip().split("/")[-1].lower()
    name = re.sub(r"^meta-", "", name)
    return re.sub(r"-(instruct|chat|it|hf|base)$", "", name)
