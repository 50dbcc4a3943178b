"""Sampling from the backbone: greedy / temperature / top-k / top-p, modality-constrained positions,
classifier-free guidance, batched prompts of different lengths, with or without the KV cache."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .backbone.model import Backbone, KVCache
from .tokenizers.vocab import TokenRange

__all__ = ["SamplingConfig", "generate", "filter_logits"]

# What one position may sample: any token (None), an id range, or a bool mask over the vocabulary.
Constraint = TokenRange | tuple[int, int] | torch.Tensor | None
# One constraint for every generated position, or one per position.
Allowed = Constraint | Sequence[Constraint]


@dataclass
class SamplingConfig:
    """temperature 0 is greedy; top_k 0 and top_p 1.0 disable those filters."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self):
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"invalid sampling config {self}")


def _as_mask(constraint: Constraint, vocab_size: int) -> torch.Tensor | None:
    """A constraint -> bool (V,) of allowed ids (or a bool mask (..., V) as given), or None for no constraint.
    A ValueError where it allows no id (in some row) or reaches outside the vocabulary: every logit would be -inf."""
    if constraint is None:
        return None
    if isinstance(constraint, torch.Tensor):
        if constraint.dtype != torch.bool or constraint.ndim == 0 or constraint.shape[-1] != vocab_size:
            raise ValueError(f"allowed mask: expected bool (..., {vocab_size}), got {constraint.dtype} "
                             f"{tuple(constraint.shape)}")
        empty = ~constraint.reshape(-1, vocab_size).any(-1)
        if bool(empty.any()):
            raise ValueError(f"allowed mask allows no id in row {int(empty.nonzero()[0])}")
        return constraint
    lo, hi = (constraint.start, constraint.stop) if isinstance(constraint, TokenRange) else constraint
    if not 0 <= lo < hi <= vocab_size:
        raise ValueError(f"allowed id range [{lo}, {hi}) must be non-empty and within the vocabulary [0, {vocab_size})")
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    mask[lo:hi] = True
    return mask


