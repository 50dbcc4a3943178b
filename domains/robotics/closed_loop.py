"""Closed-loop evaluation: rank policies in the world model vs the real simulator, and MPC with the world model.

`real_success` / `imagined_success` run each policy for the same seeds in the real env and in a
`LearnedSimulator` (all imagined episodes batched in lockstep); `rank_policies` correlates success
rates and returns across the two (Pearson, Spearman); `policy_ranking` does all three, resumably.
Imagined success is read two ways: the model's own success token, and the task's success test
(`simulators.robots.task_goal`) on the imagined states.
`planning_benchmark` runs MPC whose rollouts are imagined by the world model and whose actions run
in the real env, against the same planner using the real simulator (oracle) and a random policy.
"""

from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

__all__ = ["real_success", "imagined_success", "rank_policies", "policy_ranking", "planning_benchmark",
           "rollout_speed"]


def real_success(task: str, policy_specs: list[str], seeds: list[int], max_steps: int, action_repeat: int,
                 image_size: int = 64, progress: bool = True) -> dict[str, dict[str, list]]:
    """{policy: {"success": [bool per seed], "return": [float per seed]}} in the real simulator."""
    from simulators.robots import make_env

    from .planning import run_policy
    from .policies import make_policy

    results = {}
    with make_env(task, image_size, action_repeat=action_repeat, max_steps=max_steps) as env:
        for spec in tqdm(policy_specs, desc="policies in the simulator", disable=not progress):
            policy = make_policy(spec, task, env.action_space, env=env)
            try:
                runs = [run_policy(env, policy, seed) for seed in seeds]
            finally:
                policy.close()
            results[spec] = {"success": [r["success"] for r in runs], "return": [r["return"] for r in runs]}
    return results


def imagined_success(world_model, task: str, policy_specs: list[str], seeds: list[int], max_steps: int,
                     action_repeat: int, temperature: float = 0.0,
                     progress: bool = True) -> dict[str, dict[str, list]]:
    """{policy: {"success": [...], "return": [...], "goal_success": [...]}} in the world model, every
    (policy, seed) episode imagined in one batch. "success" and "return": the predicted success and
    rewards (as in the real runs, rewards after the first success do not count); "goal_success": the
    task's success test passed by an imagined state (absent for tasks without a `task_goal`).
    temperature: 0 imagines each step's most likely tokens, > 0 samples them (seeded by the first seed)."""
    from simulators.learned import LearnedSimulator
    from simulators.robots import make_env, task_goal

    from .policies import make_policy

    try:
        goal = task_goal(task)
    except ValueError:
        goal = None

    episodes = [(spec, seed) for spec in policy_specs for seed in seeds]
    with make_env(task, render=False) as env:
        policies = [make_policy(spec, task, env.action_space) for spec, _ in episodes]
    succeeded, returns = np.zeros(len(episodes), dtype=bool), np.zeros(len(episodes))
    done, reached = np.zeros(len(episodes), dtype=bool), np.zeros(len(episodes), dtype=bool)
    try:
        # Frames are decoded only if a policy looks at them (the imagined tokens are the same either way).
        with LearnedSimulator(world_model, task, action_repeat, temperature=temperature,
                              images=any(policy.reads_images for policy in policies)) as simulator:
            for policy, (_, seed) in zip(policies, episodes):
                policy.reset(seed)
            observations = simulator.reset([seed for _, seed in episodes])
            for _ in tqdm(range(max_steps), desc="policies in the world model", disable=not progress):
                actions = np.stack([policy(obs) for policy, obs in zip(policies, observations)])
                observations, rewards, success = simulator.step(actions)
                returns += np.where(done, 0.0, rewards)  # like the real runs: nothing counts after success
                succeeded |= success
                done |= success
                if goal is not None:
                    reached |= goal.success(np.stack([obs["state"] for obs in observations]))
    finally:
        for policy in policies:
            policy.close()
    keys = ("success", "return") + (("goal_success",) if goal is not None else ())
    results = {spec: {key: [] for key in keys} for spec in policy_specs}
    for i, (spec, _) in enumerate(episodes):
        results[spec]["success"].append(bool(succeeded[i]))
        results[spec]["return"].append(float(returns[i]))
        if goal is not None:
            results[spec]["goal_success"].append(bool(reached[i]))
    return results


def rank_policies(real: dict[str, dict], imagined: dict[str, dict]) -> dict:
    """Per policy, mean success and mean return in each world, and Pearson / Spearman correlations
    of real vs imagined (None where one side is constant: no ranking to correlate). Where the imagined
    runs have "goal_success", the real success rate is also correlated with it ("goal_success_*")."""
    from scipy import stats

    names = list(real)
    result: dict = {"policies": names}
    pairs = [("success", "success"), ("return", "return")]
    if all("goal_success" in imagined[n] for n in names):
        pairs.append(("success", "goal_success"))
    for real_key, key in pairs:
        a = np.array([np.mean(real[n][real_key]) for n in names], dtype=np.float64)
        b = np.array([np.mean(imagined[n][key]) for n in names], dtype=np.float64)
        result[f"real_{real_key}"], result[f"imagined_{key}"] = a.tolist(), b.tolist()
        constant = np.ptp(a) == 0 or np.ptp(b) == 0
        result[f"{key}_pearson"] = None if constant else float(stats.pearsonr(a, b)[0])
        result[f"{key}_spearman"] = None if constant else float(stats.spearmanr(a, b)[0])
    return result


