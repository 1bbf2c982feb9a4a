"""Greedy-decoding engines the CPU speed benchmark times side by side, all behind one interface:

    token = engine.prefill(ids)    # ids: int64 [1, L]; fills a fresh cache, returns the next token (argmax)
    token = engine.decode(token)   # one token after the cache; returns the next one

Each engine computes only what a generation needs where the engine itself allows it: llama.cpp and the
PyTorch loop compute the logits of the last prompt position only; the ONNX graphs return all positions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from retarget.export.runtime import OrtCausalLM

LLAMA_CPP_VERSION = "0.3.36"


class OrtEngine:
    """An ONNX Runtime graph through OrtCausalLM (IO binding; shared KV buffer on GroupQueryAttention graphs)."""

    def __init__(self, path: Path, max_length: int, threads: int | None = None, spin: bool = True) -> None:
        self.runtime = OrtCausalLM(path, threads=threads, spin=spin)
        self.max_length = max_length

    def prefill(self, ids: np.ndarray) -> int:
        return int(self.runtime.start(ids, self.max_length).argmax())

    def decode(self, token: int) -> int:
        return int(self.runtime.step(np.array([[token]])).argmax())


class TorchEagerEngine:
    """transformers' model in eager fp32 with its DynamicCache, as its generate() drives it."""

    def __init__(self, model: torch.nn.Module) -> None:
        from transformers import DynamicCache

        self.model = model.eval()
        self.cache_type = DynamicCache
        self.cache = None

    @torch.inference_mode()
    def prefill(self, ids: np.ndarray) -> int:
        self.cache = self.cache_type()
        out = self.model(torch.from_numpy(ids), past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        return int(out.logits[0, -1].argmax())

    @torch.inference_mode()
    def decode(self, token: int) -> int:
        out = self.model(torch.tensor([[token]]), past_key_values=self.cache, use_cache=True)
        return int(out.logits[0, -1].argmax())


class LlamaCppEngine:
    """llama.cpp (llama-cpp-python) on a GGUF file, one thread per core, logits of the last position only."""

    def __init__(self, gguf: Path, max_length: int, threads: int) -> None:
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(gguf), n_ctx=max_length, n_batch=max_length, n_threads=threads,
                         n_threads_batch=threads, logits_all=False, verbose=False)

    def _next(self) -> int:
        """Argmax of the last evaluated position's logits (eval() keeps them only in the context)."""
        from llama_cpp import llama_get_logits

        logits = np.ctypeslib.as_array(llama_get_logits(self.llm.ctx), shape=(self.llm.n_vocab(),))
        return int(np.argmax(logits))

    def prefill(self, ids: np.ndarray) -> int:
        self.llm.reset()
        self.llm.eval(ids[0].tolist())
        return self._next()

    def decode(self, token: int) -> int:
        self.llm.eval([token])
        return self._next()


def llama_cpp_version() -> str | None:
    """The installed llama-cpp-python version, or None."""
    try:
        import llama_cpp
    except ImportError:
        return None
    return llama_cpp.__version__
