"""The nuScenes-format writer and the devkit-based loader."""

from __future__ import annotations

import json

import numpy as np
import pytest

from domains.driving.loader import TABLES, load_frames, load_samples, open_nuscenes, stack_samples


def test_simulated_folder_loads_with_the_devkit_and_cross_references(sim_nuscenes):
    nusc = open_nuscenes(sim_nuscenes, "v1.0-sim")
    assert len(nusc.scene) == 4
    assert {nusc.get("log", s["log_token"])["location"] for s in nusc.scene} == {
        "sim-highway", "sim-merge", "sim-intersection", "sim-roundabout"}
    for scene in nusc.scene:
        sample = nusc.get("sample", scene["first_sample_token"])
        stamps, count = [], 0
        while True:
            count += 1
            camera = nusc.get("sample_data", sample["data"]["CAM_FRONT"])
            assert camera["is_key_frame"] and (sim_nuscenes / camera["filename"]).is_file()
            pose = nusc.get("ego_pose", camera["ego_pose_token"])  # tokens resolve
            nusc.get("calibrated_sensor", camera["calibrated_sensor_token"])
            stamps.append(pose["timestamp"])
            for ann in sample["anns"]:
                record = nusc.get("sample_annotation", ann)
                assert nusc.get("instance", record["instance_token"])["category_token"]
            if not sample["next"]:
                break
            sample = nusc.get("sample", sample["next"])
        assert sample["token"] == scene["last_sample_token"] and count == scene["nbr_samples"]
        assert np.all(np.diff(stamps) == 500_000)  # key frames every 0.5 s, in time order
    sweeps = [sd for sd in nusc.sample_data if not sd["is_key_frame"]]
    assert len(sweeps) == 4 * (len(nusc.sample) - len(nusc.scene))  # 10 Hz camera: 4 sweeps between key frames
    # The logs name the simulated car, whose box the collision metrics then use: the size the simulator drove.
    from domains.driving.loader import SIM_EGO_SIZE

    assert {log["vehicle"] for log in nusc.log} == {"sim-ego"}
    recorded = {tuple(f["ego_size"][:2]) for p in (sim_nuscenes / ".scenes").glob("*.json")
                for f in json.loads(p.read_text())["frames"]}
    assert recorded == {SIM_EGO_SIZE}
    assert {s.ego_size for s in load_samples(sim_nuscenes, "v1.0-sim")} == {SIM_EGO_SIZE}
    # The map records cover every log and point at real PNGs.
    assert {t for m in nusc.map for t in m["log_tokens"]} == {log["token"] for log in nusc.log}
    assert all((sim_nuscenes / m["filename"]).is_file() for m in nusc.map)


def test_straight_constant_speed_drive_gives_straight_waypoints(straight_nuscenes):
    samples = load_samples(straight_nuscenes, "v1.0-sim")
    assert len(samples) == 13  # 6 s at 2 Hz, both ends included
    first = samples[0]
    # Ego frame: x forward, y left; 10 m/s -> 5 m per 0.5 s, whatever the global heading (0.3 rad here).
    np.testing.assert_allclose(first.future, [[5 * k, 0.0] for k in range(1, 7)], atol=1e-6)
    assert first.future_mask.all() and not first.history_mask.any()
    np.testing.assert_allclose(first.status, [10.0, 0.0, 0.0], atol=1e-3)
    assert first.command == 2  # straight
    # Future boxes are in the ego frame of now: the parked car is 30 m ahead, 3.5 m left at every future step.
    for boxes in first.boxes:
        np.testing.assert_allclose(boxes, [[30.0, 3.5, 0.0, 5.0, 2.0]], atol=1e-6)
    middle = samples[6]
    np.testing.assert_allclose(middle.history, [[-5 * k, 0.0] for k in (4, 3, 2, 1)], atol=1e-6)
    assert middle.history_mask.all() and middle.future_mask.all()
    last = samples[-1]  # the scene ends: no future
    assert not last.future_mask.any() and all(len(b) == 0 for b in last.boxes)
    assert list(samples[-3].future_mask) == [True, True, False, False, False, False]
    arrays = stack_samples(samples)
    assert arrays["history"].shape == (13, 4, 2) and arrays["future"].shape == (13, 6, 2)
    assert arrays["status"].shape == (13, 3) and arrays["command"].shape == (13,)
    frames = load_frames(first.frames + first.future_frames, 32)
    assert frames.shape == (4, 32, 32, 3) and frames.dtype == np.uint8
    assert first.frames[0] == first.frames[1] and not first.frame_mask[0]  # before the start: the first frame again


def test_turning_drive_commands_left_and_right(tmp_path):
    from domains.driving.loader import command_from_future

    assert command_from_future(np.array([[5.0, 0.5], [10.0, 2.5]])) == 1
    assert command_from_future(np.array([[5.0, -0.5], [10.0, -2.5]])) == 0
    assert command_from_future(np.array([[5.0, 0.5], [10.0, 1.5]])) == 2
    # The last *valid* waypoint decides.
    assert command_from_future(np.array([[5.0, 2.5], [0.0, 0.0]]), np.array([True, False])) == 1


def test_missing_table_unknown_version_and_missing_image_name_the_file(straight_nuscenes):
    with pytest.raises(ValueError, match=r"unknown nuScenes version 'v1.0-mini'.*versions in .*v1.0-sim"):
        open_nuscenes(straight_nuscenes, "v1.0-mini")
    image = straight_nuscenes / json.loads((straight_nuscenes / "v1.0-sim" / "sample_data.json").read_text())[0]["filename"]
    image.unlink()
    with pytest.raises(FileNotFoundError, match=str(image.name)):
        load_samples(straight_nuscenes, "v1.0-sim")
    (straight_nuscenes / "v1.0-sim" / "ego_pose.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"table missing: .*v1.0-sim/ego_pose.json"):
        open_nuscenes(straight_nuscenes, "v1.0-sim")
    assert "ego_pose" in TABLES


def test_written_scene_seeds_stay_below_the_closed_loop_evaluations(tmp_path):
    """Data seeds 10 and up would seed scenes that the closed-loop evaluation drives (>= EVALUATION_SEEDS)."""
    from domains.driving.nuscenes_writer import write_nuscenes
    from simulators.driving import EVALUATION_SEEDS

    assert 9 * 100_003 + 20 < EVALUATION_SEEDS
    for seed in (10, -1):
        with pytest.raises(ValueError, match=rf"data seed {seed} with 20 scenes .* \[0, {EVALUATION_SEEDS}\)"):
            write_nuscenes(tmp_path, scenes=20, seed=seed, workers=1, progress=False)
    assert not any(tmp_path.iterdir())  # refused before writing anything
