"""Tiny real components for the tests."""

from __future__ import annotations

import torch

from core.backbone import Backbone, ModelConfig
from core.config import load_config


def tiny_config(**overrides):
    """The `tiny` preset's model config with a test vocabulary."""
    fields = {**load_config("tiny").model.__dict__, "vocab_size": 97, **overrides}
    return ModelConfig(**fields)


def tiny_model(seed: int = 0, **overrides) -> Backbone:
    torch.manual_seed(seed)
    return Backbone(tiny_config(**overrides)).eval()


def tiny_run_config(data_path, *overrides: str):
    """The `tiny` run preset on `data_path`, short sequences, no progress bars."""
    return load_config("tiny", [f"data.path={data_path}", "data.seq_len=32", *overrides])
