"""MuJoCo robot simulators behind one factory: Meta-World 3 tasks and gymnasium MuJoCo envs.

`make_env("push-v3")` / `make_env("Reacher-v5")` returns a `RobotEnv`, a gymnasium env whose
observation is `{"image": uint8 (H, W, 3), "state": float32 (S,)}`:

- `image`: a headless RGB frame (EGL, shadows and reflections off), the right way up;
- `state`: low-dimensional state. Meta-World: 10 numbers, hand xyz, gripper opening, main object
  xyz, goal xyz (what the scripted experts read); gymnasium envs: their own observation vector.

`render=False` leaves frames black (fast reward-only rollouts). `info` carries `success` (Meta-World's
success flag; gymnasium envs: always False) and the raw reward. Each `step` repeats the action
`action_repeat` times (rewards summed, success if any repeat succeeded). Episodes are seeded:
`reset(seed=s)` gives the same objects and goal for the same `s`. `sim_state()` / `set_sim_state()`
copy the physics state, for planners that use the real simulator as their model. Close envs
explicitly (`close()` or `with make_env(...) as env`).

`task_goal("push-v3")` is the task's goal read off the 10-number state: Meta-World's own success test
(object within 5 cm of the goal, ...) and a distance to it that shrinks as the task progresses, for
judging and planning on states a world model imagines (Visual Foresight's designated-position cost).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["METAWORLD_TASKS", "GYM_TASKS", "TASKS", "RobotEnv", "SimState", "make_env", "action_bounds", "check_task",
           "TaskGoal", "task_goal"]

# The Meta-World tasks this project generates data for (their scripted experts are in
# domains.robotics.policies); any other Meta-World v3 task name works as well.
METAWORLD_TASKS = ("push-v3", "reach-v3", "drawer-open-v3", "button-press-topdown-v3", "door-open-v3")
GYM_TASKS = ("Reacher-v5", "Pusher-v5")
TASKS = METAWORLD_TASKS + GYM_TASKS
# Closer than gymnasium's defaults, so that the arm fills a 64 x 64 frame.
_GYM_CAMERAS = {"Reacher-v5": {"trackbodyid": 0, "distance": 0.75, "elevation": -90.0, "azimuth": 90.0},
                "Pusher-v5": {"trackbodyid": -1, "distance": 1.6, "elevation": -50.0, "azimuth": 90.0,
                              "lookat": np.array([0.2, -0.3, 0.0])}}
METAWORLD_STATE = ("hand_x", "hand_y", "hand_z", "gripper", "object_x", "object_y", "object_z",
                   "goal_x", "goal_y", "goal_z")

_HAND, _OBJECT, _GOAL = slice(0, 3), slice(4, 7), slice(7, 10)
# The fingertips' centre (Meta-World's `tcp_center`) below the hand: a fixed offset, as the 10-number state has
# no finger positions (it is off by up to 6 mm as the gripper moves).
_TCP_OFFSET = np.array([0.0, 0.0, -0.045])

SimState = dict  # {"qpos", "qvel", "mocap_pos", "mocap_quat", "qacc_warmstart", "step", "path_length"}


def _metaworld_names() -> tuple[str, ...]:
    import metaworld

    return tuple(metaworld.ALL_V3_ENVIRONMENTS)


def check_task(task: str) -> str:
    """Return `task` if it names a Meta-World v3 task or a supported gymnasium env, else raise ValueError."""
    if task in GYM_TASKS or task in _metaworld_names():
        return task
    raise ValueError(f"unknown robot task {task!r}; known: {', '.join(TASKS)} (or any Meta-World v3 task name)")


class RobotEnv(gym.Env):
    """One robot task with image + state observations (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, task: str, image_size: int = 64, camera: str | None = None, action_repeat: int = 1,
                 max_steps: int | None = None, render: bool = True):
        self.task = check_task(task)
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {image_size}")
        if action_repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
        self.image_size = image_size
        self.action_repeat = action_repeat
        self.render_mode = "rgb_array"
        self.rendering = render
        self.is_metaworld = task not in GYM_TASKS
        if self.is_metaworld:
            self._env = self._make_metaworld(task, image_size, camera or "corner")
            default_steps = self._env.max_path_length
            state_dim = len(METAWORLD_STATE)
        else:
            view = {} if camera else {"default_camera_config": _GYM_CAMERAS[task]}
            self._env = gym.make(task, render_mode="rgb_array", width=image_size, height=image_size,
                                 **({"camera_name": camera} if camera else view)).unwrapped
            default_steps = 50 if task == "Reacher-v5" else 100
            state_dim = self._env.observation_space.shape[0]
        # Shadows and reflections dominate software (llvmpipe) rendering time.
        self._env.model.light_castshadow[:] = 0
        self._env.model.mat_reflectance[:] = 0
        self.max_steps = max_steps or -(-default_steps // action_repeat)
        if self.is_metaworld:  # Meta-World raises past its own limit: let it run as long as this episode may
            self._env.max_path_length = max(self._env.max_path_length, self.max_steps * action_repeat)
        low, high = self._env.action_space.low, self._env.action_space.high
        self.action_space = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        self.observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (image_size, image_size, 3), dtype=np.uint8),
            "state": gym.spaces.Box(-np.inf, np.inf, (state_dim,), dtype=np.float32),
        })
        self._raw_obs: np.ndarray | None = None
        self.last_reward, self.last_success = 0.0, False  # of the latest step (0 / False after reset)
        self._steps = 0

    @staticmethod
    def _make_metaworld(task: str, image_size: int, camera: str):
        import metaworld

        env = metaworld.ALL_V3_ENVIRONMENTS[task](render_mode="rgb_array", width=image_size, height=image_size,
                                                  camera_name=camera)
        # Goal observable, a fresh random object/goal layout on every seeded reset (Meta-World's own
        # goal-observable classes freeze one layout). The observation space is a cached property
        # computed with the goal hidden: drop it, or every step clips the goal to zero.
        env._partially_observable = False
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True
        env._set_task_called = True
        env.__dict__.pop("sawyer_observation_space", None)
        env.max_path_length = 500
        return env

    # --- gymnasium API ---------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Returns (observation, info); the same `seed` gives the same layout."""
        super().reset(seed=seed)
        seed = int(self.np_random.integers(2**31)) if seed is None else seed
        if self.is_metaworld:
            self._env.seed(seed)
            self._raw_obs, _ = self._env.reset()
        else:
            self._raw_obs, _ = self._env.reset(seed=seed)
        self._steps = 0
        self.last_reward, self.last_success = 0.0, False
        return self.observation(), {"success": False, "reward": 0.0}

    def step(self, action):
        """Apply `action` (A,) `action_repeat` times; returns (obs, reward, terminated, truncated, info)."""
        if self._raw_obs is None:
            raise RuntimeError("call reset() before step()")
        action = np.asarray(action, dtype=np.float32)
        if action.shape != self.action_space.shape:
            raise ValueError(f"{self.task}: action must have shape {self.action_space.shape}, got {action.shape}")
        action = np.clip(action, self.action_space.low, self.action_space.high)
        total, success = 0.0, False
        for _ in range(self.action_repeat):
            self._raw_obs, reward, _, _, info = self._env.step(action)
            total += float(reward)
            success = success or bool(info.get("success", False))
        self._steps += 1
        self.last_reward, self.last_success = total, success
        truncated = self._steps >= self.max_steps
        return self.observation(), total, False, truncated, {"success": success, "reward": total}

    def render(self) -> np.ndarray:
        """The current camera frame, uint8 (H, W, 3), the right way up."""
        frame = self._env.render()
        if self.is_metaworld:
            frame = frame[::-1, ::-1]  # Meta-World's fixed cameras render upside down
        return np.ascontiguousarray(frame)

    def close(self) -> None:
        if getattr(self, "_env", None) is not None:
            self._env.close()
            self._env = None

    # --- extras ----------------------------------------------------------------------------------
    def sim_state(self) -> SimState:
        """A copy of the physics state (positions, velocities, mocap targets, solver warm start, step count).

        The warm start (last step's accelerations, where MuJoCo's constraint solver begins) is part of
        the state: without it a restored env drifts from the original by up to 1e-5 in reward.
        """
        data = self._env.data
        return {"qpos": data.qpos.copy(), "qvel": data.qvel.copy(), "mocap_pos": data.mocap_pos.copy(),
                "mocap_quat": data.mocap_quat.copy(), "qacc_warmstart": data.qacc_warmstart.copy(),
                "step": self._steps,
                "path_length": getattr(self._env, "curr_path_length", 0)}

    def set_sim_state(self, state: SimState) -> None:
        """Restore a `sim_state()` copy taken from an env of the same task reset with the same seed."""
        import mujoco

        data = self._env.data
        data.qpos[:], data.qvel[:] = state["qpos"], state["qvel"]
        data.mocap_pos[:], data.mocap_quat[:] = state["mocap_pos"], state["mocap_quat"]
        mujoco.mj_forward(self._env.model, data)
        data.qacc_warmstart[:] = state["qacc_warmstart"]
        self._steps = state["step"]
        if self.is_metaworld:
            self._env.curr_path_length = state["path_length"]
        self._raw_obs = self._env._get_obs()

    def observation(self) -> dict:
        """The current observation {"image", "state"} (what the last reset/step returned)."""
        if self.is_metaworld:
            state = np.concatenate([self._raw_obs[:7], self._raw_obs[-3:]])
        else:
            state = self._raw_obs
        image = self.render() if self.rendering else np.zeros(self.observation_space["image"].shape, np.uint8)
        return {"image": image, "state": state.astype(np.float32)}


