"""Planning samples from any nuScenes-format folder, read through `nuscenes-devkit`.

    samples = load_samples("data/nuscenes", "v1.0-mini")      # the real nuScenes, or `uwm data driving` output
    arrays = stack_samples(samples)                            # history (N, 4, 2), future (N, 6, 2), ...

One `DrivingSample` per key frame (sample), in the ego frame of that key frame: x forward, y left,
metres, origin at the ego pose of its CAM_FRONT image.

- `history` (4, 2): ego positions at -2.0, -1.5, -1.0, -0.5 s (the previous samples);
- `status` (3,): speed (m/s, along the heading), longitudinal acceleration (m/s^2) and yaw rate (rad/s,
  + = left), by finite differences of the CAM_FRONT ego poses (sweeps included, so ~0.1 s apart);
- `command`: 0 right, 1 left, 2 straight, derived as VAD does from the last valid future waypoint's
  lateral offset: y <= -2 m is right, y >= 2 m is left, anything else straight;
- `future` (6, 2): ego positions at 0.5 ... 3.0 s; `boxes`: per future step, the annotated vehicles and
  people at that time as (M, 5) x, y, yaw, length, width (for collision checks);
- `frames`: the last `past_frames` CAM_FRONT images up to now (0.5 s apart), `future_frames` the next ones.

Scene ends: steps that fall outside the scene are masked (`history_mask`, `future_mask`,
`frame_mask`, `future_frame_mask` False); masked positions hold zeros, masked frames repeat the
nearest frame that exists, and masked box lists are empty. Metrics skip masked steps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["COMMANDS", "EGO_SIZE", "SIM_EGO_SIZE", "SIM_VEHICLE", "TABLES", "DrivingSample", "open_nuscenes",
           "load_samples", "stack_samples", "load_frames", "resize_frames", "to_ego_frame", "ego_status",
           "command_from_future", "ego_size_of"]

COMMANDS = ("right", "left", "straight")  # VAD's order
TABLES = ("attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map", "sample",
          "sample_annotation", "sample_data", "scene", "sensor", "visibility")
CHANNEL = "CAM_FRONT"
HISTORY_STEPS, FUTURE_STEPS = 4, 6
COMMAND_THRESHOLD = 2.0  # metres of lateral offset (VAD)
_COLLIDERS = ("vehicle.", "human.")  # annotation categories the ego must not hit
EGO_SIZE = (4.084, 1.85)  # nuScenes ego (Renault Zoe) length, width in metres, as ST-P3 uses
SIM_VEHICLE = "sim-ego"  # the `log.vehicle` of simulated scenes (`nuscenes_writer`)
SIM_EGO_SIZE = (5.0, 2.0)  # their ego: a highway-env car (`Vehicle.LENGTH`, `Vehicle.WIDTH`), posed at its centre


def ego_size_of(vehicle: str) -> tuple[float, float]:
    """(length, width) in metres of the ego box of a nuScenes log's `vehicle`."""
    return SIM_EGO_SIZE if vehicle == SIM_VEHICLE else EGO_SIZE


@dataclass
class DrivingSample:
    """One key frame's planning inputs and targets (see the module docstring for frames and units)."""

    token: str
    scene: str
    location: str
    timestamp: int
    frames: list[str]
    frame_mask: np.ndarray
    future_frames: list[str]
    future_frame_mask: np.ndarray
    history: np.ndarray
    history_mask: np.ndarray
    status: np.ndarray
    command: int
    future: np.ndarray
    future_mask: np.ndarray
    boxes: list[np.ndarray] = field(repr=False)
    ego_size: tuple[float, float] = EGO_SIZE  # the ego box (length, width) of the log's vehicle (`ego_size_of`)


