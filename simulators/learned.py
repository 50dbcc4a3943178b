"""Learned simulators: a trained robotics world model behind the real env's interface.

`LearnedSimulator` steps B imagined episodes in lockstep (one batched generation per step);
`WorldModelEnv` is its single-episode gymnasium face with the real `RobotEnv`'s action and
observation spaces, so any policy written for the real simulator runs in the world model.

An imagined episode starts from the real env's first observation for the same seed (as
world-model evaluators do: the model imagines what follows, not the initial scene), and its imagined
frames are decoded anchored to that real frame (`WorldModel.decode_frames`). Rewards and success are
the model's own predictions. For policies that read only states, `LearnedSimulator(..., images=False)`
skips decoding the frames (the model imagines the same tokens either way; decoding is about half of a
step's time at 160 rows with the learned context decoder).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from .robots import make_env

__all__ = ["LearnedSimulator", "WorldModelEnv"]


class LearnedSimulator:
    """B episodes of `task` imagined by `world_model` (a `domains.robotics.world_model.WorldModel`).

    reset(seeds) -> list of observations; step(actions (B, A)) -> (observations, rewards (B,),
    success (B,) bool). Observations are {"image": uint8 (H, W, 3), "state": float32 (S,)}; with
    `images=False` only {"state"}: the imagined frames stay VQ codes and are never decoded.
    """

    def __init__(self, world_model, task: str, action_repeat: int = 2, camera: str | None = None,
                 temperature: float = 0.0, images: bool = True):
        self.world_model = world_model
        self.task = task
        self.temperature = temperature
        self.images = images
        self._real = make_env(task, world_model.image_size, camera, action_repeat)
        if self._real.action_space.shape[0] != world_model.action_dim:
            self._real.close()
            raise ValueError(f"{task} has {self._real.action_space.shape[0]}-d actions, the world model "
                             f"{world_model.action_dim}-d: it was trained on another robot")
        self.action_space = self._real.action_space
        self.observation_space = self._real.observation_space
        self._histories: list[dict] = []
        self._anchor = None  # the real first frames, prepared once per reset for decoding
        self._generator = torch.Generator()

    def reset(self, seeds: list[int]) -> list[dict]:
        """Start one imagined episode per seed from the real env's first observation of that seed."""
        self._histories, first = [], []
        for seed in seeds:
            observation, _ = self._real.reset(seed=int(seed))
            first.append(observation["image"])
            self._histories.append({"frames": [observation["image"]] if self.images else None,
                                    "states": [observation["state"]], "rewards": [0.0], "success": [False],
                                    "actions": []})
        self._generator.manual_seed(int(seeds[0]) if len(seeds) else 0)
        if self._histories:  # the real first frames: encoded once, for the prompts (and for decoding)
            first = np.stack(first)
            self._anchor = self.world_model.prepare_anchor(first) if self.images else None
            codes = self._anchor.codes if self.images else self.world_model.encode_frames(first)
            for h, c in zip(self._histories, codes):
                h["codes"] = [c]
        return [self._observation(h) for h in self._histories]

    def step(self, actions: np.ndarray) -> tuple[list[dict], np.ndarray, np.ndarray]:
        """Advance every episode by one action: actions (B, A)."""
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (len(self._histories), self.action_space.shape[0]):
            raise ValueError(f"actions must have shape ({len(self._histories)}, {self.action_space.shape[0]}), "
                             f"got {actions.shape}")
        actions = np.clip(actions, self.action_space.low, self.action_space.high)
        wm = self.world_model
        prompts = [wm.prompt(self.task, *self._window(h)) for h in self._histories]  # imagined frames keep their codes
        imagined = wm.imagine(prompts, actions[:, None], temperature=self.temperature, generator=self._generator,
                              decode=self.images, anchor=self._anchor)  # decoded relative to the real first frames
        if self.images:
            frames = (imagined.frames[:, 0] * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for b, h in enumerate(self._histories):
            h["actions"].append(actions[b])
            if self.images:
                h["frames"].append(frames[b])
            h["states"].append(imagined.states[b, 0].numpy().astype(np.float32))
            h["rewards"].append(float(imagined.rewards[b, 0]))
            h["success"].append(bool(imagined.success[b, 0]))
            h["codes"].append(imagined.codes[b, 0])
        observations = [self._observation(h) for h in self._histories]
        return observations, imagined.rewards[:, 0].numpy().astype(np.float64), imagined.success[:, 0].numpy()

    def _window(self, h: dict):
        """The last `max_history` observations of an episode and the actions between them (frames None
        without images: the prompt reads the codes)."""
        n = min(self.world_model.max_history, len(h["states"]))
        actions = np.asarray(h["actions"][len(h["actions"]) - (n - 1):], np.float32)
        frames = np.stack(h["frames"][-n:]) if self.images else None
        return (frames, np.stack(h["states"][-n:]), np.asarray(h["rewards"][-n:], np.float32),
                np.asarray(h["success"][-n:]), actions.reshape(n - 1, self.action_space.shape[0]),
                torch.stack(h["codes"][-n:]))

    def _observation(self, h: dict) -> dict:
        if not self.images:
            return {"state": h["states"][-1]}
        return {"image": h["frames"][-1], "state": h["states"][-1]}

    def close(self) -> None:
        self._real.close()

    def __enter__(self) -> "LearnedSimulator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class WorldModelEnv(gym.Env):
    """A gymnasium env whose dynamics, rewards and success are a world model's predictions.

    Same action and observation spaces as `simulators.robots.make_env(task, ...)`; `info` has
    `success`. Episodes are truncated after `max_steps` steps.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, world_model, task: str, max_steps: int = 50, action_repeat: int = 2,
                 camera: str | None = None, temperature: float = 0.0):
        self.simulator = LearnedSimulator(world_model, task, action_repeat, camera, temperature)
        self.action_space = self.simulator.action_space
        self.observation_space = self.simulator.observation_space
        self.max_steps = max_steps
        self.render_mode = "rgb_array"
        self._steps = 0
        self._last: dict | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        seed = int(self.np_random.integers(2**31)) if seed is None else seed
        self._steps = 0
        self._last = self.simulator.reset([seed])[0]
        return self._last, {"success": False}

    def step(self, action):
        if self._last is None:
            raise RuntimeError("call reset() before step()")
        action = np.asarray(action, dtype=np.float32)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape}, got {action.shape}")
        observations, rewards, success = self.simulator.step(action[None])
        self._steps += 1
        self._last = observations[0]
        return self._last, float(rewards[0]), False, self._steps >= self.max_steps, {"success": bool(success[0])}

    def render(self) -> np.ndarray:
        if self._last is None:
            raise RuntimeError("call reset() before render()")
        return self._last["image"]

    def close(self) -> None:
        self.simulator.close()
