"""Shared fixtures: tiny real components (no mocks), built once per session where they are costly."""

from __future__ import annotations

import os

os.environ.setdefault("DS_ACCELERATOR", "cpu")  # the project's CI machines have no GPU

import pytest


@pytest.fixture(scope="session")
def locate_data(tmp_path_factory):
    """A 96-scene text + bins toy dataset (no image tokenizer): fast and deterministic."""
    from core.toy import write_toy_dataset

    return write_toy_dataset(tmp_path_factory.mktemp("locate"), num_scenes=96, tasks=("locate",), progress=False)


@pytest.fixture(scope="session")
def locate_run(locate_data, tmp_path_factory):
    """The tiny MoE model trained to near-zero loss on `locate_data`: (run folder, summary)."""
    from core.data import SequenceDataset
    from core.training import Trainer
    from tests.tiny import tiny_run_config

    out = tmp_path_factory.mktemp("locate-run")
    config = tiny_run_config(locate_data, "train.steps=500", "train.lr=5e-3", "train.save_every=0")
    summary = Trainer(config, SequenceDataset(locate_data), out, progress=False).fit()
    return out, summary
