"""Planning baselines that see no sensor data: how far ego state alone goes on open-loop nuScenes planning.

    constant_velocity   the ego keeps its current velocity vector for 3 s
    EgoStatusMLP        AD-MLP (Zhai et al. 2023, "Rethinking the open-loop evaluation of end-to-end autonomous
                        driving in nuScenes"): an MLP from ego history, ego status and the driving command to the
                        6 future waypoints; it matches perception-based planners on L2, which is why a world
                        model's planner must be compared with it.

Inputs follow the driving data conventions: history (N, 4, 2) ego positions at -2.0 .. -0.5 s and history_mask
(N, 4); status (N, 3) = speed (m/s), longitudinal acceleration (m/s^2), yaw rate (rad/s, left positive); command
(N,) in {0: right, 1: left, 2: straight}; future (N, 6, 2) at 0.5 .. 3.0 s with future_mask (N, 6). All in the
current ego frame (x forward, y left, metres). Numpy or torch inputs; predictions are float32 numpy (N, 6, 2).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .metrics import NUM_WAYPOINTS, WAYPOINT_DT, _as_array

__all__ = ["HISTORY_STEPS", "NUM_COMMANDS", "EgoStatusMLP", "constant_velocity"]

HISTORY_STEPS = 4  # past ego positions at -2.0, -1.5, -1.0, -0.5 s
NUM_COMMANDS = 3  # 0 right, 1 left, 2 straight (VAD's order)
FUTURE_TIMES = WAYPOINT_DT * np.arange(1, NUM_WAYPOINTS + 1)  # 0.5 .. 3.0 s


def _ego_inputs(where: str, history, history_mask, status, command=None) -> tuple[np.ndarray, ...]:
    """Checked numpy copies of the ego inputs (command only when given)."""
    arrays = [_as_array(history, f"{where}: history", (None, HISTORY_STEPS, 2)),
              _as_array(history_mask, f"{where}: history_mask", (None, HISTORY_STEPS), dtype=bool),
              _as_array(status, f"{where}: status", (None, 3))]
    if command is not None:
        command = _as_array(command, f"{where}: command", (None,), dtype=np.int64)
        if command.size and (command.min() < 0 or command.max() >= NUM_COMMANDS):
            raise ValueError(f"{where}: command must be in {{0: right, 1: left, 2: straight}}, "
                             f"got values {sorted(set(command.tolist()))}")
        arrays.append(command)
    sizes = [len(array) for array in arrays]
    if len(set(sizes)) > 1:
        raise ValueError(f"{where}: history, history_mask, status{', command' if command is not None else ''} "
                         f"disagree on the number of samples N: {sizes}")
    return tuple(arrays)


def constant_velocity(history, history_mask, status) -> np.ndarray:
    """The ego keeps its current velocity vector: (N, 4, 2), (N, 4), (N, 3) -> waypoints (N, 6, 2) float32.

    The velocity is the last history step (the position at -0.5 s to the origin) over 0.5 s, in the ego frame;
    where that position is masked it falls back to status speed along +x. Waypoint k is velocity * 0.5 (k + 1) s.
    """
    history, history_mask, status = _ego_inputs("constant_velocity", history, history_mask, status)
    from_history = -history[:, -1] / WAYPOINT_DT
    from_status = np.stack([status[:, 0], np.zeros(len(status))], axis=1)
    velocity = np.where(history_mask[:, -1:], from_history, from_status)  # (N, 2)
    return (velocity[:, None, :] * FUTURE_TIMES[None, :, None]).astype(np.float32)


class EgoStatusMLP(nn.Module):
    """AD-MLP: ego history + status + command -> 6 future waypoints, with no perception.

    Input (18 numbers): the history positions with masked ones zeroed (8), the history mask (4), status (3) and
    the one-hot command (3), standardised with statistics fitted on the training set. Output: (6, 2) waypoints,
    de-standardised with the training targets' statistics. Both normalisers are buffers, so they travel with the
    state dict.
    """

    def __init__(self, hidden: int = 256, num_layers: int = 2):
        super().__init__()
        if hidden < 1 or num_layers < 1:
            raise ValueError(f"EgoStatusMLP: hidden and num_layers must be >= 1, got {hidden}, {num_layers}")
        self.hidden, self.num_layers = hidden, num_layers
        num_inputs = HISTORY_STEPS * 2 + HISTORY_STEPS + 3 + NUM_COMMANDS
        layers, width = [], num_inputs
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, NUM_WAYPOINTS * 2))
        self.net = nn.Sequential(*layers)
        self.register_buffer("input_mean", torch.zeros(num_inputs))
        self.register_buffer("input_std", torch.ones(num_inputs))
        self.register_buffer("output_mean", torch.zeros(NUM_WAYPOINTS * 2))
        self.register_buffer("output_std", torch.ones(NUM_WAYPOINTS * 2))
        self.register_buffer("fitted", torch.tensor(False))

    @staticmethod
    def features(history: np.ndarray, history_mask: np.ndarray, status: np.ndarray,
                 command: np.ndarray) -> torch.Tensor:
        """Checked ego inputs -> (N, 18) float32 raw (unstandardised) features."""
        positions = np.where(history_mask[..., None], history, 0.0).reshape(len(history), -1)
        one_hot = np.eye(NUM_COMMANDS)[command]
        return torch.from_numpy(np.concatenate([positions, history_mask, status, one_hot], axis=1).astype(np.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: (N, 18) raw -> waypoints (N, 6, 2) in metres."""
        out = self.net((features - self.input_mean) / self.input_std)
        return (out * self.output_std + self.output_mean).view(-1, NUM_WAYPOINTS, 2)

    def fit(self, history, history_mask, status, command, future, future_mask, steps: int = 2000,
            lr: float = 1e-3, batch_size: int = 256, seed: int = 0) -> dict:
        """Train from a fresh seeded initialisation with L1 loss (metres) on valid waypoints; Adam, cosine lr decay.

        Shapes as in the module docstring. Returns {'steps', 'initial_l1_m', 'final_l1_m', 'l1_m_curve'}: the
        minibatch L1 averaged over the first and last 5 % of steps, and over each 5 % of training (20 values).
        Deterministic for a given seed (CPU).
        """
        history, history_mask, status, command = _ego_inputs("EgoStatusMLP.fit", history, history_mask, status,
                                                             command)
        future = _as_array(future, "EgoStatusMLP.fit: future", (None, NUM_WAYPOINTS, 2))
        future_mask = _as_array(future_mask, "EgoStatusMLP.fit: future_mask", (None, NUM_WAYPOINTS), dtype=bool)
        if not len(future) == len(future_mask) == len(history):
            raise ValueError(f"EgoStatusMLP.fit: future {future.shape} and future_mask {future_mask.shape} must have "
                             f"N = {len(history)} samples like history")
        if steps < 1 or batch_size < 1:
            raise ValueError(f"EgoStatusMLP.fit: steps and batch_size must be >= 1, got {steps}, {batch_size}")
        if not future_mask.any():
            raise ValueError("EgoStatusMLP.fit: future_mask has no valid waypoint to learn from")

        features = self.features(history, history_mask, status, command)
        targets = torch.from_numpy(np.where(future_mask[..., None], future, 0.0).astype(np.float32))
        weights = torch.from_numpy(future_mask.astype(np.float32))
        self._fit_normalisers(features, targets, weights)
        generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):  # a seeded initialisation that leaves the global RNG alone
            torch.manual_seed(seed)
            for module in self.net:
                if isinstance(module, nn.Linear):
                    module.reset_parameters()

        optimiser = torch.optim.Adam(self.net.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
        self.train()
        losses = np.zeros(steps)
        for step in range(steps):
            rows = torch.randint(len(features), (min(batch_size, len(features)),), generator=generator)
            error = (self(features[rows]) - targets[rows]).abs().sum(dim=-1)  # (B, 6) L1 per waypoint
            loss = (error * weights[rows]).sum() / weights[rows].sum().clamp(min=1.0)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses[step] = loss.item()
        self.eval()
        self.fitted.fill_(True)
        tail = max(steps // 20, 1)
        return {"steps": steps, "initial_l1_m": float(losses[:tail].mean()), "final_l1_m": float(losses[-tail:].mean()),
                "l1_m_curve": [float(chunk.mean()) for chunk in np.array_split(losses, min(20, steps))]}

    def _fit_normalisers(self, features: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> None:
        self.input_mean.copy_(features.mean(dim=0))
        # Constant inputs (a one-hot column never used, a mask that is always set) keep unit scale.
        std = features.std(dim=0, unbiased=False)
        self.input_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))
        # Target statistics over valid waypoints only: padding zeros past a scene end would bias them.
        w = weights.repeat_interleave(2, dim=1)  # (N, 12), one weight per coordinate
        count = w.sum(dim=0).clamp(min=1.0)
        flat = targets.reshape(len(targets), -1)
        mean = (flat * w).sum(dim=0) / count
        std = (((flat - mean) ** 2 * w).sum(dim=0) / count).sqrt()
        self.output_mean.copy_(mean)
        self.output_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    @torch.no_grad()
    def predict(self, history, history_mask, status, command) -> np.ndarray:
        """Ego inputs (module docstring) -> planned waypoints (N, 6, 2) float32, metres."""
        if not bool(self.fitted):
            raise RuntimeError("EgoStatusMLP.predict: the model is not fitted; call fit() or load() first")
        inputs = _ego_inputs("EgoStatusMLP.predict", history, history_mask, status, command)
        self.eval()
        return self(self.features(*inputs)).numpy()

    def save(self, path: str | Path) -> None:
        """Write the weights, normalisers and sizes to `path` (a temporary file beside it, then renamed)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"hidden": self.hidden, "num_layers": self.num_layers, "state_dict": self.state_dict()}, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> EgoStatusMLP:
        """The model saved at `path` by `save`."""
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(hidden=checkpoint["hidden"], num_layers=checkpoint["num_layers"])
        model.load_state_dict(checkpoint["state_dict"])
        return model.eval()
