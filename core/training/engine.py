"""Training with the DeepSpeed engine: one CPU process here, many GPUs elsewhere, same config.

`Trainer(run_config, dataset, out_dir).fit()` trains, logs to TensorBoard, checkpoints atomically
every `train.save_every` steps, resumes exactly from the latest checkpoint in `out_dir`, and exports
the final weights with `save_pretrained` (no `zero_to_fp32`, which fails on MoE checkpoints).

Monitors measure what the loss cannot show (e.g. whether the model uses its condition at all): callables
`monitor(model) -> {name: value}` run with the validation loss every `train.eval_every` steps and at the end,
logged to TensorBoard as `monitor/<name>`, to metrics.jsonl and to the run's summary. A domain builds them on
the validation split (`validation_split`) of its dataset; `uwm finetune DOMAIN` passes them in.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ..backbone.model import Backbone, lm_loss
from ..config import DataConfig, RunConfig
from ..data import BatchStream, SequenceDataset, write_json_atomic, write_text_atomic
from ..precision import resolve_dtype
from ..pretrained import TRAINING_DATA_FILE
from ..provenance import provenance
from ..sequence import Batch, pad_batch
from . import checkpoint as ckpt
from .distributed import barrier, init_distributed, rank, world_size
from .export import export_pretrained, load_pretrained_into

__all__ = ["Monitor", "Trainer", "TrainingDiverged", "build_engine", "deepspeed_config", "validation_split"]

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is left untouched."""


Monitor = Callable[[Backbone], dict[str, float]]


