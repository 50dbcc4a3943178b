"""Write simulated driving scenes as a nuScenes-format dataset that `nuscenes-devkit` loads.

    write_nuscenes(root, scenes=20)      # root/v1.0-sim/*.json, root/samples/CAM_FRONT/*.jpg, root/sweeps/..., root/maps/

Layout (as the real nuScenes; only CAM_FRONT is recorded):

    root/<version>/   the 13 tables: attribute, calibrated_sensor, category, ego_pose, instance, log, map,
                      sample, sample_annotation, sample_data, scene, sensor, visibility (.json)
    root/samples/CAM_FRONT/*.jpg   key frames (2 Hz), each the `sample_data` of one `sample`
    root/sweeps/CAM_FRONT/*.jpg    the frames between key frames (10 Hz camera in all)
    root/maps/<scenario>.png       a drivable-area raster per scenario (1 px = 1 m), one `map` record each

One scene per highway-env episode (20 s by default, cut short when the ego crashes), one log per scene.
Scenes rotate through the scenario types. Ego poses are the ego vehicle's centre on the ground; every
other vehicle within `annotation_range` metres is annotated at each key frame as `vehicle.car`
(`size` = width, length, height as in nuScenes), with one `instance` per track.

Resumable: each finished scene is recorded in `root/.scenes/NNNN.json` (its images already written);
a rerun skips those scenes and rebuilds the tables from all of them.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .loader import SIM_VEHICLE

__all__ = ["write_nuscenes", "record_scene", "write_tables", "DEFAULT_VERSION"]

DEFAULT_VERSION = "v1.0-sim"
CHANNEL = "CAM_FRONT"
TIME_ORIGIN_US = 1_600_000_000_000_000  # timestamps in microseconds, as nuScenes'
_SCENE_GAP_US = 10**9  # scenes 1000 s apart on the time axis


def token(*parts) -> str:
    """A stable 32-hex-digit token (nuScenes style) from the given parts."""
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def _yaw_quaternion(yaw: float) -> list[float]:
    """Rotation about +z by `yaw` as a nuScenes quaternion [w, x, y, z]."""
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


def record_scene(root: str | Path, index: int, scenario: str, seed: int, duration: float = 20.0,
                 camera_width: int = 320, sim_hz: int = 10, key_every: int = 5, jpeg_quality: int = 92) -> dict:
    """Drive one scene, write its JPEGs under `root` and return its record (also saved to root/.scenes/).

    The record holds per frame: time, key flag, ego pose/speed/size, annotated agents and the image path.
    """
    from PIL import Image

    from simulators.driving import DrivingSim
    from simulators.driving_camera import front_camera

    root = Path(root)
    camera = front_camera(camera_width)
    name = f"scene-{index:04d}"
    frames = []
    with DrivingSim(scenario, camera=camera, sim_hz=sim_hz, key_every=key_every) as sim:
        frame = sim.reset(seed)
        steps = int(round(duration * sim_hz))
        for step in range(steps + 1):
            if step:
                frame = sim.step()
            stamp = TIME_ORIGIN_US + index * _SCENE_GAP_US + int(round(frame.time * 1e6))
            folder = "samples" if frame.key else "sweeps"
            filename = f"{folder}/{CHANNEL}/sim-{scenario}-{name}__{CHANNEL}__{stamp}.jpg"
            path = root / filename
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame.image).save(path, quality=jpeg_quality)
            frames.append({"timestamp": stamp, "key": frame.key, "ego": frame.ego.tolist(), "speed": frame.ego_speed,
                           "ego_size": list(frame.ego_size), "agents": frame.agents.tolist(),
                           "agent_ids": frame.agent_ids.tolist(), "crashed": frame.crashed, "filename": filename})
            if frame.crashed and frame.key:  # the scene ends at the first key frame after a crash
                break
    while not frames[-1]["key"]:  # a scene ends on a key frame (no trailing sweeps without a sample)
        frames.pop()
    record = {"index": index, "name": name, "scenario": scenario, "seed": seed, "camera_width": camera_width,
              "sim_hz": sim_hz, "frames": frames}
    done = root / ".scenes" / f"{index:04d}.json"
    done.parent.mkdir(parents=True, exist_ok=True)
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, done)
    return record


def write_tables(root: str | Path, records: list[dict], version: str = DEFAULT_VERSION,
                 annotation_range: float = 80.0) -> Path:
    """Build the 13 nuScenes tables for the given scene records under root/version; returns that folder."""
    from simulators.driving_camera import front_camera

    root = Path(root)
    if not records:
        raise ValueError("write_tables: no scenes")
    widths = {r["camera_width"] for r in records}
    if len(widths) != 1:
        raise ValueError(f"scenes were rendered at different camera widths {sorted(widths)}: write them to separate folders")
    camera = front_camera(widths.pop())
    tables: dict[str, list] = {name: [] for name in ("attribute", "calibrated_sensor", "category", "ego_pose", "instance",
                                                       "log", "map", "sample", "sample_annotation", "sample_data",
                                                       "scene", "sensor", "visibility")}
    sensor, calibration = token("sensor", CHANNEL), token("calibrated_sensor", CHANNEL, camera.width)
    car = token("category", "vehicle.car")
    moving, stopped = token("attribute", "vehicle.moving"), token("attribute", "vehicle.stopped")
    tables["sensor"].append({"token": sensor, "channel": CHANNEL, "modality": "camera"})
    tables["calibrated_sensor"].append({"token": calibration, "sensor_token": sensor,
                                        "translation": [float(v) for v in camera.translation],
                                        "rotation": [float(v) for v in camera.rotation],
                                        "camera_intrinsic": np.asarray(camera.intrinsic, dtype=float).tolist()})
    tables["category"].append({"token": car, "name": "vehicle.car", "description": "Vehicle of the highway-env traffic."})
    tables["attribute"] += [{"token": moving, "name": "vehicle.moving", "description": "Vehicle is moving."},
                            {"token": stopped, "name": "vehicle.stopped", "description": "Vehicle is stopped."}]
    tables["visibility"].append({"token": "4", "level": "v80-100",
                                 "description": "visibility of whole object is between 80 and 100%"})
    maps: dict[str, list[str]] = {}

    for record in sorted(records, key=lambda r: r["index"]):
        name, frames = record["name"], record["frames"]
        log = token("log", name)
        tables["log"].append({"token": log, "logfile": name, "vehicle": SIM_VEHICLE, "location": f"sim-{record['scenario']}",
                              "date_captured": "2026-11-26"})
        maps.setdefault(record["scenario"], []).append(log)
        key_frames = [f for f in frames if f["key"]]
        samples = [token("sample", name, f["timestamp"]) for f in key_frames]
        scene = token("scene", name)
        tables["scene"].append({"token": scene, "log_token": log, "nbr_samples": len(samples), "name": name,
                                "first_sample_token": samples[0], "last_sample_token": samples[-1],
                                "description": f"highway-env {record['scenario']}, seed {record['seed']}"})
        for i, (frame, sample) in enumerate(zip(key_frames, samples)):
            tables["sample"].append({"token": sample, "timestamp": frame["timestamp"], "scene_token": scene,
                                     "prev": samples[i - 1] if i else "", "next": samples[i + 1] if i + 1 < len(samples) else ""})
        data_tokens = [token("sample_data", name, f["timestamp"]) for f in frames]
        sample_of = {}  # each sweep belongs to the next key frame's sample (as nuScenes)
        upcoming = ""
        for frame, sample in zip(reversed(key_frames), reversed(samples)):
            sample_of[frame["timestamp"]] = sample
        for frame in reversed(frames):
            upcoming = sample_of.get(frame["timestamp"], upcoming)
            sample_of[frame["timestamp"]] = upcoming
        for i, (frame, data) in enumerate(zip(frames, data_tokens)):
            x, y, yaw = frame["ego"]
            tables["ego_pose"].append({"token": data, "timestamp": frame["timestamp"], "translation": [x, y, 0.0],
                                       "rotation": _yaw_quaternion(yaw)})
            tables["sample_data"].append({"token": data, "sample_token": sample_of[frame["timestamp"]], "ego_pose_token": data,
                                          "calibrated_sensor_token": calibration, "timestamp": frame["timestamp"],
                                          "fileformat": "jpg", "is_key_frame": frame["key"], "height": camera.height,
                                          "width": camera.width, "filename": frame["filename"],
                                          "prev": data_tokens[i - 1] if i else "",
                                          "next": data_tokens[i + 1] if i + 1 < len(frames) else ""})
        _annotate(tables, name, key_frames, samples, car, moving, stopped, annotation_range)

    for scenario, logs in maps.items():
        filename = f"maps/{scenario}.png"
        _write_map_png(root / filename, scenario)
        tables["map"].append({"token": token("map", scenario), "log_tokens": logs, "category": "semantic_prior",
                              "filename": filename})
    folder = root / version
    folder.mkdir(parents=True, exist_ok=True)
    for table, rows in tables.items():
        tmp = folder / f"{table}.json.tmp"
        tmp.write_text(json.dumps(rows))
        os.replace(tmp, folder / f"{table}.json")
    return folder


def _annotate(tables: dict, scene: str, key_frames: list[dict], samples: list[str], car: str, moving: str,
              stopped: str, annotation_range: float) -> None:
    """sample_annotation + instance records for every agent within range at each key frame."""
    tracks: dict[int, list[tuple[str, str]]] = {}  # track id -> [(annotation token, sample token)]
    rows: dict[str, dict] = {}
    for i, (frame, sample) in enumerate(zip(key_frames, samples)):
        ego = np.asarray(frame["ego"][:2])
        for track, box, speed in zip(frame["agent_ids"], frame["agents"], _speeds(key_frames, i)):
            x, y, yaw, length, width, height = box
            if np.hypot(x - ego[0], y - ego[1]) > annotation_range:
                continue
            ann = token("sample_annotation", scene, track, frame["timestamp"])
            rows[ann] = {"token": ann, "sample_token": sample, "instance_token": token("instance", scene, track),
                         "visibility_token": "4", "attribute_tokens": [moving if speed > 0.5 else stopped],
                         "translation": [x, y, height / 2], "size": [width, length, height],
                         "rotation": _yaw_quaternion(yaw), "prev": "", "next": "", "num_lidar_pts": 0,
                         "num_radar_pts": 0}
            tracks.setdefault(track, []).append((ann, sample))
    for track, anns in tracks.items():
        tokens = [a for a, _ in anns]
        for i, ann in enumerate(tokens):
            rows[ann]["prev"] = tokens[i - 1] if i else ""
            rows[ann]["next"] = tokens[i + 1] if i + 1 < len(tokens) else ""
        tables["instance"].append({"token": token("instance", scene, track), "category_token": car,
                                   "nbr_annotations": len(tokens), "first_annotation_token": tokens[0],
                                   "last_annotation_token": tokens[-1]})
    tables["sample_annotation"] += rows.values()


def _speeds(key_frames: list[dict], i: int) -> list[float]:
    """Each agent's speed at key frame i from its position at the previous key frame (1 when unseen there)."""
    frame = key_frames[i]
    if i == 0:
        return [1.0] * len(frame["agent_ids"])  # no history: call it moving
    before = {t: b for t, b in zip(key_frames[i - 1]["agent_ids"], key_frames[i - 1]["agents"])}
    dt = (frame["timestamp"] - key_frames[i - 1]["timestamp"]) / 1e6
    return [float(np.hypot(b[0] - before[t][0], b[1] - before[t][1]) / dt) if t in before else 1.0
            for t, b in zip(frame["agent_ids"], frame["agents"])]


