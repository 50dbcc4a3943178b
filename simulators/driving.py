"""highway-env traffic scenarios with a nuScenes-like front camera: the driving simulator.

`DrivingSim("intersection")` wraps one highway-env scenario (IDM/MOBIL traffic). Each `step` advances
the simulation by `1 / sim_hz` seconds (10 Hz: one camera sweep); every `key_every`-th step (2 Hz by
default, as nuScenes' annotated samples) is a key frame. A step returns a `Frame`: the ego pose and
speed, every other vehicle's box, and (with `render=True`) the CAM_FRONT image that
`simulators.driving_camera` renders from the road network and the vehicles (`render=False` skips
it: `Frame.image` is None, and `camera_image()` renders the current state on demand).

All poses are in a right-handed nuScenes-like global frame (x, y on the ground, yaw counter-clockwise);
highway-env's screen-like frame (+y is the driver's right) is converted by `from_highway`.

The ego vehicle is driven by
- `driver="idm"`: highway-env's IDM (longitudinal) + MOBIL (lane changes) model following the
  scenario's route: the expert that writes the datasets and the closed-loop reference driver;
- `driver="external"`: a kinematic bicycle that follows `step((acceleration m/s^2, steering rad))`,
  for policies under test (e.g. a tracking controller following a model's waypoints).
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")  # pygame without a display; "dummy" renders black

from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402

__all__ = ["EVALUATION_SEEDS", "SCENARIOS", "VEHICLE_HEIGHT", "DrivingSim", "Frame", "check_scenario"]

# Scenario -> (highway-env id, config overrides). Intersections pick a random exit (left, straight or
# right: "destination": None) so that the data holds turns.
SCENARIOS: dict[str, tuple[str, dict]] = {
    "highway": ("highway-v0", {"lanes_count": 3, "vehicles_count": 25, "vehicles_density": 1.2}),
    "merge": ("merge-v0", {}),
    "intersection": ("intersection-v0", {"destination": None, "initial_vehicle_count": 8, "spawn_probability": 0.4}),
    "roundabout": ("roundabout-v0", {}),
}
VEHICLE_HEIGHT = 1.6  # metres; highway-env vehicles are flat rectangles (5.0 x 2.0 m)
# Scene seeds at or above this are the closed-loop evaluation's; written data stay below it, so no evaluation
# episode replays a training scene.
EVALUATION_SEEDS = 10**6
# The IDM ego's desired speed is drawn per scene in this range (fraction of the scenario's default) for variety.
_SPEED_JITTER = (0.8, 1.15)


def check_scenario(name: str) -> str:
    """Return `name` if it is a known scenario, else raise ValueError listing them."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown driving scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return name


@dataclass
class Frame:
    """The world at one simulation step (global frame, metres, radians, seconds).

    ego: (3,) x, y, yaw of the ego vehicle's centre; agents: (M, 6) x, y, yaw, length, width, height of the
    other vehicles; agent_ids: (M,) track ids, stable within a scene; image: uint8 (H, W, 3) or None.
    """

    time: float
    key: bool
    ego: np.ndarray
    ego_speed: float
    ego_size: tuple[float, float, float]
    agents: np.ndarray
    agent_ids: np.ndarray
    agent_speeds: np.ndarray
    crashed: bool
    on_road: bool
    image: np.ndarray | None = field(default=None, repr=False)