def validation_split(size: int, data: DataConfig, groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(validation indices, training indices) of a dataset of `size` samples: `data.val_fraction` of them, drawn by
    `data.val_seed` alone, so that runs of different training seeds validate on the same samples.

    With `groups` (size,), the source of each sample (`SequenceDataset.groups`: an episode, a scene, a study),
    whole groups are held out, so that no validation sample has a sibling from the same source in training
    (windows of one episode share frames; a study's read and draw share its image): taken in a random order
    while they fit within the fraction (the smallest one where none fits; never all of them). The validation
    indices then come in a random order (without groups too), so that the first batches (`Trainer.evaluate`) span
    the data rather than its first samples or groups."""
    rng = np.random.default_rng(data.val_seed)
    n_val = int(round(size * data.val_fraction)) if size > 1 else 0
    if groups is None:
        split = rng.permutation(size)
        return split[:n_val], split[n_val:]
    groups = np.asarray(groups)
    if groups.shape != (size,):
        raise ValueError(f"groups has shape {groups.shape}, expected ({size},): one group per sample")
    names, members = np.unique(groups, return_inverse=True)
    sizes = np.bincount(members, minlength=len(names))
    held, total = [], 0
    for group in rng.permutation(len(names)) if n_val else ():
        if total + sizes[group] <= n_val:
            held.append(group)
            total += sizes[group]
    if n_val and not held:
        held = [int(np.argmin(sizes))]  # every source is larger than the fraction
        if len(names) > 1:
            log.warning("validation: every source (group) is larger than data.val_fraction=%g of the %d samples, "
                        "so the smallest one is held out: %d samples (%.0f%%); set data.val_fraction: 0 to train on "
                        "all of them", data.val_fraction, size, sizes[held[0]], 100 * sizes[held[0]] / size)
    held = held[: len(names) - 1]
    if n_val and not held:
        log.warning("validation: all %d samples come from one source (groups), so none is held out", size)
    in_validation = np.isin(members, held)
    return rng.permutation(np.flatnonzero(in_validation)), np.flatnonzero(~in_validation)


# Settings a resumed run may change: where things are, how long it trains, how often it logs, evaluates and saves.
RESUMABLE_CHANGES = ("name", "out_dir", "data.path", "finetune.init", "train.steps", "train.log_every",
                     "train.eval_every", "train.save_every", "train.keep_checkpoints")


def changed_settings(saved: dict | None, current: dict) -> list[str]:
    """'section.key: saved -> current' for each setting of a checkpoint's config (`RunConfig.to_dict`) that the
    current config sets otherwise, but for `RESUMABLE_CHANGES` and settings only one of them has (a checkpoint
    written before a setting existed, or before checkpoints kept their config: None)."""
    if saved is None:
        return []
    changed = []
    for section, values in current.items():
        before = saved.get(section)
        if not isinstance(values, dict):
            values, before = {"": values}, {"": before} if section in saved else {}
        for key, value in values.items():
            name = f"{section}.{key}".rstrip(".")
            if name not in RESUMABLE_CHANGES and key in before and before[key] != value:
                changed.append(f"{name}: {before[key]!r} -> {value!r}")
    return changed


def deepspeed_config(config: RunConfig) -> dict:
    """The DeepSpeed JSON config for a run (the same dict scales from one CPU to many GPUs); train.dtype
    bf16 trains in fp32 where the device has no native bf16 (`core.precision.resolve_dtype`)."""
    train = config.train
    return {
        "train_micro_batch_size_per_gpu": train.micro_batch,
        "gradient_accumulation_steps": train.grad_accum,
        "gradient_clipping": train.grad_clip,
        "optimizer": {
            "type": "AdamW",
            # torch_adam: DeepSpeed's CPU Adam op would JIT-compile for ~2 minutes on first use;
            # torch's fused AdamW updates each tensor in one pass (CPU and GPU).
            "params": {"lr": train.lr, "betas": [train.beta1, train.beta2], "weight_decay": train.weight_decay,
                       "torch_adam": True, "fused": True},
        },
        "scheduler": {
            "type": "WarmupCosineLR",
            "params": {"total_num_steps": train.steps, **_warmup(train.warmup_steps), "warmup_type": "linear",
                       "cos_min_ratio": train.min_lr_ratio},
        },
        "zero_optimization": {"stage": train.zero_stage},
        "bf16": {"enabled": resolve_dtype(train.dtype) == "bf16"},
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


def _warmup(steps: int) -> dict:
    """DeepSpeed `WarmupCosineLR` warmup parameters for a linear warmup of `steps` optimizer steps: with the schedule
    started in `build_engine`, step k trains at k / steps of the peak lr for k < steps and at the peak (the cosine's
    start) from step `steps` on (DeepSpeed warms up over 2 iterations at least: exact for steps >= 3; no warmup for
    steps <= 1)."""
    if steps <= 1:
        return {"warmup_num_steps": 2, "warmup_min_ratio": 1.0}
    return {"warmup_num_steps": max(2, steps - 1), "warmup_min_ratio": 1 / steps}


def _parameter_groups(model: Backbone, weight_decay: float) -> list[dict]:
    """Decay matrices, not norms/embeddings; experts get their own groups (DeepSpeed MoE requirement)."""
    from deepspeed.moe.utils import split_params_into_different_moe_groups_for_optimizer

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 and "embed" not in name else no_decay).append(p)
    groups = [g for g in ({"name": "decay", "params": decay, "weight_decay": weight_decay},
                          {"name": "no_decay", "params": no_decay, "weight_decay": 0.0}) if g["params"]]
    return split_params_into_different_moe_groups_for_optimizer(groups)


def build_engine(model: Backbone, config: RunConfig):
    """Wrap `model` in a DeepSpeed engine (AdamW, warmup + cosine LR, clipping, ZeRO, bf16) per `config`."""
    import deepspeed

    init_distributed()
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=_parameter_groups(model, config.train.weight_decay),
        config=deepspeed_config(config),
    )
    # DeepSpeed's schedule sets lr 0 before its first step() and steps after each optimizer step: started
    # here, the first optimizer step takes the schedule's first value.
    engine.lr_scheduler.step()
    if world_size() == 1 and config.train.zero_stage == 0:
        # Alone, DeepSpeed would still flatten, "all-reduce" and copy back every gradient each step.
        engine.enable_backward_allreduce = False
    return engine


def _check_same_vocabulary(pretrained: Path, dataset: SequenceDataset) -> None:
    """The dataset's tokenizers must be the ones the pretrained model was trained with (layout and content)."""
    from ..tokenizers import check_same_tokenizers

    check_same_tokenizers(pretrained / "tokenizers", dataset.directory / "tokenizers",
                          "rebuild the data with the pretrained tokenizers (e.g. `uwm data ... --tokenizers "
                          "<pretraining data>`)")


def _apply_finetune_mode(model: Backbone, mode: str) -> None:
    for name, p in model.named_parameters():
        if mode == "experts":
            p.requires_grad = ".deepspeed_moe." in name
        elif mode == "head":
            p.requires_grad = name.startswith(("embed.", "lm_head."))
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"finetune.mode={mode!r} leaves no trainable parameter (is the model dense?)")


def _ranges(vocab, names, key: str) -> list:
    """The vocabulary ranges `train.<key>` names, each checked to exist."""
    missing = [name for name in names if name not in vocab]
    if missing:
        raise ValueError(f"train.{key} names {missing[0]!r}, which is not in the dataset's vocabulary (it has {vocab.names})")
    return [vocab[name] for name in names]


ORDINAL_BASIS = 8  # cosines per bin range in `ordinal_init`


@torch.no_grad()
def ordinal_init(model: Backbone, spans, seed: int = 0, noise: float = 0.2) -> None:
    """Re-initialise the embedding rows of each bin range in `spans` so that neighbouring bins start alike.

    Row k of an n-bin range becomes sum_j cos(pi j k / (n - 1)) W_j over j < min(`ORDINAL_BASIS`, n / 8) (at
    least 2, so neighbours stay alike in small ranges too), with random (d_model,) vectors W_j, plus `noise` times
    fresh random rows; the rows keep about the model's init std. What the model learns about one bin then carries
    to its neighbours (at the output too, with tied embeddings) instead of every bin learning alone from its own
    few examples. Seeded; leaves the global RNG alone.
    """
    generator = torch.Generator().manual_seed(seed)
    weight, std = model.embed.weight, model.config.init_std
    for span in spans:
        count = min(ORDINAL_BASIS, max(2, span.size // 8))
        index = torch.linspace(0, 1, span.size)[:, None]
        basis = torch.cos(torch.pi * torch.arange(count)[None, :] * index)  # (n, J), mean square ~1/2
        directions = torch.randn(count, weight.shape[1], generator=generator) * std * (2 / count) ** 0.5
        rows = basis @ directions + noise * std * torch.randn(span.size, weight.shape[1], generator=generator)
        weight[span.start : span.stop] = rows.to(weight.dtype)


@torch.no_grad()
def codebook_init(model: Backbone, spans, codebooks, seed: int = 0, noise: float = 0.2) -> None:
    """Re-initialise the embedding rows of each image range in `spans` from its VQ codebook (K, D) in `codebooks`.

    Row k becomes c_k P, with c_k the code's vector standardised per dimension over the codebook and P a random
    (D, d_model) projection, plus `noise` times fresh random rows; the rows keep about the model's init std.
    Codes the tokenizer puts close together (the same texture, a slightly brighter edge) then start close, and
    what the model learns about one carries to the others (at the output too, with tied embeddings), instead of
    every code starting as an unrelated random vector. Seeded; leaves the global RNG alone.
    """
    generator = torch.Generator().manual_seed(seed)
    weight, std = model.embed.weight, model.config.init_std
    for span, codebook in zip(spans, codebooks):
        if codebook.ndim != 2 or codebook.shape[0] != span.size:
            raise ValueError(f"codebook_init: a codebook of shape {tuple(codebook.shape)} for a range of {span.size} ids")
        vectors = codebook.float()
        vectors = (vectors - vectors.mean(0)) / vectors.std(0).clamp_min(1e-6)  # (K, D), unit variance per dimension
        projection = torch.randn(vectors.shape[1], weight.shape[1], generator=generator) * std / vectors.shape[1] ** 0.5
        rows = vectors @ projection + noise * std * torch.randn(span.size, weight.shape[1], generator=generator)
        weight[span.start : span.stop] = rows.to(weight.dtype)


def _codebook_ranges(tokenizers, names) -> tuple[list, list[torch.Tensor]]:
    """`train.codebook_init` names -> (their vocabulary ranges, their image tokenizers' codebooks (K, D))."""
    spans = _ranges(tokenizers.vocab, names, "codebook_init")
    others = [name for name in names if name not in tokenizers.images]
    if others:
        raise ValueError(f"train.codebook_init names {others[0]!r}, which is not an image tokenizer (the dataset's "
                         f"are {sorted(tokenizers.images)})")
    return spans, [tokenizers.images[name].codebook for name in names]


def _image_grids(tokenizers, grids: list) -> list[list[int]]:
    """`model.image_grids` with each vocabulary name replaced by its `[start, stop, rows, cols]` entry."""
    resolved = []
    for grid in grids:
        if isinstance(grid, str):
            if grid not in tokenizers.images:
                raise ValueError(f"model.image_grids names {grid!r}, which is not an image tokenizer of the dataset "
                                 f"(it has {sorted(tokenizers.images)})")
            span, side = tokenizers.vocab[grid], tokenizers.images[grid].config.grid_size
            grid = [span.start, span.stop, side, side]
        resolved.append(list(grid))
    return resolved


def _token_weights(vocab, loss_weights: dict[str, float]) -> torch.Tensor | None:
    """`train.loss_weights` {vocabulary name: weight} -> (V,) float weights of every id (1 elsewhere), or None."""
    if not loss_weights:
        return None
    weights = torch.ones(vocab.size)
    for span, weight in zip(_ranges(vocab, loss_weights, "loss_weights"), loss_weights.values()):
        weights[span.start : span.stop] = float(weight)
    return weights


class Trainer:
    """Pretraining or fine-tuning of the backbone on a sequence dataset folder.

    out_dir receives: config.json, ds_config.json, checkpoints/<step-N>/, tb/ (TensorBoard),
    metrics.jsonl, and final/ (the exported pretrained model with its tokenizers).
    """

    def __init__(self, config: RunConfig, dataset: SequenceDataset, out_dir: str | Path, progress: bool = True,
                 monitors: Sequence[Monitor] = ()):
        init_distributed()
        self.config, self.dataset, self.progress, self.monitors = config, dataset, progress, list(monitors)
        self.out_dir = Path(out_dir)
        self.ckpt_root = self.out_dir / "checkpoints"
        self.tokenizers = dataset.tokenizers()
        model_config = config.model
        if model_config.vocab_size not in (0, dataset.vocab_size):
            raise ValueError(f"model.vocab_size={model_config.vocab_size} but the dataset vocabulary has "
                             f"{dataset.vocab_size} ids")
        model_config.vocab_size = dataset.vocab_size
        model_config.image_grids = _image_grids(self.tokenizers, model_config.image_grids)
        if model_config.max_seq_len < config.data.seq_len:
            raise ValueError(f"data.seq_len={config.data.seq_len} exceeds model.max_seq_len={model_config.max_seq_len}")

        _seed_everything(config.train.seed)
        model = Backbone(model_config)
        if config.finetune.init:
            _check_same_vocabulary(Path(config.finetune.init), dataset)
            load_pretrained_into(model, config.finetune.init)
            _apply_finetune_mode(model, config.finetune.mode)
        ordinal_init(model, _ranges(self.tokenizers.vocab, config.train.ordinal_init, "ordinal_init"), config.train.seed)
        spans, codebooks = _codebook_ranges(self.tokenizers, config.train.codebook_init)
        if not config.finetune.init:
            codebook_init(model, spans, codebooks, config.train.seed)
        self.engine = build_engine(model, config)
        self.model: Backbone = self.engine.module
        groups = dataset.groups()
        self.val_indices, train_indices = validation_split(len(dataset), config.data, groups)
        # what validation holds out: its samples, and the whole sources they come from (None: split by sample)
        self.validation = {"samples": len(self.val_indices),
                           "sources": None if groups is None else len(np.unique(groups[self.val_indices]))}
        pad_id = self.tokenizers.vocab.special("<pad>")
        self.stream = BatchStream(dataset, train_indices, config.train.micro_batch, config.data.seq_len, pad_id,
                                  config.data.packing, config.train.seed, rank(), world_size())
        self.pad_id = pad_id
        self.token_weights = _token_weights(self.tokenizers.vocab, config.train.loss_weights)
        self.smoothing = [(span.start, span.stop, float(sigma)) for span, sigma in
                          zip(_ranges(self.tokenizers.vocab, config.train.bin_smoothing, "bin_smoothing"),
                              config.train.bin_smoothing.values())]
        self.step = 0
        self.history: list[dict] = []
        # training time before this trainer: the earlier runs' up to the checkpoint it resumed from (None when
        # that checkpoint predates the record); this run's is counted from here
        self.earlier_s: float | None = 0.0
        self._started = time.perf_counter()

    # --- one step --------------------------------------------------------------------------------
    def _forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(LM loss over target tokens, MoE aux loss, per-layer expert counts) for one batch."""
        batch = batch.to(self.engine.device)
        out = self.engine(batch.input_ids, positions=batch.positions, attention_mask=batch.attention_mask,
                          document_ids=batch.document_ids)
        loss = lm_loss(out.logits, batch.input_ids, batch.loss_mask, self.token_weights, self.smoothing)
        return loss, out.aux_loss, out.expert_counts

    def train_step(self) -> dict:
        """One optimizer step over `grad_accum` micro-batches; returns the logged metrics."""
        started = time.perf_counter()
        lr = self.engine.get_lr()[0]  # what this step trains at (the scheduler moves on as it ends)
        lm_total, aux_total, tokens, counts = 0.0, 0.0, 0, None
        for _ in range(self.config.train.grad_accum):
            batch = self.stream.next()
            loss, aux, expert_counts = self._forward(batch)
            total = loss + self.config.model.aux_loss_coef * aux
            self._check_finite(total, loss, aux)
            self.engine.backward(total)
            self.engine.step()
            lm_total += loss.item() / self.config.train.grad_accum
            aux_total += aux.item() / self.config.train.grad_accum
            tokens += int(batch.attention_mask.sum())
            if expert_counts:
                stacked = torch.stack([c.float() for c in expert_counts])
                counts = stacked if counts is None else counts + stacked
        self.step += 1
        if world_size() > 1:  # log the mean over processes, not rank 0's share
            means = torch.tensor([lm_total, aux_total], device=self.engine.device)  # NCCL reduces CUDA tensors
            dist.all_reduce(means)
            lm_total, aux_total = (means / world_size()).tolist()
        metrics = {"step": self.step, "loss": lm_total, "aux_loss": aux_total,
                   "lr": lr, "tokens_per_s": tokens * world_size() / (time.perf_counter() - started)}
        grad_norm = self.engine.get_global_grad_norm()
        if grad_norm is not None:
            metrics["grad_norm"] = float(grad_norm)
            if not np.isfinite(metrics["grad_norm"]):  # a finite loss can still step the weights to NaN
                raise TrainingDiverged(f"non-finite gradient norm at step {self.step} (loss {lm_total}); "
                                       f"{self._last_good()}. Lower train.lr or use train.dtype=fp32.")
        if counts is not None:
            # Load imbalance: the busiest expert's share over the mean share, averaged over MoE layers.
            metrics["expert_imbalance"] = float((counts.max(1).values / counts.mean(1)).mean())
        return metrics

    def _check_finite(self, total: torch.Tensor, loss: torch.Tensor, aux: torch.Tensor) -> None:
        bad = torch.tensor([0.0 if torch.isfinite(total) else 1.0], device=self.engine.device)
        if world_size() > 1:
            dist.all_reduce(bad)  # every process stops together
        if bad.item():
            raise TrainingDiverged(
                f"non-finite loss at step {self.step + 1} (lm loss {loss.item()}, aux loss {aux.item()}); "
                f"{self._last_good()}. Lower train.lr, raise train.warmup_steps or use train.dtype=fp32."
            )

    def _last_good(self) -> str:
        """Where the last good checkpoint is (for a diverged run's message)."""
        last = ckpt.latest_tag(self.ckpt_root)
        return f"the last good checkpoint is {self.ckpt_root / last}" if last else "no checkpoint was written yet"

    @torch.no_grad()
    def evaluate(self, max_batches: int = 8) -> float | None:
        """Mean LM loss over (up to `max_batches` batches of) the held-out split, in a fixed order."""
        if len(self.val_indices) == 0:
            return None
        self.engine.eval()
        rows = self.config.train.micro_batch
        losses, weights = [], []
        chunks = [self.val_indices[i : i + rows] for i in range(0, len(self.val_indices), rows)][:max_batches]
        for chunk in chunks:
            batch = pad_batch([self.dataset[int(i)] for i in chunk], self.pad_id, self.config.data.seq_len)
            loss, _, _ = self._forward(batch)
            weight = self._target_weight(batch)
            losses.append(float(loss) * weight)
            weights.append(weight)
        self.engine.train()
        return sum(losses) / max(1e-12, sum(weights))

    def _target_weight(self, batch: Batch) -> float:
        """A batch's total target weight: its target tokens' count, or with `train.loss_weights` their weights' sum
        (what `lm_loss`'s weighted mean divides by), so that batches combine into one weighted mean."""
        if self.token_weights is None:
            return batch.num_target_tokens
        return float(self.token_weights[batch.input_ids[:, 1:][batch.loss_mask[:, 1:]]].sum())

    @torch.no_grad()
    def run_monitors(self) -> dict[str, float]:
        """Every monitor's values on the current weights (eval mode), keyed `monitor/<name>`."""
        if not self.monitors:
            return {}
        self.engine.eval()
        try:
            return {f"monitor/{name}": float(value) for monitor in self.monitors
                    for name, value in monitor(self.model).items()}
        finally:
            self.engine.train()

    # --- checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Atomically save model, optimizer, scheduler, and every process's data position and RNG (DeepSpeed keeps
        the client state of data-parallel rank 0 alone, so each process's own position goes beside its RNG)."""
        tag = f"step-{self.step:08d}"
        staging = self.ckpt_root / ckpt.tmp_tag(tag)
        client_state = {"step": self.step, "trained_s": self.trained_s()}
        if rank() == 0 and staging.exists():  # left over by a run that died while saving
            shutil.rmtree(staging)
        barrier()
        self.engine.save_checkpoint(str(self.ckpt_root), tag=ckpt.tmp_tag(tag), client_state=client_state,
                                    save_latest=False)
        torch.save({**_rng_state(), "data": self.stream.state_dict()}, staging / f"rng_rank{rank():05d}.pt")
        barrier()
        if rank() == 0:
            ckpt.finalize_checkpoint(self.ckpt_root, tag, {"step": self.step, "world_size": world_size(),
                                                           "config": self.config.to_dict()})
            ckpt.prune_checkpoints(self.ckpt_root, self.config.train.keep_checkpoints)
        barrier()
        return self.ckpt_root / tag

    def resume(self) -> bool:
        """Load the latest checkpoint under out_dir if there is one; returns whether it did."""
        tag = ckpt.latest_tag(self.ckpt_root)
        if tag is None:
            return False
        info = ckpt.verify_checkpoint(self.ckpt_root, tag)
        if info.get("world_size", 1) != world_size():
            raise ckpt.CheckpointError(
                f"{self.ckpt_root / tag} was written by {info.get('world_size')} processes, this run has {world_size()}"
            )
        changed = changed_settings(info.get("config"), self.config.to_dict())
        if changed:
            raise ckpt.CheckpointError(
                f"{self.ckpt_root / tag} was trained with other settings ({'; '.join(changed)}): resume with the "
                f"same ones (only {', '.join(RESUMABLE_CHANGES)} may change) or train afresh (`--no-resume`, or "
                f"another --out)")
        try:
            path, client_state = self.engine.load_checkpoint(str(self.ckpt_root), tag=tag)
        except Exception as error:
            raise ckpt.CheckpointError(f"cannot load checkpoint {self.ckpt_root / tag}: {error}") from error
        if path is None:
            raise ckpt.CheckpointError(f"DeepSpeed found no checkpoint at {self.ckpt_root / tag}")
        self.step = client_state["step"]
        self.earlier_s = client_state.get("trained_s")
        own = torch.load(self.ckpt_root / tag / f"rng_rank{rank():05d}.pt", weights_only=False)
        _set_rng_state(own)
        self.stream.load_state_dict(own["data"] if "data" in own else client_state["data"])  # older: rank 0's
        return True

    def trained_s(self) -> float | None:
        """Seconds of training that led to the model as it is now: `earlier_s` plus this trainer's time since it
        was built (None when a checkpoint resumed from predates the record). Time a stopped run spent after its
        last checkpoint is not counted: no later run built on it."""
        return None if self.earlier_s is None else self.earlier_s + time.perf_counter() - self._started

    def _finished_summary(self) -> dict | None:
        """The summary of this run when it already finished at `train.steps` (its export and summary.json written
        at the step resumed), else None."""
        summary_path = self.out_dir / "summary.json"
        if self.step < self.config.train.steps or not (self.out_dir / "final" / "config.json").is_file() \
                or not summary_path.is_file():
            return None
        summary = json.loads(summary_path.read_text())
        return summary if summary.get("steps") == self.step else None

    # --- the loop ------------------------------------------------------------------------------------
    def fit(self, resume: bool = True) -> dict:
        """Train to `train.steps`, resuming from the latest checkpoint when `resume`; returns a summary."""
        train = self.config.train
        if resume and self.resume():
            done = self._finished_summary()
            if done is not None:  # a finished run run again: nothing to train, and its record stays
                if rank() == 0:
                    log.info("%s is already trained to step %d (summary.json)", self.out_dir, self.step)
                return done
            if rank() == 0:
                log.info("resumed from step %d", self.step)
        writer = None
        if rank() == 0:
            from torch.utils.tensorboard import SummaryWriter

            self.out_dir.mkdir(parents=True, exist_ok=True)
            _trim_log(self.out_dir / "metrics.jsonl", self.step)  # rows after the checkpoint resumed from are redone
            write_json_atomic(self.out_dir / "config.json", self.config.to_dict())
            write_json_atomic(self.out_dir / "ds_config.json", deepspeed_config(self.config))
            writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=self.step + 1)
        bar = tqdm(total=train.steps, initial=self.step, desc=self.config.name, disable=not self.progress or rank() != 0,
                   dynamic_ncols=True)
        started, first_step = time.perf_counter(), self.step
        metrics = _last_logged(self.out_dir / "metrics.jsonl")  # what a run with no step left reports
        try:
            while self.step < train.steps:
                metrics = self.train_step()
                if train.eval_every and self.step % train.eval_every == 0:
                    metrics["val_loss"] = self.evaluate()
                    metrics.update(self.run_monitors())
                self.history.append(metrics)
                if writer is not None and (self.step % train.log_every == 0 or self.step == train.steps or "val_loss" in metrics):
                    for key, value in metrics.items():
                        if key != "step" and value is not None:
                            writer.add_scalar(key if "/" in key else f"train/{key}", value, self.step)
                    with open(self.out_dir / "metrics.jsonl", "a") as handle:
                        handle.write(json.dumps(metrics) + "\n")
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.3f}", lr=f"{metrics['lr']:.2e}")
                if train.save_every and self.step % train.save_every == 0 and self.step < train.steps:
                    self.save_checkpoint()
        finally:
            bar.close()
            if writer is not None:
                writer.flush()
        if self.step > first_step:  # before the final evaluation: a crash in it loses no training
            self.save_checkpoint()
        val_loss, monitored = self.evaluate(), self.run_monitors()
        export_dir = self.out_dir / "final"
        staging = self.out_dir / ".tmp-final"  # complete before it is `final` (`final/config.json` marks a done run)
        if rank() == 0 and staging.exists():
            shutil.rmtree(staging)
        barrier()
        export_pretrained(self.model, staging, self.tokenizers)
        if rank() == 0:  # what the model was trained on (e.g. how many past frames a sequence holds)
            write_json_atomic(staging / TRAINING_DATA_FILE, {"path": str(self.dataset.directory),
                                                             "meta": self.dataset.meta})
            ckpt.replace_folder(staging, export_dir)
        barrier()
        summary = {
            **provenance(),
            "name": self.config.name, "steps": self.step, "final_loss": metrics.get("loss"), "val_loss": val_loss,
            "wall_s": time.perf_counter() - started, "trained_s": self.trained_s(), "resumed_at_step": first_step,
            "dtype": "bf16" if self.engine.bfloat16_enabled() else "fp32",
            "params": self.model.num_params(),
            "active_params": self.model.num_params(active=True), "export": str(export_dir),
            "validation": self.validation,
            **({"monitors": {key.removeprefix("monitor/"): value for key, value in monitored.items()}} if monitored else {}),
        }
        if writer is not None:
            if val_loss is not None:
                writer.add_scalar("val/loss", val_loss, self.step)
            for key, value in monitored.items():
                writer.add_scalar(key, value, self.step)
            writer.close()
            write_json_atomic(self.out_dir / "summary.json", summary)
        return summary


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def _read_log(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl ([] without one). Rows are appended as steps are logged, so a run killed while
    writing one (a full disk) can leave the last one cut off: it is dropped, with a warning; a damaged row before
    it is an error naming the line."""
    lines = [line for line in (path.read_text().splitlines() if path.exists() else []) if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise ValueError(f"{path}, line {number}: not a JSON row: {line[:80]!r}") from None
            log.warning("%s: its last line is cut off (%r): dropped", path, line[:80])
    return rows


def _last_logged(path: Path) -> dict:
    """The last row of a metrics.jsonl ({} without one)."""
    rows = _read_log(path)
    return rows[-1] if rows else {}


def _trim_log(path: Path, step: int) -> None:
    """Drop the rows of a metrics.jsonl logged after `step` (a run that resumes at `step` logs them again; a new
    run, at 0, starts the file afresh), and a cut-off last line."""
    if not path.exists():
        return
    rows = [row for row in _read_log(path) if row.get("step", 0) <= step]
    write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def _rng_state() -> dict:
    """This process's random generators: Python's, numpy's, torch's CPU one and, on a GPU, its devices'."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            **({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {})}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