def _write_map_png(path: Path, scenario: str, extent: float = 400.0) -> None:
    """A drivable-area raster (1 px = 1 m, `extent` metres square around the scenario's origin area)."""
    from PIL import Image, ImageDraw

    from simulators.driving import DrivingSim

    from simulators.driving_camera import road_geometry

    with DrivingSim(scenario, render=False) as sim:
        centre = np.asarray(sim.reset(0).ego[:2])
        geometry = road_geometry(sim.road)
    image = Image.new("L", (int(extent), int(extent)), 0)
    draw = ImageDraw.Draw(image)
    for polygon in geometry.surfaces:
        pixels = (np.asarray(polygon) - centre) * [1, -1] + extent / 2  # image rows grow southwards
        if len(pixels) >= 3:
            draw.polygon([tuple(p) for p in pixels], fill=255)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def write_nuscenes(root: str | Path, scenes: int = 20, scenarios: tuple[str, ...] | None = None, seed: int = 0,
                   duration: float = 20.0, camera_width: int = 320, version: str = DEFAULT_VERSION, workers: int = 2,
                   progress: bool = True) -> Path:
    """Simulate `scenes` scenes (rotating through `scenarios`, default all) on `workers` processes and
    write a nuScenes-format dataset under `root`. Finished scenes are kept across interruptions.
    Scene i is seeded `seed` * 100003 + i, below the closed-loop evaluation's seeds (`seed` 0-9).
    Returns root/version."""
    from tqdm.auto import tqdm

    from simulators.driving import EVALUATION_SEEDS, SCENARIOS, check_scenario

    scenarios = tuple(check_scenario(s) for s in (scenarios or tuple(SCENARIOS)))
    if scenes < 1:
        raise ValueError(f"scenes must be >= 1, got {scenes}")
    plan = [(i, scenarios[i % len(scenarios)], seed * 100_003 + i) for i in range(scenes)]
    if seed < 0 or plan[-1][2] >= EVALUATION_SEEDS:
        raise ValueError(f"data seed {seed} with {scenes} scenes gives scene seeds {plan[0][2]}..{plan[-1][2]}; they "
                         f"must lie in [0, {EVALUATION_SEEDS}) (above are the closed-loop evaluation's): use a data seed "
                         "from 0 to 9")
    root = Path(root)
    records, todo = [], []
    for index, scenario, scene_seed in plan:
        done = root / ".scenes" / f"{index:04d}.json"
        record = json.loads(done.read_text()) if done.is_file() else None
        if record and (record["scenario"], record["seed"], record["camera_width"]) == (scenario, scene_seed, camera_width):
            records.append(record)
        else:
            todo.append((index, scenario, scene_seed))
    bar = tqdm(total=scenes, initial=len(records), desc="driving scenes", disable=not progress)
    if workers > 1 and len(todo) > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per scene process
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(record_scene, root, i, s, sd, duration, camera_width) for i, s, sd in todo]
            for future in futures:
                records.append(future.result())
                bar.update()
    else:
        for i, s, sd in todo:
            records.append(record_scene(root, i, s, sd, duration, camera_width))
            bar.update()
    bar.close()
    return write_tables(root, records, version)
