"""Robotics fixtures: real MuJoCo episodes and a real (tiny) tokenized dataset, built once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def push_episodes(tmp_path_factory):
    """Two 10-step push-v3 episodes (the expert and a random policy), 64 x 64 frames."""
    from domains.robotics.episodes import EpisodeConfig, generate_episodes

    config = EpisodeConfig(tasks=["push-v3"], episodes=2, steps=10, policies={"expert:0": 1, "random": 1})
    return generate_episodes(tmp_path_factory.mktemp("push-episodes"), config, progress=False)


@pytest.fixture(scope="session")
def push_sequences(push_episodes, tmp_path_factory):
    """World-model sequences of `push_episodes`: 4-frame windows, an 8 x 8 VQ fitted briefly."""
    from domains.robotics.world_model import write_world_model_dataset

    return write_world_model_dataset(push_episodes, tmp_path_factory.mktemp("push-sequences"), window=4, stride=2,
                                     vq_steps=150, progress=False)