def open_nuscenes(root: str | Path, version: str):
    """`NuScenes(version, root)` after checking the folder, with errors that name what is missing."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"nuScenes folder not found: {root}")
    if not (root / version).is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "sample.json").is_file())
        raise ValueError(f"unknown nuScenes version {version!r}: {root / version} does not exist; "
                         f"versions in {root}: {found or 'none'}")
    for table in TABLES:
        if not (root / version / f"{table}.json").is_file():
            raise FileNotFoundError(f"nuScenes table missing: {root / version / (table + '.json')}")
    from nuscenes.nuscenes import NuScenes

    return NuScenes(version=version, dataroot=str(root), verbose=False)


def to_ego_frame(points: np.ndarray, ego: np.ndarray) -> np.ndarray:
    """Global (..., 2) points -> the frame of ego pose (x, y, yaw): x forward, y left."""
    c, s = np.cos(ego[2]), np.sin(ego[2])
    d = np.asarray(points, dtype=np.float64) - ego[:2]
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)


def ego_status(poses: np.ndarray, times: np.ndarray) -> np.ndarray:
    """(3,) speed (m/s along the heading), acceleration (m/s^2), yaw rate (rad/s, + = left) by finite differences
    of poses (K, 3) x, y, yaw at times (K,) s, newest first (K = 3; with K = 2 the acceleration is 0)."""
    if len(poses) < 2:
        return np.zeros(3)
    speeds, yaw_rates = [], []
    for a, b, ta, tb in zip(poses[:-1], poses[1:], times[:-1], times[1:]):
        heading = np.array([np.cos(b[2]), np.sin(b[2])])
        speeds.append(float((a[:2] - b[:2]) @ heading / (ta - tb)))
        yaw_rates.append(_wrap(a[2] - b[2]) / (ta - tb))
    acceleration = (speeds[0] - speeds[1]) / ((times[0] - times[2]) / 2) if len(speeds) > 1 else 0.0
    return np.array([speeds[0], acceleration, yaw_rates[0]])


def _yaw(quaternion) -> float:
    w, x, y, z = quaternion
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


class _Reader:
    """Walks one NuScenes database: camera records, ego poses and annotations per sample."""

    def __init__(self, nusc):
        self.nusc = nusc

    def camera(self, sample: dict) -> dict:
        if CHANNEL not in sample["data"]:
            raise ValueError(f"sample {sample['token']} has no {CHANNEL} image")
        return self.nusc.get("sample_data", sample["data"][CHANNEL])

    def pose(self, sample_data: dict) -> tuple[np.ndarray, int]:
        """(x, y, yaw) of the ego at a sample_data record, and its timestamp (us)."""
        pose = self.nusc.get("ego_pose", sample_data["ego_pose_token"])
        return np.array([pose["translation"][0], pose["translation"][1], _yaw(pose["rotation"])]), pose["timestamp"]

    def walk(self, sample: dict, direction: str, steps: int) -> list[dict | None]:
        """The next (or prev) `steps` samples of the same scene; None past the scene's end."""
        out, current = [], sample
        for _ in range(steps):
            current = self.nusc.get("sample", current[direction]) if current and current[direction] else None
            out.append(current)
        return out

    def status(self, sample_data: dict) -> np.ndarray:
        """(speed, acceleration, yaw rate) from the CAM_FRONT poses around this image."""
        chain = [sample_data]
        for direction in ("prev", "prev"):  # two steps back for the acceleration
            if chain[-1][direction]:
                chain.append(self.nusc.get("sample_data", chain[-1][direction]))
        if len(chain) < 3:  # scene start: difference forwards instead
            chain = [sample_data]
            for _ in range(2):
                if chain[0]["next"]:
                    chain.insert(0, self.nusc.get("sample_data", chain[0]["next"]))
        poses = [self.pose(sd) for sd in chain]  # newest first
        return ego_status(np.array([p for p, _ in poses]), np.array([t for _, t in poses]) / 1e6)

    def boxes(self, sample: dict, ego: np.ndarray) -> np.ndarray:
        """(M, 5) x, y, yaw, length, width of the sample's vehicles and people, in the frame of `ego`."""
        rows = []
        for ann_token in sample["anns"]:
            ann = self.nusc.get("sample_annotation", ann_token)
            if not ann["category_name"].startswith(_COLLIDERS):
                continue
            x, y = to_ego_frame(np.array(ann["translation"][:2]), ego)
            width, length = ann["size"][0], ann["size"][1]
            rows.append([x, y, _wrap(_yaw(ann["rotation"]) - ego[2]), length, width])
        return np.array(rows, dtype=np.float64).reshape(-1, 5)


def load_samples(root: str | Path, version: str, past_frames: int = 2, future_frames: int = 2,
                 scenes: list[str] | None = None, check_images: bool = True) -> list[DrivingSample]:
    """Every key frame of the (given) scenes as a `DrivingSample`, in scene and time order."""
    if past_frames < 1 or future_frames < 0:
        raise ValueError(f"need past_frames >= 1 and future_frames >= 0, got {past_frames}, {future_frames}")
    nusc = open_nuscenes(root, version)
    reader = _Reader(nusc)
    wanted = set(scenes) if scenes is not None else None
    out = []
    for scene in nusc.scene:
        if wanted is not None and scene["name"] not in wanted:
            continue
        log = nusc.get("log", scene["log_token"])
        sample = nusc.get("sample", scene["first_sample_token"])
        while sample is not None:
            out.append(_sample(reader, sample, scene["name"], log, past_frames, future_frames, check_images))
            sample = nusc.get("sample", sample["next"]) if sample["next"] else None
    return out


