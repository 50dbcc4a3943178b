"""Closed-loop driving in highway-env: a planner's waypoints, followed by a tracking controller, drive the car.

Every key frame (0.5 s) the planner gets what the car knows (command, ego status, ego history, the
last camera frames rendered by the simulator) and returns 6 waypoints; between key frames a
pure-pursuit controller (steering) and a proportional speed controller (acceleration) follow them
at the simulation rate. Episodes of one scenario run in lock-step, so the planner sees a batch.

Per episode: `collision` (the ego crashed), `off_road` (the ego left every lane), `finished` (it left the
lanes where the map ends, past the end of its route: no infraction, the episode is over), `progress`
(metres driven along the scenario's route before the first collision, off-road or finishing event) and a composite
`score` = min(1, progress / the IDM driver's progress on the same seed) x (no collision) x (on road),
a nuPlan-style multiplicative score in [0, 1].

Planners: "idm" (highway-env's IDM/MOBIL driver itself: the reference, no tracking controller),
"constant_velocity" and a `DrivingModel`. The command comes from the route as VAD's comes from the
future: the lateral offset of the route point 3 s ahead (at the current speed, >= 6 m).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .loader import FUTURE_STEPS, HISTORY_STEPS, command_from_future, ego_status, resize_frames, to_ego_frame
from .model import PLAN_SAMPLES

__all__ = ["Planner", "reference_path", "route_command", "pure_pursuit", "run_episodes", "constant_velocity_planner",
           "model_planner", "summarise", "evaluate_closed_loop"]

# contexts -> plans (B, 6, 2) in each car's ego frame
Planner = Callable[[list], np.ndarray]
WAYPOINT_DT = 0.5
LOOKAHEAD_S, MIN_LOOKAHEAD = 0.8, 5.0  # pure pursuit look-ahead: 0.8 s of travel, at least 5 m
SPEED_GAIN, ACCEL_LIMITS = 1.5, (-6.0, 3.0)
COMMAND_PATH_M = 200.0  # the route ahead the command reads (3 s ahead, under 120 m below 40 m/s)


def _lanes_ahead(sim, length: float) -> list[tuple]:
    """Lane indices from the ego's lane on, `length` m of them where the map has them: the scenario's route from
    the ego's road (each road's lane as highway-env's `next_lane` picks it: the same lane where the lane counts
    match, else the nearest), then the lanes that carry straight on from the last one (one that starts where it
    ends, heading the same way), until the map ends. Without a route: the lanes that follow, the same way."""
    network, first = sim.road.network, sim.ego.lane_index
    roads = [r[:2] for r in sim.route or []]
    route = list(sim.route[roads.index(first[:2]):]) if first[:2] in roads else []
    lanes, total = [first], network.get_lane(first).length
    while total < length:
        lane = network.get_lane(lanes[-1])
        end = lane.position(lane.length, 0.0)
        if route and route[0][:2] == lanes[-1][:2]:
            route.pop(0)  # then the route's next road, if any, starts where this lane ends
        following = network.next_lane(lanes[-1], route=route, position=end)
        # A route's roads join as highway-env draws them (a roundabout's entry meets the ring 5 m away, 47 degrees
        # off); past the route, only a lane that carries on.
        if following == lanes[-1] or not (route or _carries_on(lane, network.get_lane(following))):
            break
        lanes.append(following)
        total += network.get_lane(following).length
    return lanes


def _carries_on(lane, following) -> bool:
    """Whether highway-env lane `following` starts where `lane` ends (within 1 m), heading the same way (within
    60 degrees): not the inbound lane at an exit's far end (a U-turn) nor a jump."""
    gap = np.linalg.norm(following.position(0.0, 0.0) - lane.position(lane.length, 0.0))
    turn = np.angle(np.exp(1j * (following.heading_at(0.0) - lane.heading_at(lane.length))))
    return gap < 1.0 and abs(turn) < np.pi / 3


