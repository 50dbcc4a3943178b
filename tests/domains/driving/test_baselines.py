import numpy as np
import pytest
import torch

from domains.driving.baselines import EgoStatusMLP, constant_velocity
from domains.driving.metrics import l2_errors

LATERAL_CURVATURE = {0: -0.4, 1: 0.4, 2: 0.0}  # right, left, straight: y = c t^2


def synthetic_drives(num_samples: int, seed: int):
    """Straight history at speed v along +x; the future keeps v along x and bends sideways by the command."""
    rng = np.random.default_rng(seed)
    speed = rng.uniform(2.0, 15.0, num_samples)
    command = rng.integers(0, 3, num_samples)
    past, future_t = np.array([-2.0, -1.5, -1.0, -0.5]), np.arange(1, 7) * 0.5
    history = np.stack([speed[:, None] * past, np.zeros((num_samples, 4))], axis=-1)
    history_mask = np.ones((num_samples, 4), bool)
    history_mask[: num_samples // 10, :2] = False  # some drives start less than 2 s before the key frame
    status = np.stack([speed, np.zeros(num_samples), np.zeros(num_samples)], axis=1)
    curvature = np.vectorize(LATERAL_CURVATURE.get)(command)
    future = np.stack([speed[:, None] * future_t, curvature[:, None] * future_t**2], axis=-1)
    future_mask = np.ones((num_samples, 6), bool)
    future_mask[-num_samples // 10 :, 4:] = False  # and some scenes end before 3 s
    return history, history_mask, status, command, future, future_mask


@pytest.fixture(scope="module")
def fitted():
    train, test = synthetic_drives(1024, seed=0), synthetic_drives(256, seed=1)
    model = EgoStatusMLP(hidden=128)
    summary = model.fit(*train, steps=500, lr=3e-3, seed=0)
    return model, summary, test


def test_constant_velocity_extrapolates_the_last_history_step():
    history = np.array([[[-20.0, 0.0], [-15.0, 0.0], [-10.0, 0.0], [-5.0, 0.0]]] * 2)  # 10 m/s along +x
    history_mask = np.array([[True] * 4, [True, True, True, False]])
    status = np.array([[10.0, 0.0, 0.0], [4.0, 0.0, 0.0]])
    waypoints = constant_velocity(torch.from_numpy(history), history_mask, status)
    np.testing.assert_allclose(waypoints[0], [[5, 0], [10, 0], [15, 0], [20, 0], [25, 0], [30, 0]])
    # without the -0.5 s position: status speed along +x
    np.testing.assert_allclose(waypoints[1], [[2, 0], [4, 0], [6, 0], [8, 0], [10, 0], [12, 0]])


def test_mlp_learns_a_command_dependent_rule_that_constant_velocity_misses(fitted):
    model, summary, (history, history_mask, status, command, future, future_mask) = fitted
    assert summary["final_l1_m"] < 0.3 * summary["initial_l1_m"]
    mlp = l2_errors(model.predict(history, history_mask, status, command), future, future_mask)["uniad"]["avg"]
    baseline = l2_errors(constant_velocity(history, history_mask, status), future, future_mask)["uniad"]["avg"]
    assert mlp < 0.15 and mlp < 0.2 * baseline  # constant velocity misses the bends: 1.3 m at 1/2/3 s on average


def test_mlp_save_load_round_trip_and_determinism(fitted, tmp_path):
    model, _, test = fitted
    inputs = test[:4]
    model.save(tmp_path / "mlp.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.pt"]  # the temporary file was renamed away
    np.testing.assert_array_equal(EgoStatusMLP.load(tmp_path / "mlp.pt").predict(*inputs), model.predict(*inputs))

    small = synthetic_drives(64, seed=2)
    first, second = EgoStatusMLP(hidden=16), EgoStatusMLP(hidden=16)
    assert first.fit(*small, steps=20, seed=3) == second.fit(*small, steps=20, seed=3)
    np.testing.assert_array_equal(first.predict(*small[:4]), second.predict(*small[:4]))


def test_mlp_rejects_bad_inputs_clearly():
    history, history_mask, status, command, future, future_mask = synthetic_drives(8, seed=0)
    model = EgoStatusMLP(hidden=8)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.predict(history, history_mask, status, command)
    with pytest.raises(ValueError, match=r"history must have shape \(N, 4, 2\), got \(8, 3, 2\)"):
        model.fit(history[:, 1:], history_mask, status, command, future, future_mask, steps=1)
    with pytest.raises(ValueError, match=r"future must have shape \(N, 6, 2\)"):
        model.fit(history, history_mask, status, command, future[..., :1], future_mask, steps=1)
    with pytest.raises(ValueError, match="command must be in"):
        model.fit(history, history_mask, status, command + 3, future, future_mask, steps=1)
    with pytest.raises(ValueError, match=r"status must have shape \(N, 3\)"):
        constant_velocity(history, history_mask, status[:, :2])
