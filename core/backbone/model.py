"""Decoder-only transformer whose feed-forward layers are DeepSpeed Mixture-of-Experts.

Read top to bottom: RMSNorm -> rotary embeddings -> image grid embeddings -> attention (with KV
cache) -> SwiGLU expert -> MoE feed-forward -> block -> config -> model. Nothing here is
distributed-aware except the `ep_size` handed to DeepSpeed's MoE layer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from deepspeed.moe.layer import MoE

__all__ = ["ModelConfig", "Backbone", "BackboneOutput", "KVCache", "lm_loss"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class RotaryEmbedding(nn.Module):
    """RoPE as complex rotations of (even, odd) channel pairs, for arbitrary (B, T) positions
    (packing restarts them). One complex multiply per tensor: few passes over memory on CPU."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """positions (B, T) -> unit complex rotations (B, 1, T, head_dim / 2)."""
        angles = positions[:, None, :, None].float() * self.inv_freq
        return torch.polar(torch.ones_like(angles), angles)


def apply_rotary(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of x (B, H, T, Dh) by `rotation` (B, 1, T, Dh / 2) complex."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * rotation).flatten(-2).type_as(x)


class GridEmbedding(nn.Module):
    """Learned row and column embeddings for image codes, added to their token embeddings.

    Rotary positions are 1D: in a 16 x 16 code grid a code's vertical neighbours sit 16 tokens away. Each
    grid `[start, stop, rows, cols]` names an id range whose tokens come as row-major images of rows x cols
    codes; a token's cell is its place in the run of consecutive ids of that range (modulo rows * cols, so
    back-to-back images each restart), and it gets `row[cell // cols] + col[cell % cols]`. Runs are read from
    the ids alone, so nothing upstream changes; a KV cache carries each row's open run into the next call.
    A window that starts inside an image (a cropped context) misplaces that image's codes: start at an image.
    """

    def __init__(self, grids: Sequence[Sequence[int]], d_model: int):
        super().__init__()
        self.grids = [tuple(int(v) for v in grid) for grid in grids]
        self.rows = nn.ModuleList(nn.Embedding(rows, d_model) for _, _, rows, _ in self.grids)
        self.cols = nn.ModuleList(nn.Embedding(cols, d_model) for _, _, _, cols in self.grids)

    def forward(self, input_ids: torch.Tensor, run: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids (B, T), run (B, G): each grid's codes just before these ids (0 without a cache) ->
        (embeddings to add (B, T, d_model), the runs after them (B, G))."""
        B, T = input_ids.shape
        t = torch.arange(T, device=input_ids.device).expand(B, T)
        run = input_ids.new_zeros(B, len(self.grids)) if run is None else run
        added, runs = 0, []
        for g, (start, stop, rows, cols) in enumerate(self.grids):
            inside = (input_ids >= start) & (input_ids < stop)
            last_break = torch.where(inside, -1, t).cummax(-1).values  # (B, T) the last other id so far, or -1
            index = torch.where(last_break < 0, t + run[:, g : g + 1], t - last_break - 1)  # place in the run
            runs.append(torch.where(inside[:, -1], index[:, -1] + 1, 0) if T else run[:, g])
            cell = index % (rows * cols)
            vectors = self.rows[g](torch.div(cell, cols, rounding_mode="floor")) + self.cols[g](cell % cols)
            added = added + vectors * inside[..., None]
        return added, torch.stack(runs, 1)