def reference_path(sim, length: float = 800.0, spacing: float = 1.0) -> np.ndarray:
    """(K, 2) global-frame polyline of the ego's way ahead, `length` m every `spacing` m: the centre lines of
    `_lanes_ahead`, then straight on past their end."""
    from simulators.driving_camera import from_highway

    network = sim.road.network
    points, s0 = [], sim.ego.lane.local_coordinates(sim.ego.position)[0]
    for index in _lanes_ahead(sim, length):
        lane = network.get_lane(index)
        points += [lane.position(v, 0.0) for v in np.arange(max(s0, 0.0), lane.length, spacing)]
        s0 = 0.0
        if len(points) * spacing >= length:
            break
    end, heading = lane.position(lane.length, 0.0), lane.heading_at(lane.length)
    extra = np.arange(spacing, max(length - len(points) * spacing, 0.0) + spacing, spacing)
    points += [end + d * np.array([np.cos(heading), np.sin(heading)]) for d in extra]
    xy = np.array(points[: int(length / spacing)], dtype=np.float64)
    x, y, _ = from_highway(xy[:, 0], xy[:, 1], np.zeros(len(xy)))
    return np.stack([x, y], axis=1)


def _route_end(sim, path: np.ndarray, arc: np.ndarray, length: float = 800.0) -> float:
    """Arc length along `path` (`reference_path(sim, length)`) where the lanes of the ego's way ahead end (its
    route, then the lanes that carry on from it): the map stops there (the path goes straight on)."""
    from simulators.driving_camera import from_highway

    lane = sim.road.network.get_lane(_lanes_ahead(sim, length)[-1])
    x, y, _ = from_highway(*lane.position(lane.length, 0.0), 0.0)
    return _project(path, arc, np.array([x, y]))


def _arc_length(path: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])


def _project(path: np.ndarray, arc: np.ndarray, point: np.ndarray, near: float | None = None,
             window: float = 60.0) -> float:
    """Arc length (from `arc` = `_arc_length(path)`) of the path point nearest to `point`, searched within `window`
    m around arc length `near` when given (so that a path that loops, as in a roundabout, is followed rather than
    jumped)."""
    candidates = np.arange(len(path)) if near is None else np.flatnonzero(np.abs(arc - near) <= window)
    if candidates.size == 0:
        candidates = np.arange(len(path))
    best = candidates[int(np.argmin(np.linalg.norm(path[candidates] - point[:2], axis=1)))]
    return float(arc[best])


def route_command(path: np.ndarray, ego: np.ndarray, speed: float, horizon: float = 3.0) -> int:
    """The command (0 right, 1 left, 2 straight) for ego pose (3,): VAD's rule on the route point `horizon` s ahead."""
    arc = _arc_length(path)
    target = _project(path, arc, ego) + max(speed * horizon, 6.0)
    point = path[min(int(np.searchsorted(arc, target)), len(path) - 1)]
    return command_from_future(to_ego_frame(point[None], ego))


def pure_pursuit(plan: np.ndarray, speed: float, wheelbase: float) -> tuple[float, float]:
    """Controls (acceleration m/s^2, steering rad, + = left) to follow `plan` (6, 2), given in the current ego frame.

    Steering: pure pursuit towards the plan point `LOOKAHEAD_S` s of travel ahead, inverted through
    highway-env's bicycle model (yaw rate = v sin(beta) / (L / 2), tan(delta) = 2 tan(beta)).
    Speed: the plan's speed between 0.5 and 1.5 s, tracked proportionally.
    """
    path = np.concatenate([np.zeros((1, 2)), plan])
    arc = _arc_length(path)
    lookahead = max(LOOKAHEAD_S * max(speed, 0.0), MIN_LOOKAHEAD)
    if arc[-1] < 1e-3:  # a plan that stays put: brake, wheels straight
        return ACCEL_LIMITS[0], 0.0
    target = np.array([np.interp(lookahead, arc, path[:, 0]), np.interp(lookahead, arc, path[:, 1])])
    if lookahead > arc[-1]:  # beyond the plan: extend its last segment
        direction = path[-1] - path[-2]
        target = path[-1] + direction / max(np.linalg.norm(direction), 1e-6) * (lookahead - arc[-1])
    distance = max(float(np.linalg.norm(target)), 1e-3)
    curvature = 2.0 * target[1] / distance**2  # 2 sin(alpha) / L_d
    beta = np.arcsin(np.clip(curvature * wheelbase / 2, -1.0, 1.0))
    steering = float(np.arctan(2 * np.tan(beta)))
    # The plan's own speed from 0.5 to 1.5 s (waypoint spacing does not change as the car moves along the plan).
    desired = float(np.linalg.norm(np.diff(plan[:3], axis=0), axis=1).mean() / WAYPOINT_DT)
    acceleration = float(np.clip(SPEED_GAIN * (desired - speed), *ACCEL_LIMITS))
    return acceleration, steering


def constant_velocity_planner(contexts: list) -> np.ndarray:
    """The constant-velocity baseline as a planner."""
    from .baselines import constant_velocity

    return constant_velocity(np.stack([c.history for c in contexts]), np.stack([c.history_mask for c in contexts]),
                             np.stack([c.status for c in contexts]))


