import numpy as np
import pytest

from simulators.robots import action_bounds, make_env, task_goal


@pytest.mark.parametrize("task", ["push-v3", "Reacher-v5"])
def test_frames_have_the_right_shape_and_change_under_actions(task):
    with make_env(task, image_size=48) as env:
        observation, _ = env.reset(seed=3)
        assert observation["image"].shape == (48, 48, 3) and observation["image"].dtype == np.uint8
        assert env.observation_space.contains(observation)
        before = observation["image"].copy()
        for _ in range(4):
            observation, reward, terminated, truncated, info = env.step(env.action_space.high)
        assert np.abs(observation["image"].astype(int) - before).sum() > 0
        assert isinstance(reward, float) and "success" in info


@pytest.mark.parametrize("action_repeat, max_steps", [(3, None), (2, 300)])
def test_metaworld_episodes_run_to_their_end_past_its_500_internal_steps(action_repeat, max_steps):
    with make_env("reach-v3", image_size=16, action_repeat=action_repeat, max_steps=max_steps, render=False) as env:
        env.reset(seed=0)
        steps = 0
        for steps in range(1, env.max_steps + 1):  # 167 x 3 = 501 and 300 x 2 = 600 internal steps
            truncated = env.step(np.zeros(env.action_space.shape, np.float32))[3]
        assert truncated and steps == (max_steps or 167)


def test_seeded_resets_repeat_the_layout_and_different_seeds_change_it():
    with make_env("push-v3", image_size=32) as env:
        first = env.reset(seed=5)[0]["state"]
        again = env.reset(seed=5)[0]["state"]
        other = env.reset(seed=6)[0]["state"]
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first[4:], other[4:])  # object and goal positions differ


def test_metaworld_frames_are_the_right_way_up():
    # Raise the hand in one episode, lower it in another: the red arm pixels only the raised hand
    # covers must lie above those only the lowered hand covers.
    def red(image):
        image = image.astype(float)
        return image[..., 0] - np.maximum(image[..., 1], image[..., 2]) > 60

    masks = {}
    with make_env("push-v3", image_size=64) as env:
        for z in (1.0, -1.0):
            env.reset(seed=0)
            for _ in range(15):
                observation = env.step(np.array([0, 0, z, 0], np.float32))[0]
            masks[z] = red(observation["image"])
    raised_rows = np.nonzero(masks[1.0] & ~masks[-1.0])[0]
    lowered_rows = np.nonzero(masks[-1.0] & ~masks[1.0])[0]
    assert raised_rows.mean() + 5 < lowered_rows.mean()


def test_unknown_task_and_wrong_action_dimension_are_clear_errors():
    with pytest.raises(ValueError, match="unknown robot task 'push-v9'"):
        make_env("push-v9")
    with make_env("reach-v3", image_size=32) as env:
        env.reset(seed=0)
        with pytest.raises(ValueError, match=r"action must have shape \(4,\), got \(3,\)"):
            env.step(np.zeros(3))


@pytest.mark.parametrize("task", ["push-v3", "reach-v3", "button-press-topdown-v3"])
def test_task_goal_agrees_with_metaworlds_success_and_shrinks_as_the_expert_works(task):
    from domains.robotics.policies import make_policy

    goal = task_goal(task)
    with make_env(task, render=False) as env:
        expert = make_policy("expert:0", task, env.action_space)
        expert.reset(0)
        observation, _ = env.reset(seed=0)
        start, flags, tests = goal.distance(observation["state"]), [], []
        for _ in range(120):
            observation, _, _, _, info = env.step(expert(observation))
            flags.append(info["success"])
            tests.append(bool(goal.success(observation["state"])))
    assert any(flags) and np.mean(np.equal(flags, tests)) >= 0.95
    assert goal.distance(observation["state"]) < start / 4
    batch = np.stack([observation["state"]] * 6).reshape(2, 3, 10)
    assert goal.success(batch).shape == goal.distance(batch).shape == (2, 3)


def test_task_goal_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="no state goal for 'Reacher-v5'"):
        task_goal("Reacher-v5")
    with pytest.raises(ValueError, match="push-v3: states must have 10 numbers"):
        task_goal("push-v3").success(np.zeros((2, 7)))


def test_action_bounds_hold_each_tasks_box():
    from core.tokenizers.bins import BinTokenizer
    from domains.robotics.world_model import ACTION_BINS

    low, high = action_bounds(["Pusher-v5"])
    np.testing.assert_array_equal(low, -2.0 * np.ones(7))
    np.testing.assert_array_equal(high, 2.0 * np.ones(7))
    np.testing.assert_array_equal(action_bounds(["push-v3", "reach-v3"])[1], np.ones(4))
    bins = BinTokenizer(ACTION_BINS).fit(np.stack([low, high]))  # as the world model's tokenizers fit them
    assert bins.encode(np.ones((1, 7))).tolist() != bins.encode(2 * np.ones((1, 7))).tolist()  # 1 and 2 apart
    with pytest.raises(ValueError, match="different action dimensions"):
        action_bounds(["push-v3", "Pusher-v5"])
