"""Policies that act on `RobotEnv` / `WorldModelEnv` observations `{"image", "state"}`.

Every policy is a callable `policy(observation) -> action (A,)` with `reset(seed)` called at the
start of each episode, so the same policy runs in the real simulator and in the world model.

    expert      Meta-World's scripted expert (reads the 10-number state), plus Gaussian noise
    perturbed   the expert, interrupted by bursts of random actions
    random      uniform random actions
    broken      the expert with its x and y commands swapped and negated: moves with purpose, fails
    zero        no motion (gripper command 0)
    planner     CEM model-predictive control with a copy of the real simulator as its model (the oracle
                planner of `domains.robotics.planning`), plus Gaussian noise; it needs the real env
    wm-planner  the same controller with a world model as its model (the experiment's MPC settings): its
                episodes in the real env are on-policy data for the world model (DAgger-style), the
                states where its imagination misleads it

`make_policy("expert:0.3", task, action_space)` parses such a spec (noise after the colon);
`make_policy("planner:0.1", task, env.action_space, env=env)` for the planner, and
`make_policy("wm-planner", task, env.action_space, env=env, world_model=model)` for the world-model one.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["KINDS", "Policy", "ExpertPolicy", "PerturbedPolicy", "RandomPolicy", "BrokenPolicy", "ZeroPolicy",
           "PlannerPolicy", "make_policy", "has_expert"]

KINDS = ("expert", "perturbed", "random", "broken", "zero", "planner", "wm-planner")
_EXPERTS = {
    "push-v3": "SawyerPushV3Policy",
    "reach-v3": "SawyerReachV3Policy",
    "drawer-open-v3": "SawyerDrawerOpenV3Policy",
    "button-press-topdown-v3": "SawyerButtonPressTopdownV3Policy",
    "door-open-v3": "SawyerDoorOpenV3Policy",
}


def has_expert(task: str) -> bool:
    return task in _EXPERTS


class Policy:
    """Base class: `__call__(observation) -> action`, `reset(seed)`, `close()`, a `name` for reports, and
    `reads_images` (False for every policy here: they read the state)."""

    name = "policy"
    reads_images = False  # whether __call__ reads observation["image"] (a learned simulator then decodes frames)

    def __init__(self, action_space):
        self.low = np.asarray(action_space.low, dtype=np.float32)
        self.high = np.asarray(action_space.high, dtype=np.float32)
        self.rng = np.random.default_rng(0)

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, observation: dict) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the policy holds (a planner's simulator copy); a no-op for most policies."""

    def _clip(self, action: np.ndarray) -> np.ndarray:
        return np.clip(action, self.low, self.high).astype(np.float32)


class ExpertPolicy(Policy):
    """Meta-World's scripted expert on the observation's state (10,), plus N(0, noise^2) per dimension."""

    def __init__(self, task: str, action_space, noise: float = 0.0):
        super().__init__(action_space)
        if task not in _EXPERTS:
            raise ValueError(f"no scripted expert for {task!r}; experts exist for {', '.join(_EXPERTS)}")
        import metaworld.policies

        self.expert = getattr(metaworld.policies, _EXPERTS[task])()
        self.noise = noise
        self.name = f"expert:{noise:g}"

    def expert_action(self, state: np.ndarray) -> np.ndarray:
        full = np.zeros(39, dtype=np.float64)  # Meta-World's observation layout; experts read these slots
        full[:7], full[-3:] = state[:7], state[7:10]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Constant(s) may be too high": actions are clipped anyway
            return self._clip(self.expert.get_action(full))

    def __call__(self, observation: dict) -> np.ndarray:
        action = self.expert_action(observation["state"])
        if self.noise > 0:
            action = action + self.rng.normal(0.0, self.noise, size=action.shape)
        return self._clip(action)


class PerturbedPolicy(ExpertPolicy):
    """The noisy expert, but each step starts a burst of 3-8 random actions with probability `burst`."""

    def __init__(self, task: str, action_space, noise: float = 0.1, burst: float = 0.08):
        super().__init__(task, action_space, noise)
        self.burst = burst
        self.remaining = 0
        self.name = f"perturbed:{noise:g}"

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.remaining = 0

    def __call__(self, observation: dict) -> np.ndarray:
        if self.remaining == 0 and self.rng.random() < self.burst:
            self.remaining = int(self.rng.integers(3, 9))
        if self.remaining > 0:
            self.remaining -= 1
            return self._clip(self.rng.uniform(self.low, self.high))
        return super().__call__(observation)


class RandomPolicy(Policy):
    name = "random"

    def __call__(self, observation: dict) -> np.ndarray:
        return self._clip(self.rng.uniform(self.low, self.high))