def model_planner(model, samples: int = PLAN_SAMPLES, seed: int = 0) -> Planner:
    """A `DrivingModel` as a planner: the trajectory decoded alone, the median of `samples` drawn plans
    (one: greedy); see `DrivingModel.plan`."""
    generator = torch.Generator().manual_seed(seed)
    return lambda contexts: model.plan(contexts, samples=samples, generator=generator)


@dataclass
class _Car:
    """One closed-loop episode's running state."""

    sim: object
    path: np.ndarray  # the route ahead (reference_path) and its arc lengths
    arc: np.ndarray
    poses: list  # (x, y, yaw) at every sim step, oldest first
    times: list
    key_poses: list  # at key frames
    key_images: list
    start: float = 0.0  # arc length along `path` where control began
    along: float = 0.0  # arc length now
    end: float = np.inf  # arc length where the route's lanes (the map) end
    plan_global: np.ndarray | None = None
    collision: bool = False
    off_road: bool = False
    finished: bool = False  # left the lanes at the map's end (within a car length of it), not an infraction
    stopped: bool = False  # an infraction happened, or finished: progress stops counting

    def record(self, frame, image: bool) -> None:
        self.poses.append(frame.ego)
        self.times.append(frame.time)
        if frame.key:
            self.key_poses.append(frame.ego)
            if image:
                self.key_images.append(self.sim.camera_image())
        if not self.stopped:
            self.along = _project(self.path, self.arc, frame.ego, near=self.along)
            if frame.crashed or not frame.on_road:
                length = frame.ego_size[0]
                self.finished = not frame.crashed and self.along >= self.end - length
                self.collision, self.off_road, self.stopped = frame.crashed, not (frame.on_road or self.finished), True


def run_episodes(scenario: str, seeds: list[int], planner: Planner | str, duration: float = 15.0,
                 warmup: float = 2.0, image_size: int = 64, past_frames: int = 2, camera_width: int = 320,
                 progress: bool = False) -> list[dict]:
    """Drive one episode per seed with `planner` ("idm", or a callable on contexts); returns per-episode results.

    Each episode starts with `warmup` seconds driven by IDM (so the planner has an ego history, a measured
    status and past frames, as a nuScenes sample has); then the planner drives for `duration` seconds.
    """
    from tqdm.auto import tqdm

    from simulators.driving import DrivingSim
    from simulators.driving_camera import front_camera

    from .model import Context

    idm = planner == "idm"
    camera = front_camera(camera_width)
    cars, sims = [], []
    try:
        for seed in seeds:
            sim = DrivingSim(scenario, driver="idm", camera=camera, render=False)
            sims.append(sim)
            frame = sim.reset(seed)
            path = reference_path(sim)
            car = _Car(sim, path, _arc_length(path), [], [], [], [])
            car.end = _route_end(sim, path, car.arc)
            car.along = _project(car.path, car.arc, frame.ego)
            car.record(frame, image=not idm)
            cars.append(car)
        sim_hz, key_every = cars[0].sim.sim_hz, cars[0].sim.key_every
        warmup_steps = int(round(warmup * sim_hz / key_every)) * key_every  # control starts on a key frame
        for _ in range(warmup_steps):
            for car in cars:
                car.record(car.sim.step(), image=not idm)
        for car in cars:
            car.start = car.along
            if not idm:
                car.sim.take_control()
        for step in tqdm(range(int(round(duration * sim_hz))), desc=f"closed loop {scenario}", disable=not progress):
            if step % key_every == 0 and not idm:
                contexts = [_context(car, past_frames, image_size, Context) for car in cars]
                plans = np.asarray(planner(contexts), dtype=np.float64)
                if plans.shape != (len(cars), FUTURE_STEPS, 2):
                    raise ValueError(f"the planner returned plans of shape {plans.shape}, expected ({len(cars)}, 6, 2)")
                for car, plan in zip(cars, plans):
                    car.plan_global = _to_global(plan, car.poses[-1])
            for car in cars:
                if idm:
                    frame = car.sim.step()
                else:
                    local = to_ego_frame(car.plan_global, car.poses[-1])
                    frame = car.sim.step(pure_pursuit(local, car.sim.ego.speed, car.sim.ego.LENGTH))
                car.record(frame, image=not idm)
    finally:
        for sim in sims:
            sim.close()
    return [{"seed": seed, "collision": car.collision, "off_road": car.off_road, "finished": car.finished,
             "progress": round(max(car.along - car.start, 0.0), 2)} for seed, car in zip(seeds, cars)]