def make_env(task: str, image_size: int = 64, camera: str | None = None, action_repeat: int = 1,
             max_steps: int | None = None, render: bool = True) -> RobotEnv:
    """A `RobotEnv` for a Meta-World v3 task name (e.g. "push-v3") or "Reacher-v5" / "Pusher-v5".

    `render=False` skips rendering (observations carry a black image): for planners that only
    need rewards from the real simulator.
    """
    return RobotEnv(task, image_size=image_size, camera=camera, action_repeat=action_repeat, max_steps=max_steps,
                    render=render)


def action_bounds(tasks) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) (A,) float32 of the action box that holds the boxes of all `tasks` (Meta-World's [-1, 1],
    Pusher's [-2, 2], ...), read off their environments; the tasks must share one action dimension."""
    boxes = []
    for task in sorted(set(tasks)):
        with make_env(task, image_size=16, render=False) as env:
            boxes.append((env.action_space.low, env.action_space.high))
    if not boxes:
        raise ValueError("action_bounds: no tasks given")
    if len({low.shape for low, _ in boxes}) > 1:
        raise ValueError(f"action_bounds: tasks {sorted(set(tasks))} have different action dimensions")
    return np.min([low for low, _ in boxes], axis=0), np.max([high for _, high in boxes], axis=0)


class TaskGoal:
    """A Meta-World task's goal on 10-number states (..., 10): `success` and `distance`.

    `success(states)` -> bool (...): Meta-World's success test (`evaluate_state`) on the state's slots (for
    reach-v3 an approximation: the fingertips are taken a fixed 4.5 cm below the hand, off by up to 6 mm as
    the gripper moves; it disagreed with Meta-World on 9 of 450 expert steps, push-v3 on none);
    `distance(states)` -> float (...) metres: the hand's distance to the object (when the task moves one)
    plus `object_weight` x the remaining distance of `part` to the goal along `axes`, zero when solved.
    """

    def __init__(self, task: str, part: slice, axes: tuple[int, ...], radius: float, reach_object: bool,
                 object_weight: float = 2.0):
        self.task, self.part, self.axes, self.radius = task, part, list(axes), radius
        self.reach_object, self.object_weight = reach_object, object_weight

    def _error(self, states: np.ndarray) -> np.ndarray:
        if states.shape[-1] != len(METAWORLD_STATE):
            raise ValueError(f"{self.task}: states must have {len(METAWORLD_STATE)} numbers "
                             f"({', '.join(METAWORLD_STATE)}), got shape {states.shape}")
        part = _fingertips(states) if self.part == _HAND else states[..., self.part]
        return np.linalg.norm((part - states[..., _GOAL])[..., self.axes], axis=-1)

    def success(self, states) -> np.ndarray:
        """(..., 10) states -> (...) bool: the task is solved in that state."""
        return self._error(np.asarray(states, dtype=np.float64)) <= self.radius

    def distance(self, states) -> np.ndarray:
        """(..., 10) states -> (...) float64: how far the state is from solving the task (0 when solved)."""
        states = np.asarray(states, dtype=np.float64)
        remaining = np.maximum(self._error(states) - self.radius, 0.0)
        reach = np.linalg.norm(_fingertips(states) - states[..., _OBJECT], axis=-1) if self.reach_object else 0.0
        return reach + self.object_weight * remaining


def _fingertips(states: np.ndarray) -> np.ndarray:
    """(..., 10) states -> (..., 3): the fingertips' centre, where Meta-World measures the hand."""
    return states[..., _HAND] + _TCP_OFFSET


# Meta-World v3's success tests (`evaluate_state`): which part of the state must be how close to the goal.
_GOALS = {"push-v3": (_OBJECT, (0, 1, 2), 0.05, True),
          "reach-v3": (_HAND, (0, 1, 2), 0.05, False),
          "drawer-open-v3": (_OBJECT, (0, 1, 2), 0.03, True),
          "button-press-topdown-v3": (_OBJECT, (2,), 0.024, True),
          "door-open-v3": (_OBJECT, (0,), 0.08, True)}


def task_goal(task: str) -> TaskGoal:
    """The `TaskGoal` of a Meta-World task this project knows the success test of (see `_GOALS`)."""
    if task not in _GOALS:
        raise ValueError(f"no state goal for {task!r}; known: {', '.join(_GOALS)}")
    return TaskGoal(task, *_GOALS[task])