class BrokenPolicy(ExpertPolicy):
    """The expert with x and y swapped and negated: purposeful motion in the wrong direction."""

    def __init__(self, task: str, action_space, noise: float = 0.0):
        super().__init__(task, action_space, noise)
        self.name = f"broken:{noise:g}"

    def __call__(self, observation: dict) -> np.ndarray:
        action = super().__call__(observation)
        action[0], action[1] = -action[1], -action[0]
        return action


class ZeroPolicy(Policy):
    name = "zero"

    def __call__(self, observation: dict) -> np.ndarray:
        return self._clip(np.zeros_like(self.low))


class PlannerPolicy(Policy):
    """A CEM model-predictive controller as a data-collecting policy, each action plus N(0, noise^2) per dimension.

    Without `world_model` it is the oracle planner: scored in a copy of the real simulator (`SimulatorScorer`),
    with `settings` (`MPCSettings`; default horizon 8, replanning every 4, executing the best candidate, the goal
    objective: the settings the experiment's planner episodes were collected with). Its episodes show what the
    planner's own kind of actions does to the objects, the contacts a world-model planner must imagine right.
    It reads the physics state of `env`, the env it acts in (reset with the episode's seed before
    `reset(seed)`), not the observation; `close()` frees its copy.

    With `world_model` (a `domains.robotics.world_model.WorldModel`) it scores by imagination
    (`WorldModelScorer`; default settings: `MPCSettings()`, the experiment's MPC): world-model MPC itself, whose
    episodes show where its imagination misleads it.
    """

    def __init__(self, task: str, env, noise: float = 0.0, settings=None, world_model=None):
        from .planning import MPCSettings

        if world_model is None and not callable(getattr(env, "sim_state", None)):
            raise ValueError(f"the planner policy plans in a copy of the real simulator; {type(env).__name__} "
                             "has no physics state to copy (use it in a simulators.robots env)")
        super().__init__(env.action_space)
        self.task, self.env, self.noise = task, env, noise
        if world_model is None:
            self.settings = settings or MPCSettings(horizon=8, replan_every=4, execute="best")
            self.scorer, self.name = None, f"planner:{noise:g}"
        else:
            self.settings = settings or MPCSettings()
            self.scorer = self.settings.scorer([world_model], task)
            self.name = f"wm-planner:{noise:g}"
        self.world_model = world_model
        self.planner = None
        self.plan: list[np.ndarray] = []

    def reset(self, seed: int | None = None) -> None:
        from .planning import SimulatorScorer

        super().reset(seed)
        self.planner, self.plan = self.settings.planner(self.env.action_space, seed), []
        if self.world_model is not None:
            return
        if self.scorer is None:
            self.scorer = SimulatorScorer(self.task, seed, self.env.action_repeat, objective=self.settings.objective)
        else:
            self.scorer.reset(seed)

    def __call__(self, observation: dict) -> np.ndarray:
        if self.planner is None:
            raise RuntimeError("call reset(seed) (after resetting the env with that seed) before acting")
        if not self.plan:
            from .planning import replan

            self.plan = list(replan(self.env, self.planner, self.scorer, self.settings.replan_every))
        action = self.plan.pop(0)
        if self.noise > 0:
            action = action + self.rng.normal(0.0, self.noise, size=action.shape)
        return self._clip(action)

    def close(self) -> None:
        if self.world_model is None and self.scorer is not None:
            self.scorer.close()
            self.scorer = None


def make_policy(spec: str, task: str, action_space, env=None, world_model=None) -> Policy:
    """Build a policy from "kind" or "kind:noise", e.g. "expert:0.3", "random", "broken", "planner:0.1";
    the planners need `env`, the real simulator they act in, and "wm-planner" also `world_model`."""
    kind, _, value = spec.partition(":")
    try:
        noise = float(value) if value else None
    except ValueError:
        raise ValueError(f"policy spec {spec!r}: the part after ':' must be a number (the noise std)") from None
    if kind == "expert":
        return ExpertPolicy(task, action_space, noise or 0.0)
    if kind == "perturbed":
        return PerturbedPolicy(task, action_space, 0.1 if noise is None else noise)
    if kind == "broken":
        return BrokenPolicy(task, action_space, noise or 0.0)
    if kind == "random":
        return RandomPolicy(action_space)
    if kind == "zero":
        return ZeroPolicy(action_space)
    if kind == "planner":
        if env is None:
            raise ValueError(f"policy {spec!r} plans in a copy of the real simulator and runs only there: "
                             "pass env= (the simulators.robots env it acts in)")
        return PlannerPolicy(task, env, noise or 0.0)
    if kind == "wm-planner":
        if env is None or world_model is None:
            raise ValueError(f"policy {spec!r} plans in a world model and acts in the real simulator: pass env= "
                             "(the simulators.robots env) and world_model= (for episodes: EpisodeConfig.world_model)")
        return PlannerPolicy(task, env, noise or 0.0, world_model=world_model)
    raise ValueError(f"unknown policy {spec!r}; kinds are {', '.join(KINDS)} (optionally 'kind:noise')")