def _to_global(plan: np.ndarray, ego: np.ndarray) -> np.ndarray:
    c, s = np.cos(ego[2]), np.sin(ego[2])
    return np.stack([ego[0] + c * plan[:, 0] - s * plan[:, 1], ego[1] + s * plan[:, 0] + c * plan[:, 1]], axis=1)


def _context(car: _Car, past_frames: int, image_size: int, context_type):
    """What the car knows now, as the nuScenes loader would give it (history at key frames, status from poses)."""
    ego = car.poses[-1]
    past = car.key_poses[:-1][-HISTORY_STEPS:]  # control starts on a key frame: the last key pose is now
    history = np.zeros((HISTORY_STEPS, 2))
    mask = np.zeros(HISTORY_STEPS, dtype=bool)
    if past:
        history[-len(past):] = to_ego_frame(np.array(past)[:, :2], ego)
        mask[-len(past):] = True
    poses, times = np.array(car.poses[::-1][:3]), np.array(car.times[::-1][:3])
    images = car.key_images[-past_frames:]
    images = [images[0]] * (past_frames - len(images)) + images  # before the start: the first frame again
    speed_status = ego_status(poses, times)
    # From the lane the car is in now, not the episode's first: after a lane change, a path along the first lane
    # would lie a lane's width to the side, and the command would say "turn" until the episode ends.
    command = route_command(reference_path(car.sim, COMMAND_PATH_M), ego, max(speed_status[0], 0.0))
    return context_type(command, speed_status, history, mask, resize_frames(np.stack(images), image_size))


def summarise(episodes: dict[str, list[dict]], reference: str = "idm") -> dict:
    """Per planner: collision rate, off-road rate, finished rate (reached the map's end), mean progress (m) and mean
    score against `reference`'s progress."""
    base = {e["seed"]: e["progress"] for e in episodes[reference]}
    out = {}
    for name, rows in episodes.items():
        scores = []
        for e in rows:
            ratio = min(1.0, e["progress"] / base[e["seed"]]) if base.get(e["seed"], 0) > 0 else 1.0
            scores.append(ratio * (not e["collision"]) * (not e["off_road"]))
            e["score"] = round(scores[-1], 4)
        out[name] = {"episodes": len(rows), "collision_rate": float(np.mean([e["collision"] for e in rows])),
                     "off_road_rate": float(np.mean([e["off_road"] for e in rows])),
                     "finished_rate": float(np.mean([e.get("finished", False) for e in rows])),
                     "progress_m": float(np.mean([e["progress"] for e in rows])), "score": float(np.mean(scores))}
    return out


def evaluate_closed_loop(model, episodes: int = 20, duration: float = 15.0, seed: int = 0,
                         scenarios: tuple[str, ...] | None = None, plan_samples: int = PLAN_SAMPLES, progress: bool = True
                         ) -> dict:
    """`episodes` seeded episodes per scenario for the model (planning as `model_planner(model, plan_samples)`),
    the IDM driver and constant velocity.

    Returns {scenario: {"summary": summarise(...), "episodes": per-episode rows}} plus "all" (pooled summary).
    Seeds are disjoint from the data's scene seeds: episode i of a scenario uses `EVALUATION_SEEDS` + seed * 1000 + i.
    """
    from simulators.driving import EVALUATION_SEEDS, SCENARIOS

    out, pooled = {}, {"idm": [], "constant_velocity": [], "model": []}
    for scenario in scenarios or tuple(SCENARIOS):
        seeds = [EVALUATION_SEEDS + seed * 1000 + i for i in range(episodes)]
        # The model's plans drawn from a generator of the scenario's own, so its results do not depend on which
        # scenarios ran before it.
        planners = {"idm": "idm", "constant_velocity": constant_velocity_planner,
                    "model": model_planner(model, plan_samples, seed + 1_000_003 * tuple(SCENARIOS).index(scenario))}
        rows = {name: run_episodes(scenario, seeds, planner, duration, image_size=model.image_size,
                                   past_frames=model.past_frames, progress=progress)
                for name, planner in planners.items()}
        out[scenario] = {"summary": summarise(rows), "episodes": rows}
        for name in planners:
            pooled[name] += [{**row, "seed": (scenario, row["seed"])} for row in rows[name]]
    out["all"] = {"summary": summarise(pooled)}
    return out
