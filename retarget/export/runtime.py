"""Run an exported causal LM in ONNX Runtime: logits, greedy generation with the KV cache, and prefill /
decode speed.

Two graph layouts are served: optimum's export (input_ids, attention_mask, position_ids,
past_key_values.N.key/value -> logits, present.N.key/value, the cache growing by concatenation) and
retarget.export.decoder's (the same names without position_ids; GroupQueryAttention). Generation
keeps the cache in ORT's own memory through IO binding (no copy to numpy between steps); on a
GroupQueryAttention graph past and present share one preallocated buffer per tensor, which the operator
appends to in place (ORT's past_present_share_buffer mode: the past input holds max_length positions and
attention_mask says how many are filled). A decoder graph with a quantized cache (inputs
past_key_values.N.key_scale ...: INT8 / FP8 codes and per-row scales, retarget.export.kv_cache_graph)
grows by concatenation instead: each step's present outputs are fed back as the next step's past. So does
any other cache a lowering declares (retarget.export.decoder.cache: MLA's latent, SSM conv and state
tensors), its shapes read from the graph's inputs: a past_sequence_length axis grows, a tensor without one is
a fixed-size state replaced each step.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto

from retarget.errors import RetargetError

ALL_POSITIONS = np.array([0], np.int64)
LAST_ONLY = np.array([1], np.int64)
# cache input type -> (numpy container, ONNX element type, bytes per element); FP8 codes travel as uint8 bits
CACHE_TYPES = {"tensor(float)": (np.float32, TensorProto.FLOAT, 4), "tensor(int8)": (np.int8, TensorProto.INT8, 1),
               "tensor(float8e4m3fn)": (np.uint8, TensorProto.FLOAT8E4M3FN, 1)}


def session_options(threads: int | None = None, qdq_accuracy_level: int | None = None,
                    spin: bool = True) -> ort.SessionOptions:
    """All graph optimizations, sequential execution, one intra-op thread per core (THREADS overrides); SPIN:
    threads busy-wait between ops (ORT's default, and what llama.cpp's thread pool does)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
    # measured here, SmolLM2 int4 decode at 2 threads: idle machine 76.5 tokens/s spinning vs 69.1 not; on a
    # machine shared with other jobs spinning threads starve each other (6.3 without vs 3.8 with spinning)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    opts.log_severity_level = 3  # errors only (an overridable initializer such as logits_to_keep warns)
    if qdq_accuracy_level is not None:
        opts.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", str(qdq_accuracy_level))
    return opts


def _session(path: Path, threads: int | None, qdq_accuracy_level: int | None, spin: bool) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), session_options(threads, qdq_accuracy_level, spin),
                                    providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own Fail/InvalidGraph types
        raise RetargetError(f"ONNX Runtime cannot load it ({str(err).splitlines()[0]})", source=str(path)) from err


def _seq_axis(shape: list) -> int | None:
    """The axis of a cache input's SHAPE that holds the past tokens (None: a fixed-size state)."""
    return next((axis for axis, dim in enumerate(shape) if dim == "past_sequence_length"), None)


def _shape(shape: list, batch: int, length: int) -> tuple[int, ...]:
    """A cache input's declared SHAPE made concrete: BATCH on axis 0, LENGTH past positions, fixed dims kept."""
    return tuple(batch if axis == 0 else length if isinstance(dim, str) else dim for axis, dim in enumerate(shape))