class KVCache:
    """Pre-allocated keys/values for incremental decoding, one (B, H, max_len, Dh) pair per layer.

    `key_mask` (B, max_len) marks the valid keys, so left-padded prompts of different lengths can be
    decoded in one batch. After `share_prefix(repeats)` the keys so far are a prefix shared by each
    row's `repeats` continuations: stored once and read once per step for all of them.
    """

    def __init__(self, config: "ModelConfig", batch_size: int, max_len: int, dtype: torch.dtype, device=None):
        head_dim = config.d_model // config.n_heads
        shape = (batch_size, config.n_heads, max_len, head_dim)
        # Uninitialised: only the first `length` slots are ever read, and those were written.
        self.keys = [torch.empty(shape, dtype=dtype, device=device) for _ in range(config.n_layers)]
        self.values = [torch.empty(shape, dtype=dtype, device=device) for _ in range(config.n_layers)]
        self.key_mask = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)
        self.length = 0
        self.max_len = max_len
        self.prefix: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None  # shared (keys, values) per layer
        self.prefix_length = 0  # keys/values hold the positions from here on
        self.grid_run: torch.Tensor | None = None  # (batch, grids) open image runs (`GridEmbedding`)

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, H, T, Dh) after the current length; return all keys/values so far (after the
        shared prefix, if any)."""
        start, end = self.length - self.prefix_length, self.length - self.prefix_length + k.shape[2]
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def share_prefix(self, repeats: int) -> None:
        """Give every row `repeats` consecutive continuations (B -> B * repeats), e.g. to sample several
        continuations of one prefilled prompt, that share the keys/values written so far instead of copies."""
        if self.prefix is not None:
            raise ValueError("the cache already shares a prefix")
        P = self.length
        self.prefix = ([k[:, :, :P] for k in self.keys], [v[:, :, :P] for v in self.values])
        B, H, _, Dh = self.keys[0].shape
        shape = (B * repeats, H, self.max_len - P, Dh)
        self.keys = [torch.empty(shape, dtype=k.dtype, device=k.device) for k in self.keys]
        self.values = [torch.empty(shape, dtype=v.dtype, device=v.device) for v in self.values]
        self.key_mask = self.key_mask.repeat_interleave(repeats, 0)
        if self.grid_run is not None:
            self.grid_run = self.grid_run.repeat_interleave(repeats, 0)
        self.prefix_length = P


def attend_with_prefix(q: torch.Tensor, prefix_k: torch.Tensor, prefix_v: torch.Tensor, k: torch.Tensor,
                       v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention over a shared prefix and each row's own keys: q (B * R, H, T, Dh) for the R continuations
    of each of B prefixes prefix_k/v (B, H, P, Dh), own keys k/v (B * R, H, S, Dh), mask bool
    (B * R, 1, T, P + S) -> (B * R, H, T, Dh). The prefix is read once for its R rows: one matrix product
    with their R * T queries as its rows, where a copied cache would read it R times."""
    B, H, P, Dh = prefix_k.shape
    BR, _, T, _ = q.shape
    R = BR // B
    grouped = q.unflatten(0, (B, R)).transpose(1, 2).reshape(B, H, R * T, Dh)  # (B, H, R * T, Dh)
    scores_prefix = (grouped @ prefix_k.transpose(-1, -2)).view(B, H, R, T, P).transpose(1, 2).reshape(BR, H, T, P)
    scores = torch.cat([scores_prefix, q @ k.transpose(-1, -2)], dim=-1) * Dh**-0.5
    weights = torch.softmax(scores.float().masked_fill(~mask, float("-inf")), dim=-1).type_as(q)
    w_prefix, w_own = weights.split([P, k.shape[2]], dim=-1)
    w_prefix = w_prefix.unflatten(0, (B, R)).transpose(1, 2).reshape(B, H, R * T, P)
    from_prefix = (w_prefix @ prefix_v).view(B, H, R, T, Dh).transpose(1, 2).reshape(BR, H, T, Dh)
    return from_prefix + w_own @ v