class DrivingSim:
    """One highway-env scenario, stepped at `sim_hz` with an ego camera (see the module docstring)."""

    def __init__(self, scenario: str, driver: str = "idm", camera=None, sim_hz: int = 10, key_every: int = 5,
                 render: bool = True):
        import gymnasium as gym
        import highway_env  # noqa: F401  (registers the envs)

        from .driving_camera import front_camera

        self.scenario = check_scenario(scenario)
        if driver not in ("idm", "external"):
            raise ValueError(f"driver must be 'idm' or 'external', got {driver!r}")
        if sim_hz < 1 or key_every < 1:
            raise ValueError(f"need sim_hz >= 1 and key_every >= 1, got {sim_hz}, {key_every}")
        env_id, overrides = SCENARIOS[scenario]
        # manual_control: env.step leaves the ego's controls alone (we set them), one env step = one sim step.
        config = {**overrides, "simulation_frequency": sim_hz, "policy_frequency": sim_hz, "duration": 10_000,
                  "manual_control": True, "offroad_terminal": False}
        with warnings.catch_warnings():  # the -v0 scenarios are "out of date" for gymnasium; they are the ones we want
            warnings.simplefilter("ignore", DeprecationWarning)
            self._env = gym.make(env_id, config=config).unwrapped
        self.driver = self.initial_driver = driver
        self.sim_hz, self.key_every, self.rendering = sim_hz, key_every, render
        self.camera = camera or front_camera()
        self.route: list | None = None
        self._geometry = None
        self._steps = 0
        # Vehicles -> track ids, keyed by the vehicle objects themselves (kept alive here): keyed by id(), a car
        # spawned at a removed car's freed address took over its track.
        self._track_ids: dict[object, int] = {}

    @property
    def dt(self) -> float:
        return 1.0 / self.sim_hz

    @property
    def road(self):
        return self._env.road

    @property
    def ego(self):
        """The highway-env ego vehicle (IDMVehicle or Vehicle)."""
        return self._env.controlled_vehicles[0]

    def reset(self, seed: int) -> Frame:
        """Start a new scene (the same seed gives the same traffic); returns the first (key) frame."""
        from highway_env.vehicle.behavior import IDMVehicle

        from .driving_camera import road_geometry

        self._env.reset(seed=int(seed))
        self.driver = self.initial_driver
        original = self._env.controlled_vehicles[0]
        self.route = list(original.route) if getattr(original, "route", None) else None
        if self.driver == "idm":
            ego = IDMVehicle.create_from(original)
            rng = np.random.default_rng(seed)
            # Start at the drawn desired speed: IDM would otherwise brake hard (~4 m/s^2) from a faster start.
            ego.target_speed = ego.speed = float(original.target_speed) * rng.uniform(*_SPEED_JITTER)
            self._replace_ego(ego)
        else:
            self.take_control()
        self._geometry = road_geometry(self.road)
        self._steps = 0
        self._track_ids = {}
        return self._frame()

    def take_control(self) -> None:
        """Hand the ego over to external control (e.g. after an IDM-driven warm-up): a kinematic bicycle at the
        same position, heading and speed; from now on `step` needs an action."""
        from highway_env.vehicle.kinematics import Vehicle

        current = self.ego
        ego = Vehicle(self.road, current.position.copy(), heading=current.heading, speed=current.speed)
        ego.action = {"acceleration": 0.0, "steering": 0.0}
        self._replace_ego(ego)
        self.driver = "external"

    def _replace_ego(self, ego) -> None:
        vehicles = self.road.vehicles
        vehicles[vehicles.index(self.ego)] = ego
        self._env.controlled_vehicles[0] = ego
        self._env.action_type.controlled_vehicle = ego

    def step(self, action: tuple[float, float] | np.ndarray | None = None) -> Frame:
        """Advance one sim step. `action` = (acceleration m/s^2, steering rad, + = left) for driver="external"."""
        if self.driver == "external":
            if action is None or np.shape(action) != (2,):
                raise ValueError(f"driver='external' needs an action (acceleration, steering) of shape (2,), got {action!r}")
            # highway-env's steering is positive to the driver's right: flip it into the left-positive convention.
            self.ego.action = {"acceleration": float(action[0]), "steering": -float(action[1])}
        elif action is not None:
            raise ValueError("driver='idm' drives itself: step() takes no action")
        self._env.step(None)
        self._steps += 1
        return self._frame()

    def _frame(self) -> Frame:
        from .driving_camera import box_rows, highway_objects, vehicle_pose

        ego = self.ego
        others = highway_objects(self.road, exclude=ego, vehicles_only=True)
        ids = np.array([self._track_ids.setdefault(v, len(self._track_ids)) for v in others], dtype=np.int64)
        agents = box_rows(others, VEHICLE_HEIGHT)
        agents[:, 2] = _wrap(agents[:, 2])
        ego_pose = np.array(vehicle_pose(ego), dtype=np.float64)
        ego_pose[2] = _wrap(ego_pose[2])
        key = self._steps % self.key_every == 0
        image = self._render(ego_pose, agents, ids) if self.rendering else None
        return Frame(time=self._steps * self.dt, key=key, ego=ego_pose, ego_speed=float(ego.speed),
                     ego_size=(float(ego.LENGTH), float(ego.WIDTH), VEHICLE_HEIGHT), agents=agents, agent_ids=ids,
                     agent_speeds=np.array([v.speed for v in others], dtype=np.float64), crashed=bool(ego.crashed),
                     on_road=bool(ego.on_road), image=image)

    def camera_image(self) -> np.ndarray:
        """The CAM_FRONT image of the current state, uint8 (H, W, 3) (also when constructed with render=False)."""
        frame = self._frame()
        return self._render(frame.ego, frame.agents, frame.agent_ids)

    def _render(self, ego_pose: np.ndarray, agents: np.ndarray, ids: np.ndarray) -> np.ndarray:
        from .driving_camera import render_camera

        return render_camera(self._geometry, tuple(ego_pose), agents, self.camera, colors=_colors(ids))

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> "DrivingSim":
        return self

    def __exit__(self, *_) -> None:
        self.close()


def _wrap(angle):
    """Angles into [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


_PALETTE = np.array([[200, 40, 40], [40, 90, 200], [230, 230, 230], [40, 40, 40], [220, 180, 40], [60, 150, 70],
                     [150, 150, 160], [120, 60, 160]], dtype=np.uint8)


def _colors(track_ids: np.ndarray) -> np.ndarray:
    """(M,) track ids -> (M, 3) uint8 body colours, fixed per track (a car keeps its colour across frames)."""
    return _PALETTE[track_ids % len(_PALETTE)]