def _frame_paths(reader: _Reader, samples: list[dict | None], fallback: str) -> tuple[list[str], np.ndarray]:
    """Image paths of samples (None -> the nearest existing one, `fallback` first)."""
    paths, mask, last = [], [], fallback
    for sample in samples:
        if sample is not None:
            last = str(Path(reader.nusc.dataroot) / reader.camera(sample)["filename"])
        paths.append(last)
        mask.append(sample is not None)
    return paths, np.array(mask, dtype=bool)


def _sample(reader: _Reader, sample: dict, scene: str, log: dict, past_frames: int, future_frames: int,
            check_images: bool) -> DrivingSample:
    camera = reader.camera(sample)
    image = str(Path(reader.nusc.dataroot) / camera["filename"])
    if check_images and not os.path.isfile(image):
        raise FileNotFoundError(f"image of sample {sample['token']} not found: {image}")
    ego, _ = reader.pose(camera)
    past = reader.walk(sample, "prev", max(HISTORY_STEPS, past_frames - 1))
    future = reader.walk(sample, "next", max(FUTURE_STEPS, future_frames))

    def positions(samples):
        points = np.zeros((len(samples), 2))
        mask = np.array([s is not None for s in samples], dtype=bool)
        for i, s in enumerate(samples):
            if s is not None:
                points[i] = to_ego_frame(reader.pose(reader.camera(s))[0][:2], ego)
        return points, mask

    history, history_mask = positions(past[:HISTORY_STEPS][::-1])  # oldest first: -2.0 ... -0.5 s
    waypoints, future_mask = positions(future[:FUTURE_STEPS])
    boxes = [reader.boxes(s, ego) if s is not None else np.zeros((0, 5)) for s in future[:FUTURE_STEPS]]
    command = command_from_future(waypoints, future_mask)
    frames, frame_mask = _frame_paths(reader, past[: past_frames - 1][::-1], image)
    frames, frame_mask = frames + [image], np.append(frame_mask, True)
    if not frame_mask[0]:  # frames before the scene start repeat the first existing one
        first = frames[int(np.argmax(frame_mask))]
        frames = [p if m else first for p, m in zip(frames, frame_mask)]
    next_frames, next_mask = _frame_paths(reader, future[:future_frames], image)
    return DrivingSample(token=sample["token"], scene=scene, location=log["location"], timestamp=sample["timestamp"],
                         frames=frames, frame_mask=frame_mask, future_frames=next_frames, future_frame_mask=next_mask,
                         history=history, history_mask=history_mask, status=reader.status(camera), command=command,
                         future=waypoints, future_mask=future_mask, boxes=boxes, ego_size=ego_size_of(log["vehicle"]))


def command_from_future(future: np.ndarray, future_mask: np.ndarray | None = None) -> int:
    """VAD's command from future waypoints (T, 2), ego frame: the last valid one's lateral offset
    y >= 2 m -> 1 (left), y <= -2 m -> 0 (right), else 2 (straight)."""
    valid = np.flatnonzero(np.ones(len(future), bool) if future_mask is None else future_mask)
    lateral = future[valid[-1], 1] if valid.size else 0.0
    return 1 if lateral >= COMMAND_THRESHOLD else 0 if lateral <= -COMMAND_THRESHOLD else 2


def stack_samples(samples: list[DrivingSample]) -> dict:
    """Samples -> arrays: history (N, 4, 2), history_mask (N, 4), status (N, 3), command (N,),
    future (N, 6, 2), future_mask (N, 6), ego_size (N, 2), and boxes (list of N lists of 6 (M, 5) arrays)."""
    if not samples:
        raise ValueError("stack_samples: no samples")
    return {"history": np.stack([s.history for s in samples]), "history_mask": np.stack([s.history_mask for s in samples]),
            "status": np.stack([s.status for s in samples]), "command": np.array([s.command for s in samples]),
            "future": np.stack([s.future for s in samples]), "future_mask": np.stack([s.future_mask for s in samples]),
            "ego_size": np.array([s.ego_size for s in samples], dtype=np.float64), "boxes": [s.boxes for s in samples]}


def load_frames(paths: list[str], size: int) -> np.ndarray:
    """Image files -> uint8 (N, size, size, 3), each whole frame resized (squashed) to a square."""
    from PIL import Image

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"camera image not found: {path}")
        try:
            with Image.open(path) as image:
                out[i] = _square(image.convert("RGB"), size)
        except OSError as error:
            raise ValueError(f"cannot read camera image {path}: {error}") from None
    return out


def resize_frames(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, H, W, 3) camera images -> uint8 (N, size, size, 3), as `load_frames` resizes files."""
    from PIL import Image

    return np.stack([_square(Image.fromarray(image), size) for image in images])


def _square(image, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(image.resize((size, size), Image.BILINEAR))
