"""retarget: retarget open-weight LLMs across accelerators and quantify architecture-to-hardware lock-in.

Importing the package is light: no torch, no triton, no CUDA initialisation (see tests/test_lean_import.py).
"""

__version__ = "0.1.0"
