"""Fixtures for the driving tests: nuScenes-format folders, simulated and hand-made."""

from __future__ import annotations

import numpy as np
import pytest


def straight_drive_record(root, speed: float = 10.0, seconds: float = 6.0, yaw: float = 0.3, width: int = 64,
                          sim_hz: int = 10, key_every: int = 5) -> dict:
    """A scene record (as `record_scene` returns) of a car driving straight at constant speed along `yaw`, with
    one parked car 30 m ahead, 3.5 m to its left; writes small JPEGs under `root`."""
    from PIL import Image

    from domains.driving.nuscenes_writer import CHANNEL, TIME_ORIGIN_US

    direction = np.array([np.cos(yaw), np.sin(yaw)])
    left = np.array([-direction[1], direction[0]])
    parked = np.concatenate([100.0 * direction + 30 * direction + 3.5 * left, [yaw, 5.0, 2.0, 1.6]])
    frames = []
    for step in range(int(seconds * sim_hz) + 1):
        t = step / sim_hz
        stamp = TIME_ORIGIN_US + int(round(t * 1e6))
        key = step % key_every == 0
        filename = f"{'samples' if key else 'sweeps'}/{CHANNEL}/straight__{stamp}.jpg"
        path = root / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((36, width, 3), step * 3 % 255, np.uint8)).save(path)
        x, y = 100.0 * direction + speed * t * direction
        frames.append({"timestamp": stamp, "key": key, "ego": [x, y, yaw], "speed": speed, "ego_size": [5.0, 2.0, 1.6],
                       "agents": [parked.tolist()], "agent_ids": [0], "crashed": False, "filename": filename})
    return {"index": 0, "name": "scene-0000", "scenario": "highway", "seed": 0, "camera_width": width,
            "sim_hz": sim_hz, "frames": frames}


@pytest.fixture
def straight_nuscenes(tmp_path):
    """A one-scene nuScenes folder (v1.0-sim) of a straight constant-speed drive at 10 m/s: its root."""
    from domains.driving.nuscenes_writer import write_tables

    write_tables(tmp_path, [straight_drive_record(tmp_path)])
    return tmp_path


@pytest.fixture(scope="session")
def sim_nuscenes(tmp_path_factory):
    """A small simulated nuScenes folder: one 8 s scene of each scenario type, 96 px wide camera: its root."""
    from domains.driving.nuscenes_writer import write_nuscenes

    root = tmp_path_factory.mktemp("nuscenes-sim")
    write_nuscenes(root, scenes=4, duration=8.0, camera_width=96, workers=1, progress=False)
    return root
