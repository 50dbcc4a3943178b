"""Model-predictive control for `RobotEnv`: sampling planners, scorers that rate action sequences, episode runners.

A planner (`CEMPlanner`, `MPPIPlanner`) proposes candidate action sequences `(N, H, A)` and asks a `Scorer`
for their returns `(N,)`; the scorer is the model, and the planner never sees which one it is. The
`SimulatorScorer` rolls the candidates out in a copy of the real simulator (an oracle: the upper bound a
learned world model can reach); a world-model scorer only has to implement the same two methods, and an
`EnsembleScorer` scores with several models at once, pessimistically where they disagree.

Both score a rollout by one `objective`: "reward", the summed (true or predicted) rewards plus a bonus if
any step succeeds, or "goal", minus the summed `TaskGoal.distance` of the (true or imagined) states plus
the bonus if any state passes the task's success test (Visual Foresight's cost on predicted positions:
it needs only the states to be right, not the reward's fine steps, which 32 reward bins cannot carry).

`run_mpc` plans, executes the first actions of each plan in the real env and replans; `run_policy` runs a
baseline policy from `domains.robotics.policies` with the same bookkeeping, so their results compare.

    with make_env("reach-v3", action_repeat=2) as env, SimulatorScorer("reach-v3", seed=0, action_repeat=2) as scorer:
        planner = CEMPlanner(env.action_space, horizon=5, population=32, iterations=2)
        result = run_mpc(env, planner, scorer, seed=0)  # {"success", "steps_to_success", "return", "steps"}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from simulators.robots import RobotEnv, make_env, task_goal

__all__ = ["OBJECTIVES", "Objective", "Scorer", "SimulatorScorer", "WorldModelScorer", "EnsembleScorer",
           "CEMPlanner", "MPPIPlanner", "MPCSettings", "replan", "run_mpc", "run_policy"]

OBJECTIVES = ("reward", "goal")


def _check(objective: str | None = None, replan_every: int | None = None, horizon: int | None = None,
           pessimism: float | None = None, execute: str | None = None) -> None:
    """The checks an objective name, a replanning interval (in [1, horizon]), an ensemble's pessimism (>= 0)
    and CEM's executed plan ("best" or "mean") must pass, in one place."""
    if execute is not None and execute not in ("best", "mean"):
        raise ValueError(f"execute must be 'best' or 'mean', got {execute!r}")
    if pessimism is not None and pessimism < 0:
        raise ValueError(f"pessimism must be >= 0, got {pessimism}")
    if objective is not None and objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if replan_every is not None and not 1 <= replan_every <= horizon:
        raise ValueError(f"replan_every must be in [1, horizon={horizon}], got {replan_every}")


class Objective:
    """How a scorer turns N rollouts of H steps into (N,) returns: "reward" or "goal" (module docstring).

    Built once per scorer (the name checked, the task's `TaskGoal` looked up); `returns(rewards (N, H),
    success (N, H) bool, states (N, H, S))` -> (N,) float64. Steps after a rollout ended must repeat its
    last state and carry zero reward.
    """

    def __init__(self, name: str, task: str, success_bonus: float):
        _check(objective=name)
        self.name, self.success_bonus = name, success_bonus
        self.goal = task_goal(task) if name == "goal" else None

    def returns(self, rewards: np.ndarray, success: np.ndarray, states: np.ndarray) -> np.ndarray:
        if self.goal is None:
            return rewards.sum(1) + self.success_bonus * success.any(1)
        return -self.goal.distance(states).sum(1) + self.success_bonus * self.goal.success(states).any(1)


@runtime_checkable
class Scorer(Protocol):
    """What a planner asks: the return of each candidate action sequence from the env's current state.

    `sync(env)` takes the current state (or context frames) from the real env before each plan;
    `scorer(actions)` with actions float32 (N, H, A) returns (N,) floats, higher is better (see
    `Objective`).
    """

    def sync(self, env: RobotEnv) -> None: ...

    def __call__(self, actions: np.ndarray) -> np.ndarray: ...


