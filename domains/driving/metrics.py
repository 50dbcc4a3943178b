"""Open-loop planning metrics on nuScenes, in both conventions the literature reports.

Trajectories are 6 ego waypoints at 0.5, 1.0, ..., 3.0 s in the ego frame of the current key frame (x forward,
y left, metres); the 1 s, 2 s and 3 s horizons are waypoints 1, 3 and 5.

- **ST-P3 convention** (Hu et al. 2022, ST-P3; also VAD and AD-MLP): the value at horizon t is averaged over
  every waypoint from 0.5 s up to t, so "L2 at 3 s" is the mean error over the whole 3 s trajectory.
- **UniAD convention** (Hu et al. 2023, UniAD): the value at horizon t is taken at the waypoint at t only.

The two differ a lot (UniAD's 3 s L2 is roughly twice ST-P3's), so every result here carries its label.

Collisions test the planned ego box against the annotated boxes of other agents at the same future key frame,
as exact polygons (shapely 2). The original ST-P3 code rasterises boxes into a 0.5 m BEV grid and keeps the ego
box axis-aligned; here the ego box turns with the direction of travel (as BEV-Planner, Li et al. 2024, does), so
rates are close to, but not digit-for-digit equal to, published ones. The box is centred on the waypoint and
sized by the data's vehicle (`loader.ego_size_of`): the Renault Zoe of nuScenes, or the 5 x 2 m car that `uwm data
driving` simulates (whose logged pose is its centre). On real nuScenes the pose is the rear axle, which the
published codes shift the box forward from by 0.5 m (UniAD, VAD) or more (ST-P3); here it is not shifted.
"""

from __future__ import annotations

import numpy as np
import shapely
import torch

from .loader import EGO_SIZE

__all__ = ["EGO_SIZE", "HORIZONS", "NUM_WAYPOINTS", "WAYPOINT_DT", "collision_rates", "collisions", "ego_box_polygons",
           "ego_headings", "l2_errors", "planning_metrics"]

NUM_WAYPOINTS = 6
WAYPOINT_DT = 0.5  # seconds between waypoints (nuScenes key frames are 2 Hz)
HORIZONS = {"1s": 1, "2s": 3, "3s": 5}  # horizon -> index of the waypoint at that time
MIN_HEADING_STEP = 0.1  # metres; a shorter step (the ego standing still) gives no reliable direction


