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
    with make_env("push-v3", world_model.image_size) as env:
        np.testing.assert_array_equal(observations[1]["image"], env.reset(seed=2)[0]["image"])
    observations, rewards, success = simulator.step(np.zeros((2, 4), np.float32))
    assert len(observations) == 2 and rewards.shape == success.shape == (2,)
    with pytest.raises(ValueError, match=r"actions must have shape \(2, 4\)"):
        simulator.step(np.zeros((3, 4), np.float32))
    simulator.close()


def test_states_only_simulator_imagines_the_same_without_decoding(world_model, monkeypatch):
    actions = np.random.default_rng(0).uniform(-1, 1, (3, 2, 4)).astype(np.float32)
    runs = {}
    for images in (True, False):
        simulator = LearnedSimulator(world_model, "push-v3", images=images)
        steps = [simulator.reset([1, 2])] + [simulator.step(a) for a in actions]
        simulator.close()
        runs[images] = steps
    for with_images, states_only in zip(runs[True][1:], runs[False][1:]):
        for a, b in zip(with_images[0], states_only[0]):
            assert set(a) == {"image", "state"} and set(b) == {"state"}
            np.testing.assert_array_equal(a["state"], b["state"])
        np.testing.assert_array_equal(with_images[1], states_only[1])
        np.testing.assert_array_equal(with_images[2], states_only[2])

    def no_decoding(*args, **kwargs):
        raise AssertionError("a states-only simulator decoded frames")

    monkeypatch.setattr(world_model, "decode_frames", no_decoding)
    simulator = LearnedSimulator(world_model, "push-v3", images=False)
    simulator.reset([3])
    simulator.step(actions[0][:1])
    simulator.close()
    with pytest.raises(ValueError, match="frames or their codes"):
        world_model.prompt("push-v3", None, np.zeros((1, 10)), np.zeros(1), np.zeros(1, bool), np.zeros((0, 4)))


def test_policies_run_in_the_world_model_and_rankings_correlate(world_model):
    from domains.robotics.closed_loop import imagined_success, rank_policies

    imagined = imagined_success(world_model, "push-v3", ["expert:0", "random"], [1, 2], max_steps=2, action_repeat=2,
                                progress=False)
    assert set(imagined) == {"expert:0", "random"}
    assert all(len(v["success"]) == len(v["return"]) == len(v["goal_success"]) == 2 for v in imagined.values())

    def runs(success, returns):
        return {"success": success, "return": returns}

    ranking = rank_policies({"a": runs([True, True], [3, 5]), "b": runs([True, False], [1, 2]),
                             "c": runs([False, False], [0, 0])},
                            {"a": runs([True, False], [9, 9]), "b": runs([False, False], [5, 6]),
                             "c": runs([False, False], [6, 7])})
    assert ranking["real_success"] == [1.0, 0.5, 0.0] and ranking["real_return"] == [4.0, 1.5, 0.0]
    assert ranking["success_spearman"] == pytest.approx(0.866, abs=1e-3)
    assert ranking["return_spearman"] == pytest.approx(0.5)  # ranks (3, 2, 1) vs (3, 1, 2)
    with_goal = rank_policies({"a": runs([True], [1]), "b": runs([False], [2])},
                              {"a": runs([False], [1]) | {"goal_success": [True]},
                               "b": runs([False], [2]) | {"goal_success": [False]}})
    assert with_goal["imagined_goal_success"] == [1.0, 0.0] and with_goal["goal_success_spearman"] == pytest.approx(1.0)
    assert with_goal["success_spearman"] is None
    constant = rank_policies({"a": runs([True], [1]), "b": runs([True], [2])}, {"a": runs([True], [1]), "b": runs([False], [2])})
    assert constant["success_spearman"] is None and constant["return_spearman"] == pytest.approx(1.0)


def test_world_model_scorer_rates_candidate_plans(world_model):
    from domains.robotics.planning import CEMPlanner, WorldModelScorer
    from simulators.robots import make_env

    scorer = WorldModelScorer(world_model, "push-v3", batch_size=3)
    with make_env("push-v3", world_model.image_size) as env:
        env.reset(seed=0)
        scorer.sync(env)
        returns = scorer(np.zeros((5, 2, 4), np.float32))
        plan = CEMPlanner(env.action_space, horizon=2, population=4, elites=2, iterations=1).plan(scorer)
    assert returns.shape == (5,) and np.isfinite(returns).all()
    assert np.allclose(returns, returns[0])  # identical candidates, greedy decoding: identical predictions
    assert plan.shape == (2, 4)


def test_a_stopped_planning_benchmark_resumes_after_its_last_seed(push_run, tmp_path, monkeypatch):
    import domains.robotics.planning as planning
    from domains.robotics.closed_loop import planning_benchmark
    from domains.robotics.world_model import WorldModel

    world_model = WorldModel.load(push_run[0] / "final")
    settings = planning.MPCSettings(horizon=1, population=2, elites=2, iterations=1)

    def benchmark(stages) -> dict:
        results = planning_benchmark(world_model, "push-v3", [3, 4], 2, 2, settings, progress=False, stages=stages)
        for name in ("world_model_mpc", "oracle_mpc", "random"):
            assert results[name].pop("seconds_per_episode") > 0
        return results

    whole = benchmark(None)
    assert benchmark(tmp_path) == whole
    (tmp_path / "seed_4.stage.pt").unlink()  # stopped during the last seed
    planned, run_mpc = [], planning.run_mpc
    monkeypatch.setattr(planning, "run_mpc", lambda *args, **kwargs: planned.append(args[3]) or run_mpc(*args, **kwargs))
    assert benchmark(tmp_path) == whole and planned == [4, 4]  # its two planners alone run again


def test_a_stopped_policy_ranking_resumes_after_its_last_policy(push_run, tmp_path, monkeypatch):
    import domains.robotics.closed_loop as closed_loop
    from domains.robotics.world_model import WorldModel

    world_model = WorldModel.load(push_run[0] / "final")

    def ranking(stages) -> dict:
        return closed_loop.policy_ranking(world_model, "push-v3", ["expert:0", "random"], [3, 4], 2, 2,
                                          progress=False, stages=stages)

    whole = ranking(None)
    assert whole["seeds"] == [3, 4] and whole["policies"] == ["expert:0", "random"]
    assert ranking(tmp_path) == whole
    for stage in ("real_random", "imagined"):  # stopped during the second policy's real episodes
        (tmp_path / f"{stage}.stage.pt").unlink()
    ran, real_success = [], closed_loop.real_success
    monkeypatch.setattr(closed_loop, "real_success",
                        lambda task, specs, *args, **kwargs: ran.extend(specs) or real_success(task, specs, *args, **kwargs))
    assert ranking(tmp_path) == whole and ran == ["random"]  # the first policy's episodes are not run again
