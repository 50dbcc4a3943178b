"""Weight export and import that understand expert parallelism.

With `ep_size > 1` each process holds `num_experts / ep_size` experts, numbered locally. Export
gathers them under their global numbers into one ordinary `save_pretrained` folder (ep_size 1);
import slices a full folder back to the experts this process owns. This replaces DeepSpeed's
`zero_to_fp32`, which does not handle MoE checkpoints.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.distributed as dist

from ..backbone.model import Backbone, ModelConfig
from .distributed import barrier, rank

__all__ = ["export_pretrained", "load_pretrained_into"]

_EXPERT = re.compile(r"(.*\.deepspeed_experts\.)(\d+)(\..*)")


def _expert_rank(config: ModelConfig) -> int:
    if config.ep_size == 1:
        return 0
    from deepspeed.utils import groups

    return groups._get_expert_parallel_rank(f"ep_size_{config.ep_size}")


def _renumber(state: dict[str, torch.Tensor], offset: int) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in state.items():
        match = _EXPERT.fullmatch(name)
        out[f"{match[1]}{int(match[2]) + offset}{match[3]}" if match else name] = tensor
    return out


def export_pretrained(model: Backbone, directory: str | Path, tokenizers=None) -> None:
    """Write `model` (all experts, fp32, ep_size 1) with `save_pretrained`. Call on every process."""
    config = model.config
    state = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    if config.ep_size > 1:
        local = config.num_experts // config.ep_size
        state = _renumber(state, _expert_rank(config) * local)
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, {k: v for k, v in state.items() if _EXPERT.fullmatch(k)})
        for part in gathered:  # data-parallel replicas hold identical experts: first one wins
            for name, tensor in part.items():
                state.setdefault(name, tensor)
    if rank() == 0:
        full = Backbone(ModelConfig.from_dict({**config.__dict__, "ep_size": 1}))
        missing, unexpected = full.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"export lost parameters: missing {missing[:4]}, unexpected {unexpected[:4]}")
        full.save_pretrained(directory, tokenizers)
    barrier()


def load_pretrained_into(model: Backbone, directory: str | Path) -> None:
    """Load a `save_pretrained` folder into `model`, keeping only this process's experts."""
    source = Backbone.from_pretrained(directory)
    mine, theirs = model.config, source.config
    for key in ("vocab_size", "d_model", "n_layers", "n_heads", "ffn_hidden", "num_experts", "moe_every", "tie_embeddings"):
        if getattr(mine, key) != getattr(theirs, key):
            raise ValueError(f"{directory}: pretrained model.{key}={getattr(theirs, key)} but this run has {getattr(mine, key)}")
    local = mine.num_experts // mine.ep_size if mine.is_moe else 0
    first = _expert_rank(mine) * local
    state = {}
    for name, tensor in source.state_dict().items():
        match = _EXPERT.fullmatch(name)
        if match is None:
            state[name] = tensor
        elif first <= int(match[2]) < first + local:
            state[f"{match[1]}{int(match[2]) - first}{match[3]}"] = tensor
    if theirs.image_grids and mine.image_grids != theirs.image_grids:
        raise ValueError(f"{directory}: pretrained model.image_grids={theirs.image_grids} but this run has "
                         f"{mine.image_grids}")
    # A model pretrained without grid embeddings can be fine-tuned with them: they start from their init.
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [name for name in missing if not name.startswith("grid_embed.")]
    if missing or unexpected:
        raise ValueError(f"{directory}: the pretrained weights do not fit this model: missing {missing[:4]}, "
                         f"unexpected {unexpected[:4]}")