def filter_logits(logits: torch.Tensor, config: SamplingConfig, allowed: torch.Tensor | None) -> torch.Tensor:
    """logits (B, V) -> logits with disallowed ids at -inf (allowed-id mask (V,), top-k, top-p)."""
    logits = logits.float()
    if allowed is not None:
        logits = logits.masked_fill(~allowed.to(logits.device), float("-inf"))
    if config.top_k:
        kth = torch.topk(logits, min(config.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token once the mass before it already reaches top_p (the first token always stays).
        drop_sorted = cumulative - sorted_logits.softmax(-1) >= config.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _sample(logits: torch.Tensor, config: SamplingConfig, allowed, generator) -> torch.Tensor:
    """logits (B, V) -> (B,) ids, greedy or drawn from the filtered, tempered distribution.

    Drawn by inverting each row's cumulative distribution at one uniform number: `torch.multinomial` draws
    an exponential number per vocabulary entry, about ten times slower at a sampling step's sizes on a CPU."""
    if config.temperature == 0:
        return filter_logits(logits, config, allowed).argmax(-1)
    # Tempered first, so that top-p keeps the nucleus of the distribution drawn from (top-k: the same ids either way).
    cdf = filter_logits(logits.float() / config.temperature, config, allowed).softmax(-1).double().cumsum(-1)  # (B, V)
    # A float32 number in [0, 1) keeps u strictly below the row's total mass, so the id drawn (the first whose
    # cumulative mass exceeds u) always has mass of its own: a disallowed id (mass 0) is never drawn. Drawn on the
    # generator's device (a CPU generator also drives a GPU model, with the same numbers) and moved to the logits'.
    device = generator.device if generator is not None else cdf.device
    u = torch.rand(len(cdf), 1, generator=generator, device=device).to(cdf.device).double() * cdf[:, -1:]
    return (cdf <= u).sum(-1)


@contextlib.contextmanager
def _evaluating(model: torch.nn.Module):
    """The model in eval mode inside the block, its own mode restored after it (also on an error)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _left_pad(prompts: Sequence[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (T_i,) -> ids (B, T), mask (B, T) bool, padded on the left."""
    length = max(int(p.numel()) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), length, dtype=torch.bool)
    for i, prompt in enumerate(prompts):
        if prompt.numel() == 0:
            raise ValueError(f"prompt {i} is empty")
        ids[i, length - prompt.numel() :] = prompt
        mask[i, length - prompt.numel() :] = True
    return ids, mask


def _step_masks(allowed: Allowed, steps: int, vocab_size: int) -> list[torch.Tensor | None]:
    single = allowed is None or isinstance(allowed, (TokenRange, torch.Tensor)) or (
        isinstance(allowed, tuple) and len(allowed) == 2 and all(isinstance(v, int) for v in allowed)
    )
    if single:
        return [_as_mask(allowed, vocab_size)] * steps
    if len(allowed) < steps:
        raise ValueError(f"allowed ranges cover {len(allowed)} positions, but {steps} tokens are to be generated")
    return [_as_mask(c, vocab_size) for c in allowed[:steps]]


def _forced_ids(masks: list[torch.Tensor | None], device) -> list[torch.Tensor | None]:
    """Per step: the one id each row may take, (B,) or (1,) long on `device`, where the mask allows exactly one;
    else None."""
    forced = []
    for m in masks:
        rows = None if m is None else m.reshape(-1, m.shape[-1])
        single = rows is not None and bool((rows.sum(-1) == 1).all())
        forced.append(rows.long().argmax(-1).to(device) if single else None)
    return forced


@torch.no_grad()
def generate(
    model: Backbone,
    prompts: Sequence[torch.Tensor],
    max_new_tokens: int,
    *,
    pad_id: int = 0,
    sampling: SamplingConfig | None = None,
    allowed: Allowed = None,
    eos_id: int | None = None,
    cfg_scale: float = 1.0,
    uncond_prompts: Sequence[torch.Tensor] | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    return_logits: bool = False,
    choose: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    samples: int = 1,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Continue each prompt; returns the new tokens (B * samples, max_new_tokens).

    prompts: B global-id tensors (T_i,), left-padded internally.
    allowed: restrict each position to an id range (e.g. the image codebook for image positions) or
        to a bool mask over the vocabulary (e.g. text ids plus `</text>`: `Vocab.mask`).
    eos_id: a finished row is filled with `pad_id` after its `<eos>`; generation stops when all are done.
    cfg_scale, uncond_prompts: classifier-free guidance, logits = u + s * (c - u), with u from the
        unconditional prompts (same count as prompts; e.g. the condition replaced by `<null>`).
    use_cache: the KV cache (default) or full recomputation at every step (for checks and benchmarks).
    generator: the random numbers of sampling, one per row and step in row order: the same seed gives a prompt
        the same tokens only in the same batch (its row and the batch size).
    return_logits: also return the logits each token was drawn from, (B, max_new_tokens, V) float, after
        guidance and the `allowed` constraint (disallowed ids -inf; zeros for steps not run after every row's
        `<eos>`), e.g. for a bin token's expected value instead of its mode.
    choose: pick the tokens yourself instead of sampling: called with the step and those logits (B, V)
        (after guidance and `allowed`), it returns the step's (B,) ids, e.g. a thresholded decision
        between two ids; the prompt is still run once and each chosen token once, through the cache.
    samples: continuations per prompt (rows i * samples ... i * samples + samples - 1 belong to prompt i);
        the prompt is run once and its cache shared, so only the new tokens cost `samples` times over.
    With the cache and without `eos_id`, `choose` or `return_logits`, a run of positions whose `allowed`
    admits one id per row (tags, given actions) is filled in and fed in one forward pass with the token
    before it: the same tokens, fewer passes.
    """
    sampling = sampling or SamplingConfig()
    if not len(prompts):
        raise ValueError("generate: no prompts")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    guided = cfg_scale != 1.0
    if guided and (uncond_prompts is None or len(uncond_prompts) != len(prompts)):
        raise ValueError("classifier-free guidance needs one unconditional prompt per prompt")
    batch_prompts = list(prompts) + (list(uncond_prompts) if guided else [])
    ids, mask = _left_pad([torch.as_tensor(p, dtype=torch.long).reshape(-1) for p in batch_prompts], pad_id)
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    B = len(prompts) * samples
    masks = _step_masks(allowed, max_new_tokens, model.config.vocab_size)
    total = ids.shape[1] + max_new_tokens
    if total > model.config.max_seq_len:
        raise ValueError(f"prompt + new tokens = {total} exceeds max_seq_len {model.config.max_seq_len}")
    with _evaluating(model):  # the model's training mode back however generation ends
        cache = KVCache(model.config, ids.shape[0], total, model.embed.weight.dtype, device) if use_cache else None
        new_tokens = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
        done = torch.zeros(B, dtype=torch.bool, device=device)
        kept = torch.zeros(B, max_new_tokens, model.config.vocab_size, device=device) if return_logits else None
        # Forced runs (docstring): their positions need no logits of their own.
        single = _forced_ids(masks, device)  # a position that admits one id is filled in, never drawn
        can_force = use_cache and kept is None and choose is None and eos_id is None
        forced = single if can_force else [None] * len(masks)
        step_ids, step_mask = ids, mask
        step = 0
        while step < max_new_tokens:
            positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
            if use_cache:
                logits = model(step_ids, positions[:, -step_ids.shape[1] :], step_mask, cache=cache,
                               last_only=True).logits[:, -1]
            else:
                logits = model(ids, positions, mask, last_only=True).logits[:, -1]
            if step == 0 and samples > 1:  # the prompts ran once; each now continues `samples` times
                logits, ids, mask = (t.repeat_interleave(samples, 0) for t in (logits, ids, mask))
                if cache is not None:
                    cache.share_prefix(samples)
            if guided:
                logits = logits[B:] + cfg_scale * (logits[:B] - logits[B:])
            if kept is not None or choose is not None:
                constrained = filter_logits(logits, SamplingConfig(), masks[step])
                if kept is not None:
                    kept[:, step] = constrained
            if choose is not None:
                token = choose(step, constrained)
            elif single[step] is not None:  # drawing it would spend random numbers the forced runs do not
                token = single[step].expand(B)
            else:
                token = _sample(logits, sampling, masks[step], generator)
            token = torch.where(done, torch.full_like(token, pad_id), token)
            new_tokens[:, step] = token
            if eos_id is not None:
                done |= token == eos_id
                if bool(done.all()):
                    break
            run = [token]
            while step + 1 < max_new_tokens and forced[step + 1] is not None:
                step += 1
                run.append(forced[step].expand(B))
                new_tokens[:, step] = run[-1]
            step += 1
            step_ids = torch.stack(run, 1).repeat(2 if guided else 1, 1)
            step_mask = torch.ones_like(step_ids, dtype=torch.bool)
            ids = torch.cat([ids, step_ids], dim=1)
            mask = torch.cat([mask, step_mask], dim=1)
    return (new_tokens, kept) if return_logits else new_tokens
