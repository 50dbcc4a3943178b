"""The front camera renders highway-env scenes the right way round: shapes, left/right, near-plane clipping."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

gym = pytest.importorskip("gymnasium")
pytest.importorskip("highway_env")

from simulators.driving_camera import (ASPHALT, RoadGeometry, front_camera, from_highway,  # noqa: E402
                                       highway_boxes, project_points, render_camera, road_geometry, vehicle_pose)

SCENARIOS = ("highway-v0", "merge-v0", "intersection-v0", "roundabout-v0")
pytestmark = pytest.mark.filterwarnings("ignore:.*is out of date:DeprecationWarning")  # gymnasium on v0 envs


def _env(name: str):
    import highway_env  # noqa: F401  (registers the envs)

    env = gym.make(name)
    env.reset(seed=0)
    return env


@pytest.fixture(scope="module")
def highway():
    env = _env("highway-v0")
    yield env.unwrapped
    env.close()


@pytest.fixture(scope="module")
def scene(highway):
    """(geometry, ego pose) of highway-v0, seed 0."""
    return road_geometry(highway.road), vehicle_pose(highway.vehicle)


def _box(pose, ahead: float, left: float = 0.0) -> np.ndarray:
    """(1, 6) car box `ahead` metres in front of the ego and `left` metres to its left, same heading."""
    x, y, yaw = pose
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[x + c * ahead - s * left, y + s * ahead + c * left, yaw, 4.5, 1.9, 1.5]])


def _drawn(geometry, pose, box, camera, color=(220, 30, 30)) -> np.ndarray:
    """(H, W) bool: pixels that change when `box` is added to an empty road scene."""
    empty = render_camera(geometry, pose, np.zeros((0, 6)), camera)
    with_box = render_camera(geometry, pose, box, camera, colors=np.array([color], dtype=np.uint8))
    return np.abs(with_box.astype(int) - empty).sum(axis=-1) > 0


@pytest.mark.parametrize("width, height", [(96, 54), (320, 180)])
def test_image_shape_and_dtype(scene, highway, width, height):
    geometry, pose = scene
    image = render_camera(geometry, pose, highway_boxes(highway.road, exclude=highway.vehicle), front_camera(width))
    assert image.shape == (height, width, 3) and image.dtype == np.uint8
    assert image[: height // 4].mean(axis=(0, 1))[2] > image[-height // 4:].mean(axis=(0, 1))[2]  # sky above


def test_turning_left_moves_the_scene_right(scene):
    geometry, pose = scene
    camera = front_camera(96)
    box = _box(pose, ahead=20.0)
    turned = (pose[0], pose[1], pose[2] + 0.2)  # yaw to the left
    assert not np.array_equal(render_camera(geometry, pose, box, camera), render_camera(geometry, turned, box, camera))
    before = np.nonzero(_drawn(geometry, pose, box, camera))[1].mean()
    after = np.nonzero(_drawn(geometry, turned, box, camera))[1].mean()
    assert after > before + 5


def test_left_is_left_and_behind_is_invisible(scene, highway):
    geometry, pose = scene
    camera = front_camera(96)
    # A smaller highway-env y is the driver's left: convert a highway-env position as the simulator gives it.
    hx, hy = highway.vehicle.position
    x, y, _ = from_highway(hx + 20.0, hy - 4.0, highway.vehicle.heading)
    left = np.array([[x, y, pose[2], 4.5, 1.9, 1.5]])
    assert np.nonzero(_drawn(geometry, pose, left, camera))[1].mean() < camera.width / 2
    assert np.nonzero(_drawn(geometry, pose, _box(pose, 20.0, left=-4.0), camera))[1].mean() > camera.width / 2
    assert not _drawn(geometry, pose, _box(pose, -12.0), camera).any()


def test_ground_ahead_projects_below_the_horizon(scene):
    _, pose = scene
    camera = front_camera(320)
    (u, v), depth = (a[0] for a in project_points(np.array([[pose[0] + 10.0, pose[1]]]), pose, camera))
    cx, cy = camera.intrinsic[:2, 2]
    assert depth > 0 and v > cy + 5 and abs(u - cx) < 1.0
    behind, _ = project_points(np.array([[pose[0] - 10.0, pose[1]]]), pose, camera)
    assert np.isnan(behind).all()


def test_far_vehicles_look_smaller(scene):
    geometry, pose = scene
    camera = front_camera(96)
    near, far = (_drawn(geometry, pose, _box(pose, ahead), camera).sum() for ahead in (12.0, 48.0))
    assert 0 < far < near / 4


def test_road_crossing_the_near_plane_is_clipped_not_mirrored():
    # One road piece from 10 m behind to 10 m ahead of the ego: projected with negative depth, its rear half
    # would land above the horizon; clipped at the near plane, it fills the bottom of the image only.
    geometry = RoadGeometry([np.array([[-10.0, -3.0], [10.0, -3.0], [10.0, 3.0], [-10.0, 3.0]])], [], [])
    camera = front_camera(96)
    image = render_camera(geometry, (0.0, 0.0, 0.0), np.zeros((0, 6)), camera, supersample=1)
    asphalt = (image == ASPHALT).all(axis=-1)
    horizon = int(camera.intrinsic[1, 2])
    assert asphalt[-1, camera.width // 2] and not asphalt[: horizon + 1].any()


def test_from_highway_turns_a_left_lane_change_into_increasing_y():
    env = _env("highway-v0")
    try:
        ego = env.unwrapped.vehicle
        start = ego.position.copy()
        for _ in range(3):
            env.step(0)  # LANE_LEFT
        assert ego.position[1] < start[1] - 1.0  # highway-env: y decreases to the driver's left
        assert from_highway(*ego.position, ego.heading)[1] > from_highway(*start, 0.0)[1] + 1.0
    finally:
        env.close()
    x, y, yaw = from_highway(np.array([1.0, 2.0]), np.array([3.0, -4.0]), np.array([0.1, -0.2]))
    np.testing.assert_allclose(np.stack([x, y, yaw]), [[1, 2], [-3, 4], [-0.1, 0.2]])


@pytest.mark.parametrize("name", SCENARIOS)
def test_road_geometry_of_every_scenario(name):
    env = _env(name)
    try:
        road, ego = env.unwrapped.road, env.unwrapped.vehicle
        geometry = road_geometry(road)
        assert geometry.surfaces and geometry.solid_lines and geometry.dashed_lines
        image = render_camera(geometry, vehicle_pose(ego), highway_boxes(road, exclude=ego), front_camera(96))
        bottom = image[image.shape[0] // 2:]
        assert (np.abs(bottom.astype(int) - ASPHALT).sum(axis=-1) < 12).mean() > 0.2  # the road is in view
    finally:
        env.close()
