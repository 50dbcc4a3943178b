"""MPC with the real simulator as the model: restored states, planners on a known optimum, a short episode."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from domains.robotics.planning import (CEMPlanner, EnsembleScorer, MPCSettings, MPPIPlanner, Scorer, SimulatorScorer,
                                      WorldModelScorer, run_mpc, run_policy)
from domains.robotics.policies import RandomPolicy, ZeroPolicy, make_policy
from simulators.robots import make_env


class TargetScorer:
    """A pure-numpy scorer: minus the squared distance of each candidate (N, H, A) to one target (H, A)."""

    def __init__(self, target: np.ndarray):
        self.target = target
        self.seen: list[np.ndarray] = []

    def sync(self, env) -> None:
        pass

    def __call__(self, actions: np.ndarray) -> np.ndarray:
        self.seen.append(actions)
        return -((actions - self.target) ** 2).sum(axis=(1, 2))


def _box(dims: int) -> gym.spaces.Box:
    return gym.spaces.Box(-1.0, 1.0, (dims,), dtype=np.float32)


def test_simulator_scorer_and_cem_prefer_moving_towards_the_goal():
    with make_env("reach-v3", render=False) as env, SimulatorScorer("reach-v3", seed=4) as scorer:
        observation, _ = env.reset(seed=4)
        hand, goal = observation["state"][:3], observation["state"][7:10]
        towards = np.append((goal - hand) / np.linalg.norm(goal - hand), 0.0).astype(np.float32)
        constant = np.stack([np.tile(towards, (3, 1)), np.tile(-towards, (3, 1))])  # (2, H=3, A=4)
        scorer.sync(env)
        returns = scorer(constant)
        assert returns.shape == (2,) and returns[0] > returns[1]

        planner = CEMPlanner(env.action_space, horizon=3, population=8, elites=2, iterations=2, seed=0)
        first = planner.plan(scorer)[0, :3]
        assert first @ towards[:3] > 0.3 * np.linalg.norm(first)  # within ~70 degrees of the goal direction


def test_restored_sim_state_reproduces_rewards_exactly():
    rng = np.random.default_rng(0)
    with make_env("push-v3", render=False) as real, make_env("push-v3", render=False) as copy:
        real.reset(seed=0)
        copy.reset(seed=0)
        for _ in range(10):
            real.step(rng.uniform(-1, 1, 4))
        copy.step(rng.uniform(-1, 1, 4))  # elsewhere, so that restoring has to do the work
        copy.set_sim_state(real.sim_state())
        for _ in range(40):
            action = rng.uniform(-1, 1, 4)
            real_observation, real_reward, *_ = real.step(action)
            copy_observation, copy_reward, *_ = copy.step(action)
            assert copy_reward == real_reward
            np.testing.assert_array_equal(copy_observation["state"], real_observation["state"])


def test_simulator_scorer_matches_the_real_env_and_checks_the_layout():
    actions = np.random.default_rng(1).uniform(-1, 1, (2, 6, 4)).astype(np.float32)
    with make_env("push-v3", render=False) as env, SimulatorScorer("push-v3", seed=2, success_bonus=0.0) as scorer:
        env.reset(seed=2)
        env.step(actions[0, 0])
        scorer.sync(env)
        returns = scorer(actions)
        assert isinstance(scorer, Scorer)
        np.testing.assert_array_equal(scorer(actions), returns)  # each candidate starts from the synced state
        assert returns[1] == sum(env.step(action)[1] for action in actions[1])

        env.reset(seed=3)
        with pytest.raises(ValueError, match="seed=2"):
            scorer.sync(env)
        with pytest.raises(ValueError, match="shape"):
            scorer(actions[0])


def test_goal_objective_prefers_pushing_the_object_to_the_goal():
    from simulators.robots import task_goal

    with make_env("push-v3", render=False) as env, \
            SimulatorScorer("push-v3", seed=1, success_bonus=0.0, objective="goal") as scorer:
        observation, _ = env.reset(seed=1)
        tcp_to_object = observation["state"][4:7] - (observation["state"][:3] + [0, 0, -0.045])
        towards = np.append(tcp_to_object / np.linalg.norm(tcp_to_object), -1.0).astype(np.float32)
        candidates = np.stack([np.tile(towards, (4, 1)), np.tile(-towards, (4, 1))])  # (2, H=4, A=4)
        scorer.sync(env)
        returns = scorer(candidates)
        states = []
        for action in candidates[0]:
            states.append(env.step(action)[0]["state"])
    assert returns[0] > returns[1]
    assert returns[0] == pytest.approx(-task_goal("push-v3").distance(np.stack(states)).sum())
    with pytest.raises(ValueError, match="objective must be one of"):
        SimulatorScorer("push-v3", seed=1, objective="speed")
    with pytest.raises(ValueError, match="no state goal for 'Reacher-v5'"):
        SimulatorScorer("Reacher-v5", seed=1, objective="goal")


@pytest.mark.parametrize("planner_class", [CEMPlanner, MPPIPlanner])
def test_planner_converges_to_the_optimum_of_a_toy_scorer(planner_class):
    target = np.random.default_rng(0).uniform(-0.8, 0.8, (6, 2)).astype(np.float32)
    options = {"elites": 8} if planner_class is CEMPlanner else {"temperature": 0.2, "init_std": 0.3}
    planner = planner_class(_box(2), horizon=6, population=64, iterations=12, seed=0, **options)
    plan = planner.plan(TargetScorer(target))
    assert plan.shape == (6, 2) and plan.dtype == np.float32
    np.testing.assert_allclose(plan, target, atol=0.15)  # from zeros, up to 0.8 away

    # Warm start: the next plan's first candidate is the last mean advanced by the executed steps.
    mean, scorer = planner.mean.copy(), TargetScorer(target)
    planner.plan(scorer, executed=2)
    np.testing.assert_array_equal(scorer.seen[0][0], np.concatenate([mean[2:], mean[-1:], mean[-1:]]))
    planner.reset()
    planner.plan(scorer)
    np.testing.assert_array_equal(scorer.seen[-planner.iterations][0], np.zeros((6, 2)))


def test_cem_executes_the_best_candidate_or_the_elites_mean():
    target = np.full((3, 2), 0.5, np.float32)
    plans = {}
    for execute in ("best", "mean"):
        planner = CEMPlanner(_box(2), horizon=3, population=16, elites=4, iterations=2, seed=0, execute=execute)
        scorer = TargetScorer(target)
        plans[execute] = planner.plan(scorer)
        seen = np.concatenate(scorer.seen)
        if execute == "best":  # the highest-scoring candidate of all it evaluated
            np.testing.assert_array_equal(plans["best"], seen[np.argmax(scorer(seen))])
        else:  # the refitted mean: not itself a candidate
            np.testing.assert_array_equal(plans["mean"], planner.mean)
            assert not any(np.array_equal(plans["mean"], c) for c in seen)
    assert plans["mean"].dtype == np.float32 and not np.array_equal(plans["best"], plans["mean"])


class FixedScorer:
    """A scorer that returns the same (N,) returns for any candidates and counts its syncs."""

    def __init__(self, returns: list[float]):
        self.returns, self.synced, self.seen = np.asarray(returns), 0, []

    def sync(self, env) -> None:
        self.synced += 1

    def __call__(self, actions: np.ndarray) -> np.ndarray:
        self.seen.append(actions)
        return self.returns


def test_a_pessimistic_ensemble_prefers_the_plan_its_members_agree_on():
    # Two models agree on candidate 0; one of them over-rates candidate 1.
    members = [FixedScorer([-1.0, 0.0]), FixedScorer([-1.0, -3.0])]
    candidates = np.zeros((2, 3, 1), np.float32)  # (N, H, A)
    ensemble = EnsembleScorer(members, pessimism=1.0)
    assert isinstance(ensemble, Scorer)
    ensemble.sync(env=None)
    assert [member.synced for member in members] == [1, 1]
    np.testing.assert_allclose(ensemble(candidates), [-1.0, -3.0])  # two members, pessimism 1: their minimum
    assert all(len(member.seen) == 1 and member.seen[0] is candidates for member in members)
    np.testing.assert_allclose(EnsembleScorer(members, pessimism=0.0)(candidates), [-1.0, -1.5])  # their mean
    with pytest.raises(ValueError, match=">= 2 scorers"):
        EnsembleScorer(members[:1])
    with pytest.raises(ValueError, match="pessimism must be >= 0"):
        EnsembleScorer(members, pessimism=-1.0)

    # MPCSettings builds the world-model scorer: one model alone, several as a pessimistic ensemble.
    settings = MPCSettings(pessimism=0.5)
    assert isinstance(settings.scorer(["model"], "push-v3"), WorldModelScorer)
    ensemble = settings.scorer(["model a", "model b"], "push-v3")
    assert isinstance(ensemble, EnsembleScorer) and ensemble.pessimism == 0.5
    assert [member.world_model for member in ensemble.scorers] == ["model a", "model b"]
    assert all(member.objective.name == "goal" for member in ensemble.scorers)
    with pytest.raises(ValueError, match="world_models is empty"):
        settings.scorer([], "push-v3")
    with pytest.raises(ValueError, match="pessimism must be >= 0"):
        MPCSettings(pessimism=-0.1)


def test_mpc_with_the_simulator_reaches_the_goal_where_baselines_do_not():
    with make_env("reach-v3", action_repeat=2, render=False) as env, \
            SimulatorScorer("reach-v3", seed=0, action_repeat=2) as scorer:
        planner = CEMPlanner(env.action_space, horizon=5, population=32, elites=4, iterations=2, seed=0)
        result = run_mpc(env, planner, scorer, seed=0, max_steps=30)
        assert result["success"] and result["steps_to_success"] == result["steps"] <= 30

        for policy in (RandomPolicy(env.action_space), ZeroPolicy(env.action_space)):
            baseline = run_policy(env, policy, seed=0, max_steps=30, frames=True)
            assert not baseline["success"] and baseline["steps_to_success"] is None and baseline["steps"] == 30
            assert baseline["frames"].shape == (31, 64, 64, 3)
            assert baseline["return"] < result["return"]


def test_the_planner_policy_collects_successful_episodes_in_worker_processes(tmp_path):
    from domains.robotics.episodes import EpisodeConfig, generate_episodes, load_episodes, read_manifest

    config = EpisodeConfig(tasks=["reach-v3"], episodes=2, steps=30, image_size=32, policies={"planner:0.1": 1})
    generate_episodes(tmp_path, config, workers=2, progress=False)  # spawned workers, each with its simulator copy
    assert all(entry["success"] for entry in read_manifest(tmp_path)["episodes"])
    first = load_episodes(tmp_path)[0]
    with make_env("reach-v3", 32, action_repeat=2, render=False) as env:  # same seed, same episode
        policy = make_policy("planner:0.1", "reach-v3", env.action_space, env=env)
        observation, _ = env.reset(seed=first.seed)
        policy.reset(first.seed)
        np.testing.assert_allclose(policy(observation), first.actions[0], atol=1e-6)
        policy.close()


def test_the_planner_policy_needs_the_real_simulator():
    with make_env("reach-v3", render=False) as env:
        with pytest.raises(ValueError, match="pass env="):
            make_policy("planner", "reach-v3", env.action_space)
        with pytest.raises(ValueError, match="no physics state to copy"):
            make_policy("planner", "reach-v3", env.action_space, env=object())


def test_mpc_settings_are_the_experiments_and_refuse_bad_values():
    from pathlib import Path

    import yaml

    config = yaml.safe_load((Path(__file__).parents[3] / "experiments" / "robotics_metaworld.yaml").read_text())
    assert MPCSettings(**config["planning"]["mpc"]) == MPCSettings()  # the CLI's defaults are the experiment's settings
    assert MPCSettings().record()["method"] == "CEM"
    with make_env("reach-v3", render=False) as env:
        planner = MPCSettings(horizon=3, population=8, elites=2).planner(env.action_space, seed=0)
        assert (planner.horizon, planner.population, planner.elites) == (3, 8, 2)
    with pytest.raises(ValueError, match="objective must be one of"):
        MPCSettings(objective="distance")
    with pytest.raises(ValueError, match="execute must be 'best' or 'mean'"):
        MPCSettings(execute="median")
    with pytest.raises(ValueError, match="replan_every must be in"):
        MPCSettings(horizon=2, replan_every=3)
