"""ModelSpec: a weights-free description of a decoder LLM, enough for planning, perf and lock-in.

A spec is a list of `BlockGroup`s (run-length groups of identical layers). Each layer has a token mixer
(attention and/or an SSM) and an MLP. Parameter counts and KV-cache bytes are computed from the dims here,
never copied from a publisher. Counting conventions (documented once, used everywhere):

* matrices only, plus norms and small vectors (sinks, SSM A/D/dt); biases are ignored (< 0.1% everywhere);
* MLPs are gated (SwiGLU/GeGLU: gate, up, down = 3 matrices) unless `MlpSpec.gated` is False (GPT-2 style
  up/down only);
* `params_active` counts what one token touches when every top-k slot hits a real expert, *including* the
  embedding table and lm_head (DeepSeek's convention); `params_active_nonembedding_input` drops the input
  embedding table (a gather reads one row), which is OpenAI's convention for gpt-oss.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from retarget.errors import RetargetError

SPEC_VERSION = 1

_T = TypeVar("_T")


def _once_per_spec(fn: Callable[[ModelSpec], _T]) -> Callable[[ModelSpec], _T]:
    """FN(spec) computed once per spec object: a spec is frozen, and `model_copy` makes a new object (a
    cached_property would be copied along with the instance dict, stale after an update). The memo holds the
    spec itself, so an id is never reused while its entry lives."""
    memo: dict[int, tuple[ModelSpec, _T]] = {}

    @functools.wraps(fn)
    def wrapper(spec: ModelSpec) -> _T:
        hit = memo.get(id(spec))
        if hit is None or hit[0] is not spec:
            if len(memo) >= 4096:
                memo.clear()
            hit = memo[id(spec)] = (spec, fn(spec))
        return hit[1]

    return wrapper


AttentionKind = Literal["mha", "gqa", "mqa", "mla", "sliding", "sinks", "linear"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AttentionSpec(_Frozen):
    """One attention (token-mixing) sublayer.

    `kind` is the hardware-relevant label: linear > mla > sliding (window set) > sinks > mqa/mha/gqa.
    `window` is the sliding or chunked local window in tokens (the KV cache of this layer is bounded by it).
    """

    kind: AttentionKind
    heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)  # MLA: 1 (one shared latent)
    head_dim: int = Field(gt=0)  # MLA: the q/k head dim, qk_nope_head_dim + qk_rope_head_dim
    window: int | None = Field(default=None, gt=0)
    chunked: bool = False  # Llama 4: non-overlapping chunks instead of a sliding band
    sinks: bool = False  # gpt-oss: learned per-head sink logits
    qk_norm: bool = False
    # MLA (DeepSeek-V3 style): low-rank Q, a shared compressed KV latent plus a decoupled RoPE key
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_nope_head_dim: int | None = None
    qk_rope_head_dim: int | None = None
    v_head_dim: int | None = None

    @model_validator(mode="after")
    def _check(self) -> AttentionSpec:
        if self.kind == "mla" and None in (self.kv_lora_rank, self.qk_nope_head_dim, self.qk_rope_head_dim,
                                           self.v_head_dim):
            raise ValueError("mla needs kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} not divisible by kv_heads {self.kv_heads}")
        return self

    def params(self, hidden: int) -> int:
        """Weights of this sublayer (projections, norms, sinks)."""
        if self.kind == "mla":
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim  # type: ignore[operator]
            if self.q_lora_rank:
                q = hidden * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * self.heads * qk
            else:
                q = hidden * self.heads * qk
            kv_a = hidden * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank  # type: ignore
            kv_b = self.kv_lora_rank * self.heads * (self.qk_nope_head_dim + self.v_head_dim)  # type: ignore
            return q + kv_a + kv_b + self.heads * self.v_head_dim * hidden  # type: ignore[operator]
        q_dim, kv_dim = self.heads * self.head_dim, self.kv_heads * self.head_dim
        if self.kind == "linear":  # MiniMax lightning: qkv, output gate, out proj, output norm
            return hidden * 3 * q_dim + hidden * q_dim + q_dim * hidden + q_dim
        extra = (self.heads if self.sinks else 0) + (2 * self.head_dim if self.qk_norm else 0)
        return hidden * q_dim + 2 * hidden * kv_dim + q_dim * hidden + extra

    def kv_bytes_per_token(self, bytes_per_elem: float) -> float:
        """Cache bytes one token adds to this layer (0 for linear attention: its state is fixed-size)."""
        if self.kind == "linear":
            return 0.0
        if self.kind == "mla":  # latent + decoupled RoPE key, shared by all heads
            return (self.kv_lora_rank + self.qk_rope_head_dim) * bytes_per_elem  # type: ignore[operator]
        return 2 * self.kv_heads * self.head_dim * bytes_per_elem

    def state_bytes(self, bytes_per_elem: float) -> float:
        """Fixed per-sequence state (linear attention keeps a head_dim x head_dim matrix per head)."""
        return self.heads * self.head_dim * self.head_dim * bytes_per_elem if self.kind == "linear" else 0.0


class MlpSpec(_Frozen):
    """The feed-forward part of a layer: dense (`intermediate`) or MoE, or both in parallel (LongCat)."""

    kind: Literal["dense", "moe"]
    intermediate: int = Field(default=0, ge=0)  # dense FFN width (0: none)
    experts: int = Field(default=0, ge=0)  # routed experts
    top_k: int = Field(default=0, ge=0)
    expert_intermediate: int = Field(default=0, ge=0)
    shared_experts: int = Field(default=0, ge=0)
    shared_intermediate: int = Field(default=0, ge=0)  # width of each shared expert
    zero_experts: int = Field(default=0, ge=0)  # LongCat identity experts (routable, no weights)
    gated: bool = True  # gate, up, down (SwiGLU/GeGLU); False: up and down only (GPT-2, Phi-2, Nemotron)

    @model_validator(mode="after")
    def _check(self) -> MlpSpec:
        if self.kind == "dense" and not self.intermediate:
            raise ValueError("dense mlp needs intermediate > 0")
        if self.kind == "moe" and not (self.experts and self.top_k and self.expert_intermediate):
            raise ValueError("moe mlp needs experts, top_k and expert_intermediate > 0")
        if self.top_k > self.experts + self.zero_experts:
            raise ValueError(f"top_k {self.top_k} exceeds experts {self.experts}")
        return self

    @property
    def matrices(self) -> int:
        """Weight matrices per FFN (3 gated, 2 plain)."""
        return 3 if self.gated else 2

    def params(self, hidden: int, active: bool = False) -> int:
        """Weights of this MLP; with `active`, only those one token touches (top-k real experts)."""
        n = self.matrices * hidden * (self.intermediate + self.shared_experts * self.shared_intermediate)
        if self.kind == "moe":
            routed = min(self.top_k, self.experts) if active else self.experts
            n += hidden * (self.experts + self.zero_experts) + routed * self.expert_params(hidden)
        return n

    def experts_per_token(self, dense: bool = False) -> float:
        """Experts with weights one token runs: its top-k less the identity experts' expected share, or, under a
        DENSE MoE kernel (every expert on every token, outputs masked by the routing), every routed expert."""
        return self.experts if dense else self.top_k * self.experts / (self.experts + self.zero_experts)

    def expert_params(self, hidden: int) -> int:
        """Weights of one routed expert."""
        return self.matrices * hidden * self.expert_intermediate


class SsmSpec(_Frozen):
    """A Mamba mixer (mamba1: Jamba; mamba2: Falcon-H1). `d_inner` is the SSM width (expand * hidden)."""

    kind: Literal["mamba1", "mamba2"]
    d_inner: int = Field(gt=0)
    d_state: int = Field(gt=0)
    d_conv: int = Field(gt=0)
    n_heads: int = Field(default=0, ge=0)  # mamba2
    head_dim: int = Field(default=0, ge=0)  # mamba2
    n_groups: int = Field(default=1, gt=0)  # mamba2
    dt_rank: int = Field(default=0, ge=0)  # mamba1
    chunk_size: int | None = None

    def params(self, hidden: int) -> int:
        """in_proj, conv1d, dt/A/D, norm, out_proj (following the transformers Mamba/Mamba2 mixers)."""
        d, n = self.d_inner, self.d_state
        if self.kind == "mamba1":
            return (hidden * 2 * d + d * self.d_conv + d * (self.dt_rank + 2 * n) + self.dt_rank * d + d
                    + d * n + d + d * hidden)
        conv_dim = d + 2 * self.n_groups * n
        in_proj = hidden * (d + conv_dim + self.n_heads)
        return in_proj + conv_dim * self.d_conv + 3 * self.n_heads + d + d * hidden

    def state_bytes(self, bytes_per_elem: float) -> float:
        """Fixed per-sequence state: SSM state plus the d_conv - 1 inputs the causal conv carries."""
        bc = 2 * self.n_groups * self.d_state if self.kind == "mamba2" else 0
        conv = (self.d_inner + bc) * (self.d_conv - 1)  # the causal conv carries d_conv - 1 past inputs
        return (self.d_inner * self.d_state + conv) * bytes_per_elem


class BlockGroup(_Frozen):
    """`count` consecutive identical layers. A layer may have attention, an SSM, or both (parallel hybrid)."""

    count: int = Field(gt=0)
    attention: AttentionSpec | None = None
    ssm: SsmSpec | None = None
    mlp: MlpSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> BlockGroup:
        if self.attention is None and self.ssm is None:
            raise ValueError("a block needs attention or an ssm mixer")
        return self

    def params(self, hidden: int, active: bool = False) -> int:
        """Weights of ONE layer of this group, including its two RMSNorms."""
        n = 2 * hidden
        n += self.attention.params(hidden) if self.attention else 0
        n += self.ssm.params(hidden) if self.ssm else 0
        n += self.mlp.params(hidden, active) if self.mlp else 0
        return n


class ModelSpec(_Frozen):
    """Architecture of one model, weights-free. Build with `from_hf_config` or `retarget.models.registry`."""

    version: int = SPEC_VERSION
    name: str
    model_type: str
    hidden_size: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    tie_word_embeddings: bool = False
    max_position_embeddings: int | None = None
    position_embeddings: int = Field(default=0, ge=0)  # rows of a learned absolute-position table (GPT-2)
    blocks: list[BlockGroup] = Field(min_length=1)
    native_format: dict[str, str] = Field(default_factory=lambda: {"all": "bf16"})
    source: str | None = None  # where the config came from (URL or file)

    @model_validator(mode="after")
    def _check_version(self) -> ModelSpec:
        if self.version != SPEC_VERSION:
            raise ValueError(f"unsupported ModelSpec version {self.version} (this code reads {SPEC_VERSION})")
        return self

    # ---- construction / serialisation -------------------------------------------------------------------
    @classmethod
    def from_hf_config(cls, config: dict[str, Any], name: str | None = None, *, source: str | None = None,
                       native_format: dict[str, str] | None = None) -> ModelSpec:
        """Build a spec from an HF `config.json` dict (see `retarget.models.archs` for supported types).

        SOURCE names the file in error messages; NATIVE_FORMAT overrides what `quantization_config` /
        `torch_dtype` say (the registry knows more than some configs)."""
        from retarget.models.archs import spec_from_hf_config

        return spec_from_hf_config(config, name, source=source, native_format=native_format)

    @classmethod
    def from_gguf_metadata(cls, metadata: dict[str, Any], name: str | None = None,
                           tensor_names: Iterable[str] | None = None, source: str | None = None) -> ModelSpec:
        """Build a spec from GGUF metadata ({key: value}) of a llama-family file (`models/from_gguf.py`)."""
        from retarget.models.from_gguf import hf_config_from_gguf

        config = hf_config_from_gguf(metadata, tensor_names, source=source)
        return cls.from_hf_config(config, name or metadata.get("general.name"), source=source)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (round-trips through `from_dict`)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None) -> ModelSpec:
        """Inverse of `to_dict`; a bad dict raises RetargetError naming the field."""
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or None
            raise RetargetError(first["msg"], source=source, field=field) from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str, source: str | None = None) -> ModelSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise RetargetError(f"not valid JSON: {err}", source=source) from None
        return cls.from_dict(data, source=source)

    # ---- structure --------------------------------------------------------------------------------------
    def layers(self) -> Iterator[BlockGroup]:
        """One BlockGroup (count ignored) per layer, in order."""
        for group in self.blocks:
            for _ in range(group.count):
                yield group

    @property
    def num_layers(self) -> int:
        return sum(g.count for g in self.blocks)

    @property
    @_once_per_spec
    def layer_kinds(self) -> tuple[tuple[BlockGroup, int], ...]:
        """Each distinct layer kind once (its first group), with how many layers have it (interleaved patterns
        merged)."""
        counts: dict[tuple[object, object, object], tuple[BlockGroup, int]] = {}
        for g in self.blocks:
            key = (g.attention, g.ssm, g.mlp)
            first, n = counts.get(key, (g, 0))
            counts[key] = (first, n + g.count)
        return tuple(counts.values())

    @property
    def attention_kind(self) -> str:
        """The attention kind held by most attention layers ('none' for a pure SSM model)."""
        kinds = Counter[str]()
        for g in self.blocks:
            if g.attention is not None:
                kinds[g.attention.kind] += g.count
        return kinds.most_common(1)[0][0] if kinds else "none"

    @property
    def is_moe(self) -> bool:
        return any(g.mlp is not None and g.mlp.kind == "moe" for g in self.blocks)

    @property
    def ssm_layers(self) -> int:
        return sum(g.count for g in self.blocks if g.ssm is not None)

    @property
    def attention_layers(self) -> int:
        return sum(g.count for g in self.blocks if g.attention is not None)

    # ---- parameters -------------------------------------------------------------------------------------
    @property
    def params_embedding(self) -> int:
        """Input embedding tables: tokens (vocab x hidden) and learned positions, if any."""
        return (self.vocab_size + self.position_embeddings) * self.hidden_size

    @property
    def params_lm_head(self) -> int:
        """Output projection weights stored separately (0 when tied to the embedding)."""
        return 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size

    def _params(self, active: bool) -> int:
        blocks = sum(g.count * g.params(self.hidden_size, active) for g in self.blocks)
        return blocks + self.hidden_size + self.params_embedding + self.params_lm_head

    @property
    @_once_per_spec
    def params_total(self) -> int:
        """All weights of the main model (no MTP/draft heads, no vision tower)."""
        return self._params(active=False)

    @property
    @_once_per_spec
    def params_active(self) -> int:
        """Weights one token touches (top-k real experts), embedding and lm_head included."""
        return self._params(active=True)

    @property
    def params_active_nonembedding_input(self) -> int:
        """`params_active` without the input embedding table; a tied lm_head is still counted once."""
        return self.params_active - (0 if self.tie_word_embeddings else self.params_embedding)

    @property
    @_once_per_spec
    def expert_params(self) -> int:
        """Weights inside routed experts (the tensor group MoE formats such as MXFP4 apply to)."""
        return sum(g.count * g.mlp.experts * g.mlp.expert_params(self.hidden_size)
                   for g in self.blocks if g.mlp is not None and g.mlp.kind == "moe")

    @property
    @_once_per_spec
    def attention_params(self) -> int:
        """Weights of all attention sublayers (projections, norms, sinks)."""
        return sum(g.count * g.attention.params(self.hidden_size) for g in self.blocks if g.attention is not None)

    def param_groups(self) -> dict[str, int]:
        """Weights per tensor group: routed `experts`, `embeddings` (table + untied lm_head), and every
        other `linear` weight (attention, dense/shared MLPs, SSM; norms are counted here too)."""
        embeddings = self.params_embedding + self.params_lm_head
        experts = self.expert_params
        linear = self.params_total - experts - embeddings
        return {"experts": experts, "embeddings": embeddings, "linear": linear}

    def weight_bytes(self, bits: float | dict[str, float]) -> float:
        """Bytes of all weights at `bits` per weight, or per group, e.g. {"experts": 4.25, "other": 16}.

        Group lookup falls back experts -> linear -> other -> all -> 16, embeddings -> other -> all -> 16."""
        if not isinstance(bits, dict):
            return self.params_total * bits / 8
        fallbacks = {"experts": ("experts", "linear"), "linear": ("linear",), "embeddings": ("embeddings",)}
        total = 0.0
        for group, n in self.param_groups().items():
            keys = (*fallbacks[group], "other", "all")
            total += n * next((bits[k] for k in keys if k in bits), 16.0) / 8
        return total

    # ---- caches -------------------------------------------------------------------------------------------
    def kv_cache_bytes_per_token(self, bytes_per_elem: float = 2, context: int | None = None) -> float:
        """KV-cache bytes one token adds, summed over layers (MLA: latent + RoPE key).

        With `context`, sliding/chunked layers count only min(window, context)/context of a token, i.e. the
        result is the average bytes per token of a `context`-long sequence. Without it, windows are ignored
        (the per-token growth rate before any window fills)."""
        total = 0.0
        for g in self.blocks:
            if g.attention is None:
                continue
            per = g.attention.kv_bytes_per_token(bytes_per_elem)
            if context and g.attention.window and g.attention.window < context:
                per *= g.attention.window / context
            total += g.count * per
        return total

    def kv_cache_bytes(self, context: int, bytes_per_elem: float = 2) -> float:
        """KV-cache bytes of one sequence of `context` tokens (windows respected), excluding fixed state."""
        return self.kv_cache_bytes_per_token(bytes_per_elem, context=context) * context

    def state_bytes_per_sequence(self, bytes_per_elem: float = 2) -> float:
        """Fixed recurrent state of one sequence (SSM state + conv window, linear-attention state)."""
        total = 0.0
        for g in self.blocks:
            total += g.count * (g.ssm.state_bytes(bytes_per_elem) if g.ssm else 0.0)
            total += g.count * (g.attention.state_bytes(bytes_per_elem) if g.attention else 0.0)
        return total
