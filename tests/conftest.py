"""The tests run the Triton kernels on CPU through the interpreter (TRITON_INTERPRET=1).

Triton reads the variable when a function is decorated, including triton.language's own helpers (tl.cdiv)
at `import triton`. Any test module may import triton indirectly (transformers, torch), so the variable is
set here, before the first test module is collected, not in tests/kernels/. The interpreter mishandles
bfloat16, so kernel correctness tests use fp16 / fp32 / fp8.
"""

import os

os.environ["TRITON_INTERPRET"] = "1"