class SimulatorScorer:
    """The oracle scorer: rolls each candidate out in its own copy of the real simulator.

    It holds a reward-only `make_env(task, action_repeat=..., render=False)` reset with `seed`: the
    layout (object and goal positions) is not part of the physics state, so the real env must be reset
    with the same seed. `sync(env)` copies `env.sim_state()`; `__call__(actions)` with actions (N, H, A)
    restores that state before each candidate and returns (N,) floats under `objective` (see
    `Objective`). A rollout that reaches the episode's step limit stops there.
    """

    def __init__(self, task: str, seed: int, action_repeat: int = 1, success_bonus: float = 10.0,
                 objective: str = "reward"):
        self.objective = Objective(objective, task, success_bonus)
        self.env = make_env(task, action_repeat=action_repeat, render=False)
        self.reset(seed)

    def reset(self, seed: int) -> None:
        """Reset the scorer's simulator with `seed`, the seed of the real env's next episode (its layout)."""
        self.env.reset(seed=seed)
        self.seed = seed
        self._state = None

    def sync(self, env: RobotEnv) -> None:
        """Copy the physics state of `env` (same task, action repeat and reset seed) as the rollouts' start."""
        if (env.task, env.action_repeat) != (self.env.task, self.env.action_repeat):
            raise ValueError(f"scorer simulates {self.env.task} with action_repeat={self.env.action_repeat}, "
                             f"env is {env.task} with action_repeat={env.action_repeat}")
        self._state = env.sim_state()
        if env.is_metaworld and not np.array_equal(env._env._target_pos, self.env._env._target_pos):
            raise ValueError(f"the env's goal differs from the scorer's: reset the env with seed={self.seed}, "
                             "the scorer's seed (Meta-World layouts are not part of the physics state)")

    def __call__(self, actions: np.ndarray) -> np.ndarray:
        """Returns (N,) float64 for actions (N, H, A): rewards summed over H steps, plus the success bonus."""
        if self._state is None:
            raise RuntimeError("call sync(env) before scoring")
        actions = np.asarray(actions, dtype=np.float32)
        if actions.ndim != 3 or actions.shape[2:] != self.env.action_space.shape:
            raise ValueError(f"actions must have shape (N, H, {self.env.action_space.shape[0]}), got {actions.shape}")
        N, H, _ = actions.shape
        rewards, success = np.zeros((N, H)), np.zeros((N, H), dtype=bool)
        states = np.zeros((N, H, self.env.observation_space["state"].shape[0]))
        for i, sequence in enumerate(actions):
            self.env.set_sim_state(self._state)
            for h, action in enumerate(sequence):
                observation, rewards[i, h], terminated, truncated, info = self.env.step(action)
                states[i, h], success[i, h] = observation["state"], info["success"]
                if terminated or truncated:
                    states[i, h + 1:] = states[i, h]
                    break
        return self.objective.returns(rewards, success, states)

    def close(self) -> None:
        self.env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class WorldModelScorer:
    """Scores candidates by imagining them in a world model (`domains.robotics.world_model.WorldModel`).

    `sync(env)` takes the real env's current observation (frame, state, last reward and success) as
    the prompt; `__call__(actions)` imagines every candidate (N, H, A) in batches of `batch_size` and
    returns (N,) floats under `objective` on the imagined rewards, success and states (`Objective`).
    One observation of context: Meta-World's position-controlled arm is close to Markov in its frame and state.
    """

    def __init__(self, world_model, task: str, success_bonus: float = 10.0, batch_size: int = 64,
                 objective: str = "reward"):
        self.objective = Objective(objective, task, success_bonus)
        self.world_model, self.task, self.batch_size = world_model, task, batch_size
        self._prompt = None

    def sync(self, env: RobotEnv) -> None:
        observation = env.observation()
        self._prompt = self.world_model.prompt(
            self.task, observation["image"][None], observation["state"][None],
            np.array([env.last_reward], np.float32), np.array([env.last_success]),
            np.zeros((0, env.action_space.shape[0]), np.float32))

    def __call__(self, actions: np.ndarray) -> np.ndarray:
        if self._prompt is None:
            raise RuntimeError("call sync(env) before scoring")
        returns = []
        for lo in range(0, len(actions), self.batch_size):
            chunk = actions[lo:lo + self.batch_size]
            imagined = self.world_model.imagine([self._prompt] * len(chunk), chunk, decode=False)
            returns.append(self.objective.returns(imagined.rewards.numpy(), imagined.success.numpy(),
                                                  imagined.states.numpy()))
        return np.concatenate(returns).astype(np.float64)