def _as_array(value, name: str, shape: tuple, dtype=np.float64) -> np.ndarray:
    """`value` (numpy or torch) as a numpy array, checked against `shape` (None = any size along that axis)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=dtype)
    if array.ndim != len(shape) or any(want is not None and got != want for got, want in zip(array.shape, shape)):
        dims = ["N" if want is None else str(want) for want in shape]
        expected = f"({dims[0]},)" if len(dims) == 1 else "(" + ", ".join(dims) + ")"
        raise ValueError(f"{name} must have shape {expected}, got {array.shape}")
    return array


def _check_same_samples(where: str, **arrays: np.ndarray) -> int:
    sizes = {name: len(array) for name, array in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{where}: inputs disagree on the number of samples N: {sizes}")
    return next(iter(sizes.values()))


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _by_convention(per_waypoint: np.ndarray, mask: np.ndarray) -> dict[str, dict[str, float]]:
    """per_waypoint: (N, 6) values, mask: (N, 6) -> {'stp3': {'1s', '2s', '3s', 'avg'}, 'uniad': {...}}."""
    results = {"stp3": {}, "uniad": {}}
    for horizon, k in HORIZONS.items():
        # ST-P3 here evaluates a sample at t when its whole future up to t exists. VAD's fut_valid_flag is
        # stricter: a sample counts at no horizon unless its whole 3 s exists, so VAD's 1 s and 2 s figures drop
        # the samples near scene ends that these keep.
        complete = mask[:, : k + 1].all(axis=1)
        results["stp3"][horizon] = _mean_or_nan(per_waypoint[complete, : k + 1].mean(axis=1))
        results["uniad"][horizon] = _mean_or_nan(per_waypoint[mask[:, k], k])
    for values in results.values():
        values["avg"] = float(np.mean([values[horizon] for horizon in HORIZONS]))  # NaN if any horizon is NaN
    return results


def l2_errors(pred, gt, mask) -> dict[str, dict[str, float]]:
    """L2 distance (metres) between planned and ground-truth waypoints at 1, 2 and 3 s, in both conventions.

    pred, gt: (N, 6, 2), mask: (N, 6) bool (False where the ground truth runs past the scene end); numpy or torch.
    Returns {'stp3': {'1s', '2s', '3s', 'avg'}, 'uniad': {...}} as python floats, 'avg' the mean of the three.

    - 'stp3' (ST-P3, VAD): per sample the mean L2 over waypoints 0.5 s .. t, averaged over the samples whose
      waypoints up to t are all valid.
    - 'uniad' (UniAD): the L2 at the waypoint at t, averaged over the samples whose waypoint at t is valid.

    A horizon without any valid sample gives NaN (and so does 'avg').
    """
    pred = _as_array(pred, "pred", (None, NUM_WAYPOINTS, 2))
    gt = _as_array(gt, "gt", (None, NUM_WAYPOINTS, 2))
    mask = _as_array(mask, "mask", (None, NUM_WAYPOINTS), dtype=bool)
    _check_same_samples("l2_errors", pred=pred, gt=gt, mask=mask)
    # Masked ground truth may hold NaN or padding; zero its error so it cannot leak into a mean.
    distance = np.where(mask, np.linalg.norm(pred - gt, axis=-1), 0.0)
    return _by_convention(distance, mask)


# ---------------------------------------------------------------------------------------------------- collisions


def ego_headings(waypoints) -> np.ndarray:
    """Yaw (rad, counter-clockwise from +x) of the ego at each waypoint, from its direction of travel.

    waypoints: (N, 6, 2) -> (N, 6). The heading at waypoint k points from waypoint k-1 (the origin for k = 0) to
    waypoint k; a step shorter than 0.1 m keeps the previous heading (0 before the first waypoint).
    """
    waypoints = _as_array(waypoints, "waypoints", (None, NUM_WAYPOINTS, 2))
    steps = np.diff(waypoints, axis=1, prepend=np.zeros_like(waypoints[:, :1]))
    headings = np.zeros(waypoints.shape[:2])
    previous = np.zeros(len(waypoints))
    for k in range(NUM_WAYPOINTS):
        moving = np.hypot(steps[:, k, 0], steps[:, k, 1]) >= MIN_HEADING_STEP
        previous = np.where(moving, np.arctan2(steps[:, k, 1], steps[:, k, 0]), previous)
        headings[:, k] = previous
    return headings


def _box_corners(centres: np.ndarray, yaws: np.ndarray, lengths, widths) -> np.ndarray:
    """centres (..., 2), yaws (...), lengths/widths broadcastable to (...) -> corners (..., 4, 2), counter-clockwise."""
    half = np.stack(np.broadcast_arrays(np.asarray(lengths) / 2, np.asarray(widths) / 2), axis=-1)  # (..., 2)
    signs = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float64)  # front-left, rear-left, ...
    local = signs * half[..., None, :]  # (..., 4, 2)
    cos, sin = np.cos(yaws)[..., None], np.sin(yaws)[..., None]
    x = centres[..., None, 0] + cos * local[..., 0] - sin * local[..., 1]
    y = centres[..., None, 1] + sin * local[..., 0] + cos * local[..., 1]
    return np.stack([x, y], axis=-1)


def ego_box_polygons(waypoints, ego_size: tuple[float, float] = EGO_SIZE) -> np.ndarray:
    """The ego footprint at each waypoint: (N, 6, 2) -> (N, 6) array of shapely Polygons.

    Each box (length, width) = ego_size is centred on the waypoint and turned to `ego_headings(waypoints)`.
    """
    waypoints = _as_array(waypoints, "waypoints", (None, NUM_WAYPOINTS, 2))
    return shapely.polygons(_box_corners(waypoints, ego_headings(waypoints), *ego_size))


def _agent_table(boxes, num_samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """boxes: list (N) of list (6) of (M, 5) -> (sample index (B,), waypoint index (B,), boxes (B, 5)) over all."""
    if len(boxes) != num_samples:
        raise ValueError(f"boxes must be a list of N = {num_samples} samples, got {len(boxes)}")
    samples, steps, rows = [], [], []
    for i, per_step in enumerate(boxes):
        if len(per_step) != NUM_WAYPOINTS:
            raise ValueError(f"boxes[{i}] must hold {NUM_WAYPOINTS} future key frames, got {len(per_step)}")
        for k, agents in enumerate(per_step):
            agents = np.asarray(agents, dtype=np.float64)
            if agents.size == 0:
                continue
            if agents.ndim != 2 or agents.shape[1] != 5:
                raise ValueError(f"boxes[{i}][{k}] must have shape (M, 5) (x, y, yaw, length, width), "
                                 f"got {agents.shape}")
            samples.append(np.full(len(agents), i))
            steps.append(np.full(len(agents), k))
            rows.append(agents)
    if not rows:
        return np.zeros(0, int), np.zeros(0, int), np.zeros((0, 5))
    return np.concatenate(samples), np.concatenate(steps), np.concatenate(rows)


def collisions(pred, boxes, mask=None, ego_size=EGO_SIZE) -> np.ndarray:
    """Whether the planned ego box overlaps any other agent's box at each waypoint.

    pred: (N, 6, 2) planned waypoints; boxes: list (N) of list (6) of arrays (M, 5) with columns x, y, yaw, length,
    width of the agents annotated at that future key frame, in the same ego frame (M may be 0); mask: (N, 6) bool
    or None (all valid); ego_size: the ego box's (length, width), (2,) or per sample (N, 2). Returns (N, 6) bool;
    masked waypoints are never colliding. Boxes that only touch (share a boundary point) count as colliding:
    shapely's `intersects`, i.e. "not disjoint".
    """
    pred = _as_array(pred, "pred", (None, NUM_WAYPOINTS, 2))
    mask = (np.ones(pred.shape[:2], bool) if mask is None
            else _as_array(mask, "mask", (None, NUM_WAYPOINTS), dtype=bool))
    num_samples = _check_same_samples("collisions", pred=pred, mask=mask)
    sizes = np.asarray(ego_size, dtype=np.float64)
    if sizes.shape not in ((2,), (num_samples, 2)):
        raise ValueError(f"ego_size must be (length, width) or one per sample ({num_samples}, 2), got {sizes.shape}")
    sizes = np.broadcast_to(sizes, (num_samples, 2))
    colliding = np.zeros((num_samples, NUM_WAYPOINTS), bool)
    sample, step, agents = _agent_table(boxes, num_samples)
    # Masked waypoints may be NaN or padding: park them at the origin; they are dropped below anyway.
    pred = np.where(mask[..., None], pred, 0.0)
    ego_corners = _box_corners(pred, ego_headings(pred), sizes[:, None, 0], sizes[:, None, 1])  # (N, 6, 4, 2)

    # Cheap prefilter: two boxes can only meet if their centres are closer than the sum of their half-diagonals.
    reach = np.hypot(sizes[sample, 0], sizes[sample, 1]) / 2 + np.hypot(agents[:, 3], agents[:, 4]) / 2
    near = np.linalg.norm(pred[sample, step] - agents[:, :2], axis=1) <= reach + 1e-9
    near &= mask[sample, step]
    sample, step, agents = sample[near], step[near], agents[near]
    if len(agents) == 0:
        return colliding
    ego = shapely.polygons(ego_corners[sample, step])
    others = shapely.polygons(_box_corners(agents[:, :2], agents[:, 2], agents[:, 3], agents[:, 4]))
    hit = shapely.intersects(ego, others)
    colliding[sample[hit], step[hit]] = True
    return colliding


def collision_rates(colliding, mask) -> dict[str, dict[str, float]]:
    """Collision rates at 1, 2 and 3 s as fractions in [0, 1] (not percent), in both conventions.

    colliding, mask: (N, 6) bool. Returns {'stp3': {'1s', '2s', '3s', 'avg'}, 'uniad': {...}}.

    - 'stp3': per sample the fraction of its waypoints 0.5 s .. t that collide, averaged over samples whose
      waypoints up to t are all valid. This is what ST-P3 and VAD compute (the per-waypoint collision rates
      averaged over the horizon up to t), so it is comparable to their tables; it is not "the fraction of samples
      that collide at some point before t", which would be larger.
    - 'uniad': the fraction of samples colliding at the waypoint at t, over samples whose waypoint at t is valid.
    """
    colliding = _as_array(colliding, "colliding", (None, NUM_WAYPOINTS), dtype=bool)
    mask = _as_array(mask, "mask", (None, NUM_WAYPOINTS), dtype=bool)
    _check_same_samples("collision_rates", colliding=colliding, mask=mask)
    return _by_convention((colliding & mask).astype(np.float64), mask)


def planning_metrics(pred, gt, mask, boxes, subset: np.ndarray | None = None,
                     ignore_gt_collisions: bool = True, ego_size=EGO_SIZE) -> dict:
    """L2 error (metres) and collision rate (fraction) in both conventions, on all samples and on a subset.

    pred, gt: (N, 6, 2); mask: (N, 6) bool; boxes: as for `collisions`; subset: (N,) bool or None, e.g. the samples
    whose command is not 'straight'. With `ignore_gt_collisions` a waypoint where the ground-truth ego box itself
    overlaps an agent is not counted as a collision (ST-P3, VAD and UniAD do this: such overlaps are annotation
    noise, and no planner should be blamed for them). ego_size: as for `collisions`.

    Returns {'num_samples', 'l2_m': l2_errors(...), 'collision_rate': collision_rates(...)} plus, given a subset,
    'subset': the same three keys on it.
    """
    pred = _as_array(pred, "pred", (None, NUM_WAYPOINTS, 2))
    gt = _as_array(gt, "gt", (None, NUM_WAYPOINTS, 2))
    mask = _as_array(mask, "mask", (None, NUM_WAYPOINTS), dtype=bool)
    num_samples = _check_same_samples("planning_metrics", pred=pred, gt=gt, mask=mask)
    colliding = collisions(pred, boxes, mask, ego_size)
    if ignore_gt_collisions:
        colliding &= ~collisions(gt, boxes, mask, ego_size)

    def summary(rows: np.ndarray | slice) -> dict:
        return {"num_samples": int(mask[rows].shape[0]), "l2_m": l2_errors(pred[rows], gt[rows], mask[rows]),
                "collision_rate": collision_rates(colliding[rows], mask[rows])}

    results = summary(slice(None))
    if subset is not None:
        subset = _as_array(subset, "subset", (num_samples,), dtype=bool)
        results["subset"] = summary(subset)
    return results