class Attention(nn.Module):
    def __init__(self, config: "ModelConfig"):
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.d_model // config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(self, x, rotation, mask, cache: KVCache | None, layer: int) -> torch.Tensor:
        """x (B, T, D); mask None (plain causal) or bool (B, 1, T, S) where True means attend."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, rotation), apply_rotary(k, rotation)
        if cache is not None:
            k, v = cache.append(layer, k, v)
        if cache is not None and cache.prefix is not None:
            y = attend_with_prefix(q, cache.prefix[0][layer], cache.prefix[1][layer], k, v, mask)
        elif mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))


class SwiGLU(nn.Module):
    """The feed-forward network: one expert of an MoE layer, or the dense layer."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class MoEFeedForward(nn.Module):
    """DeepSpeed's `MoE` layer around SwiGLU experts; returns (out, aux_loss, expert_counts (E,))."""

    def __init__(self, config: "ModelConfig"):
        super().__init__()
        self.drop_tokens = config.drop_tokens
        self.top_k = config.top_k
        self.moe = MoE(
            hidden_size=config.d_model,
            expert=SwiGLU(config.d_model, config.ffn_hidden),
            num_experts=config.num_experts,
            ep_size=config.ep_size,
            k=config.top_k,
            capacity_factor=config.capacity_factor,
            eval_capacity_factor=config.eval_capacity_factor,
            min_capacity=config.min_capacity,
            use_residual=config.use_residual,
            drop_tokens=config.drop_tokens,
            # Deterministic routing: no random token selection, no sampled second expert.
            use_rts=False,
            top2_2nd_expert_sampling=False,
        )

    def train(self, mode: bool = True) -> "MoEFeedForward":
        # Capacity-based dropping bounds the experts' work in training (GShard / Switch); evaluation
        # and generation never drop, so a full forward and KV-cache decoding give the same outputs.
        super().train(mode)
        self.moe.deepspeed_moe.gate.drop_tokens = self.drop_tokens and mode
        return self

    def forward(self, x: torch.Tensor, used: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, D) -> (out (B, T, D), aux loss, expert counts (E,)). used (B, T) bool: the real tokens; padding
        is then routed nowhere (output 0, not counted, taking no expert's capacity; every pad would otherwise go to
        the same expert, crowding real tokens out of it). DeepSpeed's gate takes this mask with top-1 routing only."""
        used_token = used.reshape(-1).long() if used is not None and self.top_k == 1 else None
        out, aux_loss, counts = self.moe(x, used_token)
        return out, aux_loss, counts


class Block(nn.Module):
    def __init__(self, config: "ModelConfig", moe: bool):
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model)
        self.attn = Attention(config)
        self.ffn_norm = RMSNorm(config.d_model)
        self.is_moe = moe
        self.ffn = MoEFeedForward(config) if moe else SwiGLU(config.d_model, config.ffn_hidden)

    def forward(self, x, rotation, mask, cache, layer, used=None):
        x = x + self.attn(self.attn_norm(x), rotation, mask, cache, layer)
        if self.is_moe:
            out, aux_loss, counts = self.ffn(self.ffn_norm(x), used)
            return x + out, aux_loss, counts
        return x + self.ffn(self.ffn_norm(x)), None, None


