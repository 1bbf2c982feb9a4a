"""Kernel tests run the Triton kernels on CPU through the interpreter (TRITON_INTERPRET=1).

Triton reads the variable when a kernel is decorated, so it is set here, before any test module imports
the kernels. The interpreter mishandles bfloat16, so correctness tests use fp16 / fp32 / fp8.
"""

import os

os.environ["TRITON_INTERPRET"] = "1"
