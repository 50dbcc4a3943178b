import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from core.data import SequenceDataset
from domains.robotics.world_model import WorldModel
from simulators.learned import LearnedSimulator, WorldModelEnv
from tests.tiny import tiny_model


@pytest.fixture(scope="module")
def world_model(push_sequences):
    tokenizers = SequenceDataset(push_sequences).tokenizers()
    return WorldModel(tiny_model(vocab_size=tokenizers.vocab.size, max_seq_len=512), tokenizers, max_history=2)


def test_world_model_env_passes_the_gymnasium_checker(world_model):
    env = WorldModelEnv(world_model, "push-v3", max_steps=3)
    check_env(env, skip_render_check=True)
    observation, _ = env.reset(seed=4)
    for _ in range(3):
        observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(observation) and truncated and isinstance(info["success"], bool)
    with pytest.raises(ValueError, match=r"action must have shape \(4,\)"):
        env.step(np.zeros(2, np.float32))
    env.close()


def test_batched_simulator_starts_from_the_real_first_frame(world_model):
    from simulators.robots import make_env

    simulator = LearnedSimulator(world_model, "push-v3")
    observations = simulator.reset([1, 2])
    with make_env("push-v3") as env:
        np.testing.assert_array_equal(observations[1]["image"], env.reset(seed=2)[0]["image"])
    observations, rewards, success = simulator.step(np.zeros((2, 4), np.float32))
    assert len(observations) == 2 and rewards.shape == success.shape == (2,)
    with pytest.raises(ValueError, match=r"actions must have shape \(2, 4\)"):
        simulator.step(np.zeros((3, 4), np.float32))
    simulator.close()
