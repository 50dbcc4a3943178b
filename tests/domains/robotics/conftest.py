"""Robotics fixtures: real MuJoCo episodes and a real (tiny) tokenized dataset, built once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def push_episodes(tmp_path_factory):
    """Two 10-step push-v3 episodes (the expert and a random policy), 32 x 32 frames."""
    from domains.robotics.episodes import EpisodeConfig, generate_episodes

    config = EpisodeConfig(tasks=["push-v3"], episodes=2, steps=10, image_size=32,
                           policies={"expert:0": 1, "random": 1})
    return generate_episodes(tmp_path_factory.mktemp("push-episodes"), config, progress=False)


@pytest.fixture(scope="session")
def push_sequences(push_episodes, tmp_path_factory):
    """World-model sequences of `push_episodes`: 4-frame windows, a 4 x 4 VQ fitted briefly."""
    from domains.robotics.world_model import write_world_model_dataset

    return write_world_model_dataset(push_episodes, tmp_path_factory.mktemp("push-sequences"), window=4, stride=2,
                                     grid=4, vq_steps=80, progress=False)


@pytest.fixture(scope="session")
def push_run(push_sequences, tmp_path_factory):
    """The tiny MoE backbone trained on `push_sequences` until it nearly memorises them: (run folder, summary)."""
    from core.config import load_config
    from core.data import SequenceDataset
    from core.training import Trainer

    out = tmp_path_factory.mktemp("push-run")
    config = load_config("tiny", [f"data.path={push_sequences}", "data.seq_len=224", "model.max_seq_len=256",
                                  "train.steps=150", "train.lr=4e-3", "train.micro_batch=4", "train.save_every=0",
                                  "train.log_every=10"])
    return out, Trainer(config, SequenceDataset(push_sequences), out, progress=False).fit()