class OrtCausalLM:
    """An ONNX Runtime session over an exported decoder with KV cache."""

    def __init__(self, path: Path, threads: int | None = None, qdq_accuracy_level: int | None = None,
                 spin: bool = True) -> None:
        """QDQ_ACCURACY_LEVEL: the accuracy_level of the MatMulNBits ORT fuses 4-bit QDQ weights into (ORT's
        default is 4, int8 activations; 0 keeps the product exact). SPIN: see session_options."""
        self.session = _session(path, threads, qdq_accuracy_level, spin)
        self.past_inputs = [i for i in self.session.get_inputs() if i.name.startswith("past_key_values")]
        if not self.past_inputs:
            raise RetargetError("no past_key_values.* inputs: not a decoder exported with KV cache", source=str(path))
        # the axis each cached tensor grows along (None: a fixed-size state; retarget.export.decoder.cache)
        self.seq_axis = [_seq_axis(i.shape) for i in self.past_inputs]
        # logits_to_keep is an overridable initializer (a default clients need not feed): listed apart
        self.input_names = {i.name for i in [*self.session.get_inputs(), *self.session.get_overridable_initializers()]}
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.vocab_size = self.session.get_outputs()[0].shape[-1]
        if not isinstance(self.vocab_size, int):
            raise RetargetError(f"logits dimension {self.vocab_size!r} is not a fixed vocabulary size",
                                source=str(path), field="logits")
        self._last_logits = np.empty((1, 1, self.vocab_size), np.float32)
        self._mask = np.ones((1, 0), np.int64)
        graph = onnx.load(str(path), load_external_data=False).graph
        self.quantized_cache = any(i.name.endswith("_scale") for i in self.past_inputs)
        # when GroupQueryAttention reads every cache tensor it appends to preallocated buffers in place; otherwise
        # (SSM states beside it: ORT 1.32's memory planner aborted here on shared buffers mixed with fed-back
        # states) each step's present outputs are fed back as the next past
        gqa_past = {name for n in graph.node if n.op_type == "GroupQueryAttention" for name in n.input[3:5]}
        self.shares_buffer = not self.quantized_cache and all(i.name in gqa_past for i in self.past_inputs)
        self._cache: list[ort.OrtValue] = []
        self._binding = self.session.io_binding()
        self._filled = 0

    def empty_past(self, batch: int = 1) -> dict[str, np.ndarray]:
        """An empty float cache as numpy arrays (float-cache graphs; see `_empty_cache` for every layout)."""
        return {i.name: np.zeros(_shape(i.shape, batch, 0), np.float32) for i in self.past_inputs}

    def _empty_cache(self, length: int = 0) -> list[ort.OrtValue]:
        """A cache of the graph's own types (float, or codes and scales), one OrtValue per past input: zeros,
        LENGTH positions along a growing axis (fixed-size states: their zero initial state)."""
        cache = []
        for spec in self.past_inputs:
            container, element, _ = CACHE_TYPES[spec.type]
            value = np.zeros(_shape(spec.shape, 1, length), container)
            cache.append(ort.OrtValue.ortvalue_from_numpy_with_onnx_type(value, element))
        return cache

    def cache_bytes_per_token(self) -> float:
        """Bytes the growing cache tensors of the last `start` / `step` hold per token position (batch 1)."""
        return sum(CACHE_TYPES[v.data_type()][2] * int(np.prod(v.shape())) / v.shape()[axis]
                   for v, axis in zip(self._cache, self.seq_axis, strict=True) if axis is not None)

    def state_bytes_per_sequence(self) -> int:
        """Bytes of the fixed-size cache tensors (SSM and convolution states) per sequence, batch 1."""
        return sum(CACHE_TYPES[spec.type][2] * int(np.prod(_shape(spec.shape, 1, 0)))
                   for spec, axis in zip(self.past_inputs, self.seq_axis, strict=True) if axis is None)

    def _feeds(self, ids: np.ndarray, past_len: int) -> dict[str, np.ndarray]:
        """Inputs of a whole-sequence run (evaluation, prompt_cache): logits at every position."""
        length = ids.shape[1]
        feeds = {"input_ids": ids.astype(np.int64), "attention_mask": np.ones((1, past_len + length), np.int64)}
        if "position_ids" in self.input_names:
            feeds["position_ids"] = np.arange(past_len, past_len + length, dtype=np.int64)[None]
        if "logits_to_keep" in self.input_names:  # retarget's graph
            feeds["logits_to_keep"] = ALL_POSITIONS
        return feeds

    def forward(self, ids: np.ndarray, past: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One step: IDS [1, L] after PAST; returns logits [1, L, V] and the new past (numpy, copied)."""
        past_len = next((v.shape[axis] for v, axis in zip(past.values(), self.seq_axis, strict=True)
                         if axis is not None), 0)
        outputs = self.session.run(None, {**self._feeds(ids, past_len), **past})
        present = {n.replace("present", "past_key_values"): v
                   for n, v in zip(self.output_names[1:], outputs[1:], strict=True)}
        return outputs[0], present

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """LogitsFn for the evaluator: [1, L] -> [L, V]."""
        if self.quantized_cache:
            return torch.from_numpy(self._prompt(ids, self.output_names[:1])[0].numpy()[0])
        out, _ = self.forward(ids.numpy(), self.empty_past())
        return torch.from_numpy(out[0])

    def prompt_cache(self, ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        """Logits [L, V] of IDS [1, L] from an empty cache, and the present.* outputs (FP8 codes: their uint8
        bit patterns)."""
        values = self._prompt(ids, self.output_names)
        return (torch.from_numpy(values[0].numpy()[0]),
                {n: v.numpy() for n, v in zip(self.output_names[1:], values[1:], strict=True)})

    def _prompt(self, ids: torch.Tensor, outputs: list[str]) -> list[ort.OrtValue]:
        """OUTPUTS of one pass over IDS from an empty cache (fed as OrtValues: FP8 codes have no numpy type)."""
        feeds = {n: ort.OrtValue.ortvalue_from_numpy(v) for n, v in self._feeds(ids.numpy(), 0).items()}
        feeds.update(zip((i.name for i in self.past_inputs), self._empty_cache(), strict=True))
        return self.session.run_with_ort_values(outputs, feeds)

    def start(self, prompt: np.ndarray, max_length: int) -> np.ndarray:
        """Prefill PROMPT [1, L] into a fresh cache with room for MAX_LENGTH tokens; returns the last logits [V]."""
        self._filled = 0
        self._mask = np.ones((1, max_length), np.int64)  # each step binds its first filled + L columns
        self._cache = self._empty_cache(max_length if self.shares_buffer else 0)
        self._binding = self.session.io_binding()
        self._bind_cache()
        return self.step(prompt)

    def _bind_cache(self) -> None:
        """Bind the logits (output 0, first: get_outputs() lists outputs in binding order; `step` rebinds it to
        its buffer in place) and the cache as past (and, for a shared buffer, as present too)."""
        self._binding.bind_output(self.output_names[0], "cpu")
        for spec, value in zip(self.past_inputs, self._cache, strict=True):
            self._binding.bind_ortvalue_input(spec.name, value)
            present = spec.name.replace("past_key_values", "present")
            if self.shares_buffer:
                self._binding.bind_ortvalue_output(present, value)
            else:
                self._binding.bind_output(present, "cpu")

    def step(self, ids: np.ndarray) -> np.ndarray:
        """Run IDS [1, L] after the cached tokens, keeping the cache in ORT memory; returns the last logits [V].

        The inputs and the logits are bound by pointer to arrays this object keeps (a decode step copies
        nothing but the returned row): at batch 1 the Python side is otherwise ~5% of a 4-bit decode step."""
        ids = np.ascontiguousarray(ids, np.int64)
        total = self._filled + ids.shape[1]
        if total > self._mask.shape[1]:
            raise RetargetError(f"{total} tokens exceed the max_length {self._mask.shape[1]} given to start",
                                field="max_length")
        binding = self._binding
        binding.bind_input("input_ids", "cpu", 0, np.int64, list(ids.shape), ids.ctypes.data)
        binding.bind_input("attention_mask", "cpu", 0, np.int64, [1, total], self._mask.ctypes.data)
        kept = ids.shape[1]
        if "logits_to_keep" in self.input_names:  # retarget's graph: lm_head on the last position only
            binding.bind_input("logits_to_keep", "cpu", 0, np.int64, [1], LAST_ONLY.ctypes.data)
            kept = 1
        if "position_ids" in self.input_names:
            binding.bind_cpu_input("position_ids", np.arange(self._filled, total, dtype=np.int64)[None])
        logits = self._logits_buffer(kept)
        binding.bind_output(self.output_names[0], "cpu", 0, np.float32, list(logits.shape), logits.ctypes.data)
        self.session.run_with_iobinding(binding)
        self._filled = total
        if not self.shares_buffer:
            self._cache = list(binding.get_outputs()[1:])
            self._binding = self.session.io_binding()
            self._bind_cache()
        return logits[0, -1].copy()

    def _logits_buffer(self, positions: int) -> np.ndarray:
        """A float32 [1, POSITIONS, vocab] array for the logits output (the one-position buffer is reused)."""
        if positions == 1:
            return self._last_logits
        return np.empty((1, positions, self.vocab_size), np.float32)

    def generate(self, prompt: list[int], max_new_tokens: int, stop: frozenset[int] = frozenset()) -> list[int]:
        """Greedy decoding with the KV cache, until a STOP token or MAX_NEW_TOKENS."""
        return list(self.stream(prompt, max_new_tokens, stop))

    def stream(self, prompt: list[int], max_new_tokens: int, stop: frozenset[int] = frozenset()) -> Iterator[int]:
        """Greedy decoding as `generate`, each token yielded as soon as it is chosen."""
        logits = self.start(np.array([prompt]), len(prompt) + max_new_tokens)
        for _ in range(max_new_tokens):
            token = int(logits.argmax())
            if token in stop:
                return
            yield token
            logits = self.step(np.array([[token]]))

    def speed(self, prompt_len: int = 128, decode_tokens: int = 64, repeats: int = 3) -> dict[str, float]:
        """Prefill tokens/s over a PROMPT_LEN prompt and decode tokens/s over DECODE_TOKENS steps (best of REPEATS)."""
        ids = np.random.default_rng(0).integers(min(100, self.vocab_size // 2), min(10_000, self.vocab_size),
                                                (1, prompt_len))
        self.start(ids[:, :8], 8 + decode_tokens)  # warm-up
        prefill, decode = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            logits = self.start(ids, prompt_len + decode_tokens)
            prefill.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in range(decode_tokens):
                logits = self.step(np.array([[int(logits.argmax())]]))
            decode.append(time.perf_counter() - t0)
        return {"prefill_tokens_per_s": prompt_len / min(prefill), "decode_tokens_per_s": decode_tokens / min(decode),
                "prompt_len": prompt_len, "decode_tokens": decode_tokens}
