"""Run an exported causal LM (optimum layout: input_ids, attention_mask, position_ids, past_key_values.*)
in ONNX Runtime: logits, greedy generation with the KV cache, and prefill / decode speed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from retarget.errors import RetargetError


class OrtCausalLM:
    """An ONNX Runtime session over an exported decoder with KV cache."""

    def __init__(self, path: Path, threads: int | None = None, qdq_accuracy_level: int | None = None) -> None:
        """QDQ_ACCURACY_LEVEL: the accuracy_level of the MatMulNBits ORT fuses 4-bit QDQ weights into (ORT's
        default is 4, int8 activations; 0 keeps the product exact)."""
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        if qdq_accuracy_level is not None:
            opts.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", str(qdq_accuracy_level))
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # ORT raises its own Fail/InvalidGraph types
            raise RetargetError(f"ONNX Runtime cannot load it ({str(err).splitlines()[0]})", source=str(path)) from err
        self.past_inputs = [i for i in self.session.get_inputs() if i.name.startswith("past_key_values")]
        if not self.past_inputs:
            raise RetargetError("no past_key_values.* inputs: not a decoder exported with KV cache", source=str(path))
        _, self.kv_heads, _, self.head_dim = self.past_inputs[0].shape
        self.input_names = {i.name for i in self.session.get_inputs()}

    def empty_past(self, batch: int = 1) -> dict[str, np.ndarray]:
        return {i.name: np.zeros((batch, self.kv_heads, 0, self.head_dim), np.float32) for i in self.past_inputs}

    def forward(self, ids: np.ndarray, past: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One step: IDS [1, L] after PAST; returns logits [1, L, V] and the new past."""
        past_len = next(iter(past.values())).shape[2]
        length = ids.shape[1]
        feeds = {"input_ids": ids.astype(np.int64),
                 "attention_mask": np.ones((1, past_len + length), np.int64), **past}
        if "position_ids" in self.input_names:
            feeds["position_ids"] = np.arange(past_len, past_len + length, dtype=np.int64)[None]
        outputs = self.session.run(None, feeds)
        names = [o.name for o in self.session.get_outputs()]
        present = {n.replace("present", "past_key_values"): v for n, v in zip(names[1:], outputs[1:], strict=True)}
        return outputs[0], present

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """LogitsFn for the evaluator: [1, L] -> [L, V]."""
        out, _ = self.forward(ids.numpy(), self.empty_past())
        return torch.from_numpy(out[0])

    def generate(self, prompt: list[int], max_new_tokens: int, stop: frozenset[int] = frozenset()) -> list[int]:
        """Greedy decoding with the KV cache, until a STOP token or MAX_NEW_TOKENS."""
        logits, past = self.forward(np.array([prompt]), self.empty_past())
        new: list[int] = []
        for _ in range(max_new_tokens):
            token = int(logits[0, -1].argmax())
            if token in stop:
                break
            new.append(token)
            logits, past = self.forward(np.array([[token]]), past)
        return new

    def speed(self, prompt_len: int = 128, decode_tokens: int = 64, repeats: int = 3) -> dict[str, float]:
        """Prefill tokens/s over a PROMPT_LEN prompt and decode tokens/s over DECODE_TOKENS steps (best of REPEATS)."""
        ids = np.random.default_rng(0).integers(100, 10_000, (1, prompt_len))
        self.forward(ids[:, :8], self.empty_past())  # warm-up
        prefill, decode = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            logits, past = self.forward(ids, self.empty_past())
            prefill.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in range(decode_tokens):
                logits, past = self.forward(logits[:, -1:].argmax(-1), past)
            decode.append(time.perf_counter() - t0)
        return {"prefill_tokens_per_s": prompt_len / min(prefill), "decode_tokens_per_s": decode_tokens / min(decode),
                "prompt_len": prompt_len, "decode_tokens": decode_tokens}