def policy_ranking(world_model, task: str, policy_specs: list[str], seeds: list[int], max_steps: int,
                   action_repeat: int, progress: bool = True, stages=None) -> dict:
    """`rank_policies` of the policies' `real_success` against their `imagined_success` on the same `seeds`, and
    the seeds. stages: a folder where each policy's real episodes, then the imagined ones (one batch), are kept
    as they finish (`core.stages.Stages`), so that a stopped ranking run again resumes after them (every episode
    is seeded: the same results as an uninterrupted run)."""
    from core.stages import Stages, weights_fingerprint

    run = Stages(stages, lambda: {"world_model": weights_fingerprint(world_model.model), "task": task,
                                  "policies": list(policy_specs), "seeds": list(seeds), "max_steps": max_steps,
                                  "action_repeat": action_repeat})
    real = {spec: run(f"real_{spec}", lambda: real_success(task, [spec], seeds, max_steps, action_repeat,
                                                           world_model.image_size, progress=False)[spec])
            for spec in tqdm(policy_specs, desc="policies in the simulator", disable=not progress)}
    imagined = run("imagined", lambda: imagined_success(world_model, task, policy_specs, seeds, max_steps,
                                                        action_repeat, progress=progress))
    return {**rank_policies(real, imagined), "seeds": list(seeds)}


def planning_benchmark(world_model, task: str, seeds: list[int], max_steps: int, action_repeat: int,
                       settings=None, progress: bool = True, ensemble: list = (), stages=None) -> dict:
    """MPC success over `seeds`: world-model planner, oracle planner (real simulator), random policy.

    Both planners use the same `settings` (`domains.robotics.planning.MPCSettings`, its defaults if None),
    so they differ only in the model that scores their candidates. With `ensemble` (more `WorldModel`s),
    the world-model planner scores with all of them, pessimistically (`MPCSettings.scorer`). stages: a folder
    where each seed's three episodes are kept as they finish (`core.stages.Stages`), so that a stopped benchmark
    run again resumes after the last seed (each episode is seeded: the same results as an uninterrupted run)."""
    from core.stages import Stages, weights_fingerprint
    from simulators.robots import make_env

    from .planning import MPCSettings, SimulatorScorer, run_mpc, run_policy
    from .policies import RandomPolicy

    settings = settings or MPCSettings()
    run = Stages(stages, lambda: {"world_models": [weights_fingerprint(m.model) for m in (world_model, *ensemble)],
                                  "task": task, "max_steps": max_steps, "action_repeat": action_repeat,
                                  "planner": settings.record()})
    names = ("world_model_mpc", "oracle_mpc", "random")

    def episodes(env, seed: int) -> dict:
        """{name: (the episode's result, its seconds)} of the three for one seed."""
        out, started = {}, time.perf_counter()
        imagined = settings.scorer([world_model, *ensemble], task)
        out["world_model_mpc"] = run_mpc(env, settings.planner(env.action_space, seed), imagined, seed,
                                         replan_every=settings.replan_every), time.perf_counter() - started
        started = time.perf_counter()
        with SimulatorScorer(task, seed, action_repeat, objective=settings.objective) as oracle:
            # A planner of its own: the same samples for a seed whatever the world-model planner drew.
            out["oracle_mpc"] = run_mpc(env, settings.planner(env.action_space, seed), oracle, seed,
                                        replan_every=settings.replan_every), time.perf_counter() - started
        started = time.perf_counter()
        out["random"] = run_policy(env, RandomPolicy(env.action_space), seed), time.perf_counter() - started
        return out

    with make_env(task, world_model.image_size, action_repeat=action_repeat, max_steps=max_steps) as env:
        per_seed = [run(f"seed_{seed}", lambda: episodes(env, seed))
                    for seed in tqdm(seeds, desc="MPC episodes", disable=not progress)]
    summary = {}
    for name in names:
        results = [episode[name][0] for episode in per_seed]
        summary[name] = {"success_rate": float(np.mean([r["success"] for r in results])),
                         "successes": [bool(r["success"]) for r in results],
                         "mean_return": float(np.mean([r["return"] for r in results])),
                         "seconds_per_episode": sum(episode[name][1] for episode in per_seed) / len(seeds)}
    return {"seeds": list(seeds), "max_steps": max_steps, "planner": settings.record(),
            "world_models": 1 + len(ensemble), **summary}


def rollout_speed(world_model, task: str, batch: int = 32, horizon: int = 8, action_repeat: int = 2) -> dict:
    """Imagined frames per second (batched, KV cache) next to the real simulator's rendered steps per second."""
    from simulators.robots import make_env

    with make_env(task, world_model.image_size, action_repeat=action_repeat) as env:
        observation, _ = env.reset(seed=0)
        started, steps = time.perf_counter(), 0
        while steps < 100:
            observation, *_ = env.step(env.action_space.sample())
            steps += 1
        real = steps / (time.perf_counter() - started)
        prompt = world_model.prompt(task, observation["image"][None], observation["state"][None],
                                    np.zeros(1, np.float32), np.zeros(1, bool), np.zeros((0, env.action_space.shape[0])))
    actions = np.random.default_rng(0).uniform(-1, 1, (batch, horizon, env.action_space.shape[0])).astype(np.float32)
    started = time.perf_counter()
    world_model.imagine([prompt] * batch, actions)
    imagined = batch * horizon / (time.perf_counter() - started)
    return {"world_model_frames_per_s": imagined, "batch": batch, "horizon": horizon,
            "real_rendered_steps_per_s": real, "real_action_repeat": action_repeat}
