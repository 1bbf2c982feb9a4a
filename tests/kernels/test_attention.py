"""Decode (split-KV) and prefill attention kernels against the float64 torch reference, in the interpreter,
on odd shapes: head dim 40, GQA group 3, ragged lengths, windows that cut inside blocks, sink logits."""

import pytest
import torch

from retarget.kernels._config import KernelConfig
from retarget.kernels.attention import (
    decode_attention,
    decode_attention_ref,
    masked_attention_ref,
    prefill_attention,
    prefill_attention_ref,
)

DECODE_TILES = KernelConfig(16, 16, 0)
PREFILL_TILES = KernelConfig(16, 16, 0)


def _qkv(gen, b, hq, hkv, sq, t, d):
    q = torch.randn(b, hq, sq, d, generator=gen).half()
    k = torch.randn(b, hkv, t, d, generator=gen).half()
    v = torch.randn(b, hkv, t, d, generator=gen).half()
    return q, k, v


@pytest.mark.parametrize("window, with_sinks, splits", [(None, False, 3), (21, True, 2), (5, True, 1)])
def test_decode_matches_reference(window, with_sinks, splits):
    gen = torch.Generator().manual_seed(splits)
    q, k, v = _qkv(gen, 3, 6, 2, 1, 53, 40)
    lens = torch.tensor([53, 1, 30])
    sinks = torch.randn(6, generator=gen) if with_sinks else None
    out = decode_attention(q[:, :, 0], k, v, lens, window=window, sinks=sinks, splits=splits,
                           config=DECODE_TILES)
    ref = decode_attention_ref(q[:, :, 0], k, v, lens, window=window, sinks=sinks)
    torch.testing.assert_close(out.float(), ref.float(), rtol=1e-2, atol=1e-2)


def test_decode_sink_and_window_change_the_answer():
    """The masks are not no-ops: a one-key window returns that key's value scaled by its softmax share
    against the sink, computed by hand."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = _qkv(gen, 1, 2, 1, 1, 19, 16)
    lens = torch.tensor([19])
    sinks = torch.tensor([0.5, -1.0])
    out = decode_attention(q[:, :, 0], k, v, lens, window=1, sinks=sinks, splits=2, config=DECODE_TILES)
    logit = (q[0, :, 0].float() @ k[0, 0, 18].float()) / 4.0
    share = torch.sigmoid(logit - sinks)          # exp(l) / (exp(l) + exp(sink))
    torch.testing.assert_close(out[0].float(), share[:, None] * v[0, 0, 18].float()[None], rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("sq, sk, window, with_sinks", [(37, 37, None, False), (29, 45, 11, True)])
def test_prefill_matches_reference(sq, sk, window, with_sinks):
    gen = torch.Generator().manual_seed(sq)
    q, k, v = _qkv(gen, 2, 4, 2, sq, sk, 24)
    sinks = torch.randn(4, generator=gen) if with_sinks else None
    out = prefill_attention(q, k, v, window=window, sinks=sinks, config=PREFILL_TILES)
    ref = prefill_attention_ref(q, k, v, window=window, sinks=sinks)
    torch.testing.assert_close(out.float(), ref.float(), rtol=1e-2, atol=1e-2)


def test_reference_agrees_with_torch_sdpa():
    """The reference itself against torch's scaled_dot_product_attention (causal, no window, no sink)."""
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 9, 8, generator=gen) for _ in range(3))
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    ref = masked_attention_ref(q, k, v, torch.arange(9)[None], torch.tensor([9]))
    torch.testing.assert_close(ref.float(), sdpa, rtol=1e-5, atol=1e-5)
