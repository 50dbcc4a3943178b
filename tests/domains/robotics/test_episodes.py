import json

import numpy as np
import pytest

from domains.robotics.episodes import (EVALUATION_SEEDS, EpisodeConfig, evaluation_seeds, generate_episodes, load_episode,
                                       load_episodes, read_manifest)


def test_round_trip_of_the_episode_format(push_episodes):
    manifest = read_manifest(push_episodes)
    assert manifest["complete"] and [e["policy"] for e in manifest["episodes"]] == ["expert:0", "random"]
    episodes = load_episodes(push_episodes)
    for episode, entry in zip(episodes, manifest["episodes"]):
        assert episode.frames.shape == (11, 32, 32, 3) and episode.frames.dtype == np.uint8
        assert episode.states.shape == (11, 10) and episode.actions.shape == (10, 4)
        assert episode.rewards.shape == episode.success.shape == (10,)
        assert entry["return"] == pytest.approx(float(episode.rewards.sum()))
    # the expert moves with purpose, the random policy does not: the returns differ
    assert episodes[0].rewards.sum() != episodes[1].rewards.sum()


def test_generation_resumes_after_an_interruption(tmp_path):
    config = EpisodeConfig(tasks=["reach-v3"], episodes=3, steps=4, image_size=32, policies={"random": 1})
    generate_episodes(tmp_path, config, progress=False)
    files = sorted(tmp_path.glob("reach-v3/*.npz"))
    kept = files[0].stat().st_mtime_ns
    reference = load_episode(files[2])
    files[1].unlink()  # never written
    files[2].write_bytes(b"half a zip")  # cut off mid-write
    generate_episodes(tmp_path, config, progress=False)
    assert files[0].stat().st_mtime_ns == kept  # finished episodes are not generated again
    assert files[1].exists()
    np.testing.assert_array_equal(load_episode(files[2]).frames, reference.frames)  # same seed, same episode
    assert read_manifest(tmp_path)["complete"]


def test_a_different_config_in_the_same_folder_is_refused(tmp_path):
    config = EpisodeConfig(tasks=["reach-v3"], episodes=1, steps=2, image_size=32, policies={"random": 1})
    generate_episodes(tmp_path, config, progress=False)
    config.steps = 3
    with pytest.raises(ValueError, match="different config"):
        generate_episodes(tmp_path, config, progress=False)


def test_corrupt_and_malformed_episode_files_are_clear_errors(tmp_path, push_episodes):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="corrupt.npz: not a readable robot episode"):
        load_episode(corrupt)
    episode = load_episodes(push_episodes)[0]
    short = tmp_path / "short.npz"
    np.savez(short, task="push-v3", policy="x", seed=0, frames=episode.frames[:5], states=episode.states,
             actions=episode.actions, rewards=episode.rewards, success=episode.success)
    with pytest.raises(ValueError, match=r"short.npz: frames have shape \(5, 32, 32, 3\), expected \(11, H, W, 3\)"):
        load_episode(short)
    with pytest.raises(FileNotFoundError, match="uwm data robotics"):
        read_manifest(tmp_path)


def test_unknown_task_and_policy_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown robot task"):
        generate_episodes(tmp_path, EpisodeConfig(tasks=["fly-v3"]), progress=False)
    with pytest.raises(ValueError, match="unknown policy 'clever'"):
        generate_episodes(tmp_path, EpisodeConfig(policies={"clever": 1}), progress=False)
    with pytest.raises(ValueError, match=r"EpisodeConfig.world_model \(--world-model\) must be the folder"):
        generate_episodes(tmp_path, EpisodeConfig(policies={"wm-planner": 1}), progress=False)
    assert not (tmp_path / "manifest.json").exists() or json.loads((tmp_path / "manifest.json").read_text())


def test_recorded_episodes_never_take_the_closed_loop_evaluations_seeds(tmp_path):
    """A reset seed fixes a task's layout: policy ranking and MPC planning must not replay a training episode's."""
    ranking, planning = evaluation_seeds("ranking", 20), evaluation_seeds("planning", 1000)
    assert ranking[0] == 1000 and planning[-1] == 2999 and set(ranking + planning) <= set(EVALUATION_SEEDS)
    with pytest.raises(ValueError, match="planning episodes: expected 0 to 1000, got 1001"):
        evaluation_seeds("planning", 1001)
    with pytest.raises(ValueError, match=r"episode seed 0 with 1001 episodes per task gives reset seeds 1000\.\.1000"):
        generate_episodes(tmp_path / "a", EpisodeConfig(episodes=1001), progress=False)
    with pytest.raises(ValueError, match=r"episode seed -1 .* seeds -1000003\.\.-999004"):
        generate_episodes(tmp_path / "b", EpisodeConfig(episodes=1000, seed=-1), progress=False)
    assert not any(tmp_path.iterdir())  # refused before writing anything
