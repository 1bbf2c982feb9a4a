"""Greedy-decoding engines the CPU speed benchmark times side by side, all behind one interface:

    token = engine.prefill(ids)    # ids: int64 [1, L]; fills a fresh cache, returns the next token (argmax)
    token = engine.decode(token)   # one token after the cache; returns the next one

Each engine computes only what a generation needs where the engine itself allows it: llama.cpp and the
PyTorch loop compute the logits of the last prompt position only; the ONNX graphs return all positions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

LLAMA_CPP_VERSION = "0.3.36"


class Engine(Protocol):
    def prefill(self, ids: np.ndarray) -> int: ...

    def decode(self, token: int) -> int: ...


class OrtEngine:
    """An ONNX Runtime graph through OrtCausalLM (IO binding; shared KV buffer on GroupQueryAttention graphs)."""

    def __init__(self, path: Path, max_length: int, threads: int | None = None, spin: bool = True) -> None:
        from retarget.export.runtime import OrtCausalLM

        self.runtime = OrtCausalLM(path, threads=threads, spin=spin)
        self.max_length = max_length

    def prefill(self, ids: np.ndarray) -> int:
        return int(self.runtime.start(ids, self.max_length).argmax())

    def decode(self, token: int) -> int:
        return int(self.runtime.step(np.array([[token]])).argmax())


class TorchEagerEngine:
    """transformers' model in eager fp32 with its DynamicCache, as its generate() drives it."""

    def __init__(self, model: Any) -> None:
        from transformers import DynamicCache

        self.model = model.eval()
        self.cache_type = DynamicCache
        self.cache = None

    def prefill(self, ids: np.ndarray) -> int:
        import torch

        self.cache = self.cache_type()
        with torch.inference_mode():
            out = self.model(torch.from_numpy(ids), past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        return int(out.logits[0, -1].argmax())

    def decode(self, token: int) -> int:
        import torch

        with torch.inference_mode():
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


class GenaiEngine:
    """onnxruntime-genai's own generation loop (greedy): append the prompt, then one token per step. Every
    artifact runs with THREADS intra-op threads (an overlay on its genai_config.json), so the loop compares
    graphs, not the thread counts their configs happen to ask for (genai runs one thread when a config names
    none, as the builder's does)."""

    def __init__(self, folder: Path, max_length: int, threads: int) -> None:
        import onnxruntime_genai as og

        config = og.Config(str(folder))
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
        self.og, self.model, self.max_length = og, og.Model(config), max_length

    def prefill(self, ids: np.ndarray) -> int:
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(do_sample=False, max_length=self.max_length + 1)
        self.generator = self.og.Generator(self.model, params)
        self.generator.append_tokens(ids.astype(np.int32))
        return self.decode(-1)

    def decode(self, token: int) -> int:
        self.generator.generate_next_token()
        return int(self.generator.get_next_tokens()[0])


def _torch_eager(model: str, max_length: int, threads: int, spin: bool) -> TorchEagerEngine:
    import torch

    from retarget.models.load import load_model

    torch.set_num_threads(threads)
    return TorchEagerEngine(load_model(model).model)


@dataclass(frozen=True)
class EngineSpec:
    """An engine as a process can build it: KIND (a key of ENGINES) over PATH (a graph, a genai folder, a GGUF,
    or a model name for the PyTorch loop)."""

    kind: str
    path: str


ENGINES: dict[str, Callable[[str, int, int, bool], Engine]] = {
    "ort": lambda path, max_length, threads, spin: OrtEngine(Path(path), max_length, threads, spin),
    "genai": lambda path, max_length, threads, spin: GenaiEngine(Path(path), max_length, threads),
    "llama.cpp": lambda path, max_length, threads, spin: LlamaCppEngine(Path(path), max_length, threads),
    "torch": _torch_eager,
}


def build_engine(spec: EngineSpec, max_length: int, threads: int, spin: bool) -> Engine:
    """The engine SPEC describes."""
    return ENGINES[spec.kind](spec.path, max_length, threads, spin)


def llama_cpp_version() -> str | None:
    """The installed llama-cpp-python version, or None."""
    try:
        import llama_cpp
    except ImportError:
        return None
    return llama_cpp.__version__
