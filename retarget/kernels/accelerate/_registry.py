"""The registry: transformers module class -> how its instances run on the kernels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


def runs_all(module: nn.Module) -> str | None:
    """The default blocker: every instance of the class runs on the kernels."""
    return None


@dataclass(frozen=True)
class Patch:
    """How instances of one module class run on the kernels: INSTALL prepares the weights in kernel layout and
    replaces the instance's forward; BLOCKER says why an instance cannot (a feature the kernels lack), or None."""

    kernels: tuple[str, ...]
    install: Callable[[nn.Module], None]
    blocker: Callable[[nn.Module], str | None] = runs_all


PATCHES: dict[type[nn.Module], Patch] = {}


def register(*classes: type[nn.Module], kernels: tuple[str, ...],
             blocker: Callable[[nn.Module], str | None] | None = None):
    """Decorator: the decorated install function handles CLASSES, calling the kernel folders KERNELS."""
    def wrap(install: Callable[[nn.Module], None]) -> Callable[[nn.Module], None]:
        for cls in classes:
            PATCHES[cls] = Patch(kernels, install, blocker or runs_all)
        return install
    return wrap
