"""Lock-in: how much an architecture depends on one vendor's hardware, which features cause it, and the
recipe that moves it (index, attribution, what-if overrides, the models x devices matrix)."""

from retarget.lockin.matrix import lockin_for_spec, lockin_matrix

__all__ = ["lockin_for_spec", "lockin_matrix"]