@dataclass
class ModelConfig:
    """Backbone hyper-parameters. `num_experts=0` gives the dense model.

    vocab_size: set from the tokenizers' unified vocabulary.
    ffn_hidden: hidden width of one expert (SwiGLU); the dense baseline of equal active parameters
        uses `top_k * ffn_hidden` (see `dense_equivalent`).
    moe_every: every N-th block (1-based: blocks N, 2N, ...) has an MoE feed-forward.
    capacity_factor, min_capacity, drop_tokens: DeepSpeed gating capacity. With drop_tokens, training
        routes at most capacity_factor x (tokens / experts) tokens to an expert (the rest skip the
        layer through the residual); evaluation never drops, so full forward and KV-cache decoding agree.
        DeepSpeed asserts tokens per call >= min_capacity: keep it 0 for one-token decoding.
    eval_capacity_factor: only used if dropping is forced on in evaluation.
    use_residual: Residual-MoE (PR-MoE's building block): a dense MLP beside the experts.
    aux_loss_coef: weight of the load-balancing loss added to the LM loss.
    ep_size: expert-parallel degree (experts split across that many processes).
    image_grids: image code ranges that get row and column embeddings (`GridEmbedding`), each
        `[start, stop, rows, cols]`; in a run config a vocabulary name (e.g. `cxr`) stands for its entry
        and training resolves it from the tokenizers, as it sets vocab_size.
    """

    vocab_size: int = 0
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    ffn_hidden: int = 256
    max_seq_len: int = 512
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    num_experts: int = 4
    moe_every: int = 1
    top_k: int = 1
    capacity_factor: float = 1.25
    eval_capacity_factor: float = 2.0
    min_capacity: int = 0
    drop_tokens: bool = True
    use_residual: bool = False
    aux_loss_coef: float = 0.01
    ep_size: int = 1
    init_std: float = 0.02
    image_grids: list = field(default_factory=list)

    def __post_init__(self):
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model={self.d_model} must split into n_heads={self.n_heads} heads of even size")
        if self.num_experts < 0 or self.num_experts == 1:
            raise ValueError(f"num_experts must be 0 (dense) or >= 2, got {self.num_experts}")
        if self.num_experts and self.top_k not in (1, 2):
            raise ValueError(f"top_k must be 1 or 2, got {self.top_k}")
        if self.num_experts and self.num_experts % self.ep_size:
            raise ValueError(f"num_experts={self.num_experts} is not divisible by ep_size={self.ep_size}")
        if self.moe_every < 1:
            raise ValueError(f"moe_every must be >= 1, got {self.moe_every}")
        if not isinstance(self.image_grids, list) or not all(
            isinstance(g, str) or (isinstance(g, (list, tuple)) and len(g) == 4 and all(isinstance(v, int) for v in g)
                                   and 0 <= g[0] < g[1] and g[2] > 0 and g[3] > 0) for g in self.image_grids):
            raise ValueError(f"image_grids must be a list of vocabulary names or [start, stop, rows, cols] entries, "
                             f"got {self.image_grids!r}")

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    def is_moe_layer(self, layer: int) -> bool:
        return self.is_moe and (layer + 1) % self.moe_every == 0

    def dense_equivalent(self) -> "ModelConfig":
        """The dense model with the same active parameters per token (FFN width top_k * ffn_hidden)."""
        if not self.is_moe:
            return self
        return ModelConfig(**{**asdict(self), "num_experts": 0, "ffn_hidden": self.top_k * self.ffn_hidden})

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)


@dataclass
class BackboneOutput:
    """logits (B, T, V); aux_loss: summed MoE load-balancing loss (0 for dense);
    expert_counts: one (E,) tensor per MoE layer, tokens routed to each expert (top_k per token)."""

    logits: torch.Tensor
    aux_loss: torch.Tensor
    expert_counts: list[torch.Tensor] = field(default_factory=list)