class EnsembleScorer:
    """A pessimistic ensemble: scores each candidate with every member and returns mean - `pessimism` * std.

    Planning maximizes over candidates, so it seeks out the errors of one imperfect model, the plans that
    model over-rates (the winner's curse); members that disagree about a plan lower its score (the
    lower-confidence bound of PETS/MOPO-style model-based control). With two members and `pessimism=1`
    the score is the lower of their two returns. `sync(env)` syncs every member; `__call__(actions)` with
    actions (N, H, A) returns (N,) float64.
    """

    def __init__(self, scorers: list[Scorer], pessimism: float = 1.0):
        if len(scorers) < 2:
            raise ValueError(f"an ensemble needs >= 2 scorers, got {len(scorers)}")
        _check(pessimism=pessimism)
        self.scorers, self.pessimism = list(scorers), pessimism

    def sync(self, env: RobotEnv) -> None:
        for scorer in self.scorers:
            scorer.sync(env)

    def __call__(self, actions: np.ndarray) -> np.ndarray:
        returns = np.stack([np.asarray(scorer(actions), dtype=np.float64) for scorer in self.scorers])  # (M, N)
        return returns.mean(0) - self.pessimism * returns.std(0)


class _SamplingPlanner:
    """Shared parts: Gaussian sampling around a mean plan (H, A), clipped to the action box, warm started."""

    def __init__(self, action_space, horizon: int, population: int, iterations: int, init_std: float, seed: int):
        if horizon < 1 or population < 1 or iterations < 1 or init_std <= 0:
            raise ValueError("horizon, population and iterations must be >= 1 and init_std > 0")
        self.low = np.asarray(action_space.low, dtype=np.float32)
        self.high = np.asarray(action_space.high, dtype=np.float32)
        self.horizon, self.population, self.iterations = horizon, population, iterations
        self.init_std = init_std * (self.high - self.low) / 2  # a fraction of each dimension's half-range
        self.rng = np.random.default_rng(seed)
        self.mean: np.ndarray | None = None  # the last plan (H, A), kept for the warm start

    def reset(self) -> None:
        """Forget the previous plan (call at the start of each episode)."""
        self.mean = None

    def _initial_mean(self, executed: int) -> np.ndarray:
        """(H, A): the previous plan advanced by the `executed` steps taken since, its last action repeated."""
        if self.mean is None:
            return np.broadcast_to((self.low + self.high) / 2, (self.horizon, len(self.low))).copy()
        shift = min(executed, self.horizon - 1)
        return np.concatenate([self.mean[shift:], np.repeat(self.mean[-1:], shift, axis=0)])

    def _sample(self, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """(N, H, A) float32 candidates around `mean`; the first is `mean` itself, so a good plan is kept."""
        noise = self.rng.standard_normal((self.population, *mean.shape)).astype(np.float32)
        noise[0] = 0.0
        return np.clip(mean + std * noise, self.low, self.high).astype(np.float32)


class CEMPlanner(_SamplingPlanner):
    """Cross-entropy method: refit a diagonal Gaussian over (H, A) to the `elites` best of each population.

    `plan(scorer)` returns the best-scoring sequence (H, A) it evaluated, or with `execute="mean"` the mean
    of the last elites (PlaNet's choice: less prone to a lone candidate that a learned model over-rates);
    the refitted mean warm-starts the next call, shifted by the steps executed in between. `init_std` and
    `min_std` are fractions of each action dimension's half-range.
    """

    def __init__(self, action_space, horizon: int = 10, population: int = 64, elites: int = 8, iterations: int = 3,
                 init_std: float = 0.5, min_std: float = 0.05, seed: int = 0, execute: str = "best"):
        super().__init__(action_space, horizon, population, iterations, init_std, seed)
        if not 1 <= elites <= population:
            raise ValueError(f"elites must be in [1, population={population}], got {elites}")
        _check(execute=execute)
        self.elites, self.execute = elites, execute
        self.min_std = min_std * (self.high - self.low) / 2

    def plan(self, scorer: Callable[[np.ndarray], np.ndarray], executed: int = 1) -> np.ndarray:
        """The action sequence (H, A) float32 to execute (the best under `scorer`, or the elites' mean);
        `executed`: steps taken since the last plan."""
        mean, std = self._initial_mean(executed), self.init_std
        best, best_return = None, -np.inf
        for _ in range(self.iterations):
            candidates = self._sample(mean, std)
            returns = np.asarray(scorer(candidates), dtype=np.float64)
            order = np.argsort(returns)[::-1]
            elite = candidates[order[:self.elites]]
            # The elites' std shrinks about 2x per iteration, faster than the mean travels: averaging it
            # with the previous std keeps CEM from stalling short of the optimum.
            mean, std = elite.mean(0), np.maximum((std + elite.std(0)) / 2, self.min_std)
            if returns[order[0]] > best_return:
                best, best_return = candidates[order[0]], returns[order[0]]
        self.mean = mean
        return mean.astype(np.float32) if self.execute == "mean" else best


class MPPIPlanner(_SamplingPlanner):
    """Model-predictive path integral: the plan is the softmax(return / temperature)-weighted mean of the samples.

    The sampling std stays `init_std` (a fraction of the action half-range) in every iteration.
    `temperature` is in units of return: small values approach the best sample, large ones the plain mean.
    `plan(scorer)` returns the weighted mean (H, A), which also warm-starts the next call.
    """

    def __init__(self, action_space, horizon: int = 10, population: int = 64, iterations: int = 3,
                 init_std: float = 0.5, temperature: float = 0.5, seed: int = 0):
        super().__init__(action_space, horizon, population, iterations, init_std, seed)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def plan(self, scorer: Callable[[np.ndarray], np.ndarray], executed: int = 1) -> np.ndarray:
        """The weighted-mean action sequence (H, A) float32; `executed`: steps taken since the last plan."""
        mean = self._initial_mean(executed)
        for _ in range(self.iterations):
            candidates = self._sample(mean, self.init_std)
            returns = np.asarray(scorer(candidates), dtype=np.float64)
            weights = np.exp((returns - returns.max()) / self.temperature)
            mean = np.tensordot(weights / weights.sum(), candidates, axes=1).astype(np.float32)
        self.mean = mean
        return mean


@dataclass(frozen=True)
class MPCSettings:
    """One CEM model-predictive controller: plan `horizon` steps (`population` candidates, `elites` kept,
    `iterations` refits), execute the first `replan_every` actions of the best candidate (`execute="best"`) or of
    the elites' mean ("mean"), score by `objective` (see `Objective`); with several world models, by their mean
    return minus `pessimism` times their std (`EnsembleScorer`).

    The defaults are the robotics experiment's (`experiments/robotics_metaworld.yaml` says why), so the
    CLI, the experiment and the data-collecting planner policy start from one place.
    """

    horizon: int = 4
    population: int = 32
    elites: int = 4
    iterations: int = 2
    replan_every: int = 1
    objective: str = "goal"
    pessimism: float = 1.0
    execute: str = "mean"

    def __post_init__(self):
        _check(self.objective, self.replan_every, self.horizon, self.pessimism, self.execute)

    def planner(self, action_space, seed: int = 0) -> CEMPlanner:
        """A fresh `CEMPlanner` with these settings."""
        return CEMPlanner(action_space, self.horizon, self.population, self.elites, self.iterations, seed=seed,
                          execute=self.execute)

    def scorer(self, world_models: list, task: str) -> WorldModelScorer | EnsembleScorer:
        """The scorer that imagines in `world_models` (`WorldModel`s of the task, each prompted through its own
        tokenizers): a `WorldModelScorer` for one, a pessimistic `EnsembleScorer` for several (e.g. the same
        fine-tuning with different seeds)."""
        scorers = [WorldModelScorer(model, task, objective=self.objective) for model in world_models]
        if not scorers:
            raise ValueError("world_models is empty: give at least one world model to plan in")
        return scorers[0] if len(scorers) == 1 else EnsembleScorer(scorers, self.pessimism)

    def record(self) -> dict:
        """The settings as JSON, for results files."""
        return {"method": "CEM", **asdict(self)}


def _run_episode(env: RobotEnv, seed: int, next_actions: Callable[[dict], np.ndarray], max_steps: int | None,
                 frames: bool) -> dict:
    """Reset `env` with `seed`, execute `next_actions(observation)` chunks (K, A) until success or the step limit."""
    observation, _ = env.reset(seed=seed)
    limit = min(max_steps or env.max_steps, env.max_steps)
    steps, total, success, done = 0, 0.0, False, False
    recorded = [observation["image"]] if frames else None
    while not done:
        for action in next_actions(observation):
            observation, reward, terminated, truncated, info = env.step(action)
            steps, total, success = steps + 1, total + reward, bool(info["success"])
            if frames:
                recorded.append(observation["image"])
            done = success or terminated or truncated or steps >= limit
            if done:
                break
    result = {"success": success, "steps_to_success": steps if success else None, "return": total, "steps": steps}
    if frames:
        result["frames"] = np.stack(recorded)  # (steps + 1, H, W, 3) uint8, the reset frame first
    return result


def run_mpc(env: RobotEnv, planner: CEMPlanner | MPPIPlanner, scorer: Scorer, seed: int, max_steps: int | None = None,
            replan_every: int = 1, frames: bool = False) -> dict:
    """One MPC episode in the real `env` reset with `seed`: sync the scorer, plan, execute `replan_every` actions.

    Stops at the first success, at truncation or after `max_steps` env steps. Returns
    {"success": bool, "steps_to_success": int | None, "return": float, "steps": int} and, with
    `frames=True`, "frames": uint8 (steps + 1, H, W, 3).
    """
    _check(replan_every=replan_every, horizon=planner.horizon)
    planner.reset()
    return _run_episode(env, seed, lambda observation: replan(env, planner, scorer, replan_every), max_steps, frames)


def replan(env: RobotEnv, planner: CEMPlanner | MPPIPlanner, scorer: Scorer, replan_every: int) -> np.ndarray:
    """One MPC step: sync `scorer` with `env`'s current state, plan, and return the plan's first
    `replan_every` actions (K, A) float32 (`replan_every` steps are taken before the next call)."""
    scorer.sync(env)
    return planner.plan(scorer, executed=replan_every)[:replan_every]


def run_policy(env: RobotEnv, policy, seed: int, max_steps: int | None = None, frames: bool = False) -> dict:
    """One episode of a `domains.robotics.policies` policy (`policy(observation) -> (A,)`), reset with `seed`.

    Returns the same dict as `run_mpc`.
    """
    policy.reset(seed)
    return _run_episode(env, seed, lambda observation: [policy(observation)], max_steps, frames)