class Backbone(nn.Module):
    """The shared world-model transformer over the unified vocabulary."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError("ModelConfig.vocab_size must be set (from the tokenizers' vocabulary)")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.rotary = RotaryEmbedding(config.d_model // config.n_heads, config.rope_theta)
        names = [g for g in config.image_grids if isinstance(g, str)]
        if names:
            raise ValueError(f"model.image_grids names {names[0]!r}: only training resolves names (from the tokenizers)")
        self.grid_embed = GridEmbedding(config.image_grids, config.d_model) if config.image_grids else None
        self.blocks = nn.ModuleList(Block(config, config.is_moe_layer(i)) for i in range(config.n_layers))
        self.norm = RMSNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        # GPT-2 style: scale the residual projections by depth so activations stay O(1) at init.
        for name, p in self.named_parameters():
            if name.endswith(("proj.weight", "down.weight")):
                nn.init.normal_(p, std=config.init_std / math.sqrt(2 * config.n_layers))
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.init_std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        last_only: bool = False,
    ) -> BackboneOutput:
        """input_ids (B, T) -> logits (B, T, V).

        positions (B, T): default `cache.length + arange(T)`.
        attention_mask (B, T) bool: False marks padding (keys no token attends to, tokens the MoE routes nowhere).
        document_ids (B, T): packed rows; attention stays within a document.
        cache: decode incrementally; new keys are appended and `cache.length` advanced.
        last_only: logits (B, 1, V) of the last position alone (what sampling needs; a prompt's other positions
            would cost the output layer's matrix product for nothing).
        """
        B, T = input_ids.shape
        if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= self.config.vocab_size):
            raise ValueError(
                f"token id out of range: got [{int(input_ids.min())}, {int(input_ids.max())}], "
                f"vocab_size is {self.config.vocab_size}"
            )
        start = cache.length if cache is not None else 0
        if start + T > (cache.max_len if cache is not None else self.config.max_seq_len):
            raise ValueError(f"sequence of {start + T} tokens is longer than the limit")
        if positions is None:
            positions = torch.arange(start, start + T, device=input_ids.device).expand(B, T)
        mask = self._attention_mask(B, T, attention_mask, document_ids, cache, input_ids.device)
        x = self.embed(input_ids)
        if self.grid_embed is not None:
            added, run = self.grid_embed(input_ids, cache.grid_run if cache is not None else None)
            x = x + added.to(x.dtype)
            if cache is not None:
                cache.grid_run = run
        rotation = self.rotary(positions)
        used = attention_mask if attention_mask is not None and attention_mask.shape == (B, T) else None
        aux_losses, counts = [], []
        for i, block in enumerate(self.blocks):
            x, aux_loss, expert_counts = block(x, rotation, mask, cache, i, used)
            if aux_loss is not None:
                aux_losses.append(aux_loss)
                counts.append(expert_counts)
        if cache is not None:
            cache.length += T
        logits = self.lm_head(self.norm(x[:, -1:] if last_only else x))
        aux = torch.stack(aux_losses).sum() if aux_losses else logits.new_zeros(())
        return BackboneOutput(logits=logits, aux_loss=aux, expert_counts=counts)

    @staticmethod
    def _attention_mask(B, T, attention_mask, document_ids, cache, device) -> torch.Tensor | None:
        """None for plain causal attention (the fast path), else bool (B, 1, T, S)."""
        start = cache.length if cache is not None else 0
        if start == 0 and document_ids is None and (attention_mask is None or bool(attention_mask.all())):
            if cache is not None:  # a prefill without padding: its keys are its queries, so causal is exact
                cache.key_mask[:, :T] = True
            return None
        S = start + T
        query_idx = torch.arange(start, S, device=device)
        allowed = torch.arange(S, device=device)[None, :] <= query_idx[:, None]  # (T, S) causal
        allowed = allowed.expand(B, T, S)
        if cache is not None:
            if attention_mask is None:
                attention_mask = torch.ones(B, T, dtype=torch.bool, device=device)
            cache.key_mask[:, start:S] = attention_mask
            keys_valid = cache.key_mask[:, :S]
        else:
            keys_valid = attention_mask if attention_mask is not None else torch.ones(B, S, dtype=torch.bool,
                                                                                       device=device)
        allowed = allowed & keys_valid[:, None, :]
        if document_ids is not None:
            allowed = allowed & (document_ids[:, :, None] == document_ids[:, None, :])
        # A query always sees itself, so padding rows never softmax over nothing (NaN).
        allowed = allowed | (query_idx[:, None] == torch.arange(S, device=device)[None, :])
        return allowed[:, None]

    # --- accounting -----------------------------------------------------------------------------
    def num_params(self, active: bool = False) -> int:
        """Parameter count; with `active`, only those one token uses (top_k of num_experts experts)."""
        total = 0
        for name, p in self.named_parameters():
            if active and ".deepspeed_experts." in name:
                total += p.numel() * self.config.top_k / self.config.num_experts * self.config.ep_size
            else:
                total += p.numel()
        return int(total)

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward): 6 x active matmul params + attention (PaLM)."""
        # The embedding lookup is no matmul; a tied LM head still is one, an untied one is counted already.
        matmul_params = self.num_params(active=True)
        if not self.config.tie_embeddings:
            matmul_params -= self.embed.weight.numel()
        attention = 12 * self.config.n_layers * self.config.d_model * seq_len
        return 6.0 * matmul_params + attention

    # --- persistence ----------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, tokenizers=None) -> None:
        """Write config.json + model.safetensors (+ tokenizers/) so `from_pretrained` needs no network.

        Expert-parallel models must be gathered first (`core.training.export_pretrained` does that).
        """
        from safetensors.torch import save_model

        if self.config.ep_size != 1:
            raise ValueError("save_pretrained needs all experts in one process: use core.training.export_pretrained")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(json.dumps({"model": asdict(self.config)}, indent=1))
        save_model(self, str(directory / WEIGHTS_FILE))
        if tokenizers is not None:
            tokenizers.save(directory / "tokenizers")

    @classmethod
    def from_pretrained(cls, directory: str | Path, **overrides) -> "Backbone":
        """Load what `save_pretrained` wrote; `overrides` change config fields (e.g. `ep_size`)."""
        from safetensors.torch import load_model

        directory = Path(directory)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"pretrained model file not found: {directory / name}")
        try:
            data = json.loads((directory / CONFIG_FILE).read_text())["model"]
        except (json.JSONDecodeError, KeyError) as error:
            raise ValueError(f"{directory / CONFIG_FILE} is not a model config: {error}") from None
        model = cls(ModelConfig.from_dict({**data, **overrides}))
        try:
            load_model(model, str(directory / WEIGHTS_FILE))
        except Exception as error:  # safetensors raises several types for truncated/corrupt files
            raise ValueError(f"cannot load weights from {directory / WEIGHTS_FILE}: {error}") from None
        return model


def lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor,
            token_weights: torch.Tensor | None = None,
            smoothing: Sequence[tuple[int, int, float]] = ()) -> torch.Tensor:
    """Mean next-token cross-entropy over target tokens.

    logits (B, T, V), input_ids (B, T), loss_mask (B, T) bool (True where token t is a target).
    token_weights (V,): the weight of each target id (e.g. 10 for a driving plan's bins among many image
    codes); the loss is then the weighted mean. None weighs every target token alike.
    smoothing: (start, stop, sigma) id ranges of ordered bins; a target there is a Gaussian over the range's
    ids around the true one (standard deviation sigma ids) instead of that id alone (HL-Gauss).
    """
    targets = loss_mask[:, 1:]
    if not bool(targets.any()):
        raise ValueError("the batch has no target tokens (loss_mask is all False)")
    ids = input_ids[:, 1:][targets]
    flat = logits[:, :-1][targets].float()  # (N, V)
    if token_weights is None and not smoothing:
        return F.cross_entropy(flat, ids)
    losses = F.cross_entropy(flat, ids, reduction="none")
    for start, stop, sigma in smoothing:
        rows = (ids >= start) & (ids < stop)
        if bool(rows.any()):
            bins = torch.arange(stop - start, device=ids.device)
            target = (-0.5 * ((bins[None] - (ids[rows] - start)[:, None]) / sigma) ** 2).softmax(-1)  # (n, K)
            losses = losses.index_put((rows.nonzero()[:, 0],),
                                      -(target * flat[rows].log_softmax(-1)[:, start:stop]).sum(-1))
    weights = torch.ones_like(losses) if token_weights is None else token_weights.to(logits.device)[ids]
    return (weights * losses).sum() / weights.sum()
