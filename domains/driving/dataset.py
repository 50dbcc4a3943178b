"""Driving key frames as token sequences: frames and trajectory, jointly (DrivingGPT-style).

Each key frame with a full 3 s future becomes

    <bos> <driving> <cmd> c </cmd> <state> v a w </state> <traj> history </traj>
    <img> frame t-0.5 s </img> <img> frame t </img>                 the camera up to now
    <traj> future </traj>                                            target: the plan (6 steps of 0.5 s)
    <img> frame t+0.5 s </img> <img> frame t+1.0 s </img>            target: the camera's future
    <eos>

c: the command (right/left/straight); v a w: speed, acceleration, yaw rate (binned); history: per-step
displacements (dx, dy) over 0.5 s in the current ego frame (`waypoint` bins); future: each step's
displacement minus the constant-velocity step (`plan_residuals`, in their own `plan` bins), so a plan
of zero residuals is constant velocity, the model learns only how the car departs from it, and the
current speed enters the plan unbinned; frames: VQ codes. The plan comes before the future
frames, so the trajectory can be decoded alone (planning) or followed by frames (world model).
Key frames whose future leaves the scene are not trained on (the loader masks them; evaluation
scores them over their valid steps).

Plan-only copies (`plan_example`, `write_driving_dataset(plan_copies=k)`): the same key frame without any
frame, `<bos> <driving> <cmd> .. </cmd> <state> .. </state> <traj> history </traj> <traj> future </traj> <eos>`
(~35 tokens, several packed into one row). They let the plan learn from ego state many more times per step than
the ~300-token joint sequences allow (on 400 simulated scenes, 2 copies did not improve the plan: README).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from core.sequence import Example, Segment, build_example
from core.tokenizers import BinTokenizer, Tokenizers

from .baselines import constant_velocity
from .loader import DrivingSample, load_frames, stack_samples

__all__ = ["IMAGE", "PLAN", "image_config", "fit_driving_tokenizers", "steps_from_positions", "positions_from_steps",
           "history_steps", "plan_residuals", "plan_from_residuals", "context_segments", "image_segment",
           "driving_example", "plan_example", "video_example", "write_driving_dataset"]

IMAGE = "camera"  # name of the image tokenizer
PLAN = "plan"  # name of the plan's bin set (residuals from constant velocity)
WAYPOINT_BINS, PLAN_BINS, STATUS_BINS = 128, 128, 64


def image_config(image_size: int = 64, grid: int = 8, codebook_size: int = 512):
    """The VQ tokenizer for front-camera frames: `grid` x `grid` codes per frame."""
    from core.tokenizers.image import ImageTokenizerConfig

    levels = int(np.log2(max(image_size // grid, 1)))
    if levels < 1 or 2**levels * grid != image_size:
        raise ValueError(f"image_size {image_size} must be grid {grid} times a power of two (>= 2)")
    # Narrow early levels: (16, 32, 32, 64) trains at 0.46 s per batch of 32 on 2 cores, (32, 64, 64, 64) at 1.2 s.
    return ImageTokenizerConfig(image_size=image_size, codebook_size=codebook_size, latent_channels=16,
                                block_out_channels=(16,) + (32,) * (levels - 1) + (64,), mid_block_attention=False)


def steps_from_positions(positions: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """(..., T, 2) positions -> (..., T, 2) displacements, each from the previous position (`start`, default
    the origin, before the first)."""
    positions = np.asarray(positions, dtype=np.float64)
    start = np.zeros_like(positions[..., :1, :]) if start is None else np.asarray(start)[..., None, :]
    return np.diff(np.concatenate([start, positions], axis=-2), axis=-2)


def positions_from_steps(steps) -> np.ndarray:
    """(..., T, 2) displacements from the origin -> (..., T, 2) positions."""
    return np.cumsum(np.asarray(steps, dtype=np.float64), axis=-2)


def history_steps(history: np.ndarray, history_mask: np.ndarray) -> np.ndarray:
    """(4, 2) positions at -2.0 ... -0.5 s -> (4, 2) displacements -2.0 -> -1.5 -> ... -> 0 s; steps touching a
    masked position are zero."""
    points = np.concatenate([history, np.zeros((1, 2))])
    valid = np.append(history_mask, True)
    steps = np.diff(points, axis=0)
    return np.where((valid[:-1] & valid[1:])[:, None], steps, 0.0)


def _velocity_steps(history, history_mask, status) -> np.ndarray:
    """(N, 4, 2), (N, 4), (N, 3) -> (N, 1, 2): the constant-velocity displacement over one 0.5 s step."""
    return constant_velocity(history, history_mask, status)[:, :1].astype(np.float64)


def plan_residuals(future: np.ndarray, history: np.ndarray, history_mask: np.ndarray, status: np.ndarray) -> np.ndarray:
    """Future positions (N, 6, 2) -> (N, 6, 2) plan targets: each 0.5 s displacement minus the constant-velocity
    step (`baselines.constant_velocity`: the last history step, or status speed along x where it is masked).
    history (N, 4, 2), history_mask (N, 4), status (N, 3) as in `DrivingSample`."""
    return steps_from_positions(future) - _velocity_steps(history, history_mask, status)


def plan_from_residuals(residuals, history: np.ndarray, history_mask: np.ndarray, status: np.ndarray) -> np.ndarray:
    """The inverse of `plan_residuals`: (N, 6, 2) residuals -> (N, 6, 2) future positions."""
    return positions_from_steps(np.asarray(residuals, dtype=np.float64) + _velocity_steps(history, history_mask, status))


def fit_driving_tokenizers(samples: list[DrivingSample], image_size: int = 64, grid: int = 8,
                           codebook_size: int = 512, vq_steps: int = 1500, max_frames: int = 6000, seed: int = 0,
                           progress: bool = True) -> tuple[Tokenizers, dict]:
    """Fit the history/plan/status/command bins and the frame VQ on training samples; returns (tokenizers, VQ report)."""
    from core.tokenizers.image import ImageTokenizer

    if len(samples) < 2:
        raise ValueError(f"fit_driving_tokenizers: need at least 2 samples, got {len(samples)}")
    rng = np.random.default_rng(seed)
    # Quantile bins: most steps are near-straight and near constant velocity, so bins are finest there.
    waypoints = BinTokenizer(WAYPOINT_BINS, "quantile").fit(
        np.concatenate([history_steps(s.history, s.history_mask) for s in samples]))
    a = stack_samples(samples)
    plan = BinTokenizer(PLAN_BINS, "quantile").fit(
        plan_residuals(a["future"], a["history"], a["history_mask"], a["status"])[a["future_mask"]])
    status = BinTokenizer(STATUS_BINS, "quantile").fit(np.stack([s.status for s in samples]))
    command = BinTokenizer(3).fit(np.array([[0.0], [2.0]]))  # 0, 1, 2 land in bins 0, 1, 2
    paths = sorted({p for s in samples for p in s.frames + s.future_frames})
    paths = [paths[i] for i in rng.permutation(len(paths))[:max_frames]]
    vq = ImageTokenizer(image_config(image_size, grid, codebook_size), seed=seed)
    report = vq.fit(load_frames(paths, image_size), steps=vq_steps, batch_size=32, lr=2e-3, seed=seed, progress=progress)
    return Tokenizers(None, {IMAGE: vq}, {"waypoint": waypoints, PLAN: plan, "status": status, "command": command}), report


def _bins(tokenizers: Tokenizers, name: str, values, tag: str, **flags) -> Segment:
    ids = tokenizers.encode_vector(name, np.asarray(values, dtype=np.float64))
    return Segment.tagged(tokenizers.vocab, name, ids, (f"<{tag}>", f"</{tag}>"), **flags)


def image_segment(tokenizers: Tokenizers, codes: torch.Tensor, **flags) -> Segment:
    """`<img> ... </img>` around (N,) global ids."""
    return Segment.tagged(tokenizers.vocab, IMAGE, codes, ("<img>", "</img>"), **flags)


def context_segments(tokenizers: Tokenizers, command: int, status: np.ndarray, history: np.ndarray,
                     history_mask: np.ndarray, frame_codes: torch.Tensor) -> list[Segment]:
    """Everything before the plan: tag, command, status (3,), ego history (4, 2) with its mask (4,), and the
    past frames' codes (P, N) global ids."""
    vocab = tokenizers.vocab
    return [Segment("special", torch.tensor([vocab.special("<driving>")])),
            _bins(tokenizers, "command", [command], "cmd"),
            _bins(tokenizers, "status", status, "state"),
            _bins(tokenizers, "waypoint", history_steps(history, history_mask), "traj"),
            *[image_segment(tokenizers, codes) for codes in frame_codes]]


def driving_example(tokenizers: Tokenizers, sample: DrivingSample, frame_codes: torch.Tensor,
                    future_codes: torch.Tensor) -> Example:
    """The training sequence of one key frame; frame_codes (P, N) and future_codes (F, N) global ids."""
    if not sample.future_mask.all():
        raise ValueError(f"sample {sample.token}: its future leaves the scene; only full futures are trained on")
    residuals = plan_residuals(sample.future[None], sample.history[None], sample.history_mask[None], sample.status[None])
    plan = _bins(tokenizers, PLAN, residuals[0], "traj", is_target=True)
    future = [image_segment(tokenizers, codes, is_target=True) for codes in future_codes]
    context = context_segments(tokenizers, sample.command, sample.status, sample.history, sample.history_mask, frame_codes)
    return build_example(context + [plan] + future, tokenizers.vocab)


def plan_example(tokenizers: Tokenizers, sample: DrivingSample) -> Example:
    """A plan-only training sequence: the context without frames, then the plan (see the module docstring)."""
    no_frames = torch.zeros((0, 1), dtype=torch.long)
    return driving_example(tokenizers, sample, no_frames, no_frames)


def video_example(tokenizers: Tokenizers, codes: torch.Tensor) -> Example:
    """Pretraining: `<driving> <img> ... </img> ...` consecutive frames (T, N) global ids, all targets (no ego data)."""
    segments = [Segment("special", torch.tensor([tokenizers.vocab.special("<driving>")]))]
    segments += [image_segment(tokenizers, c, is_target=True) for c in codes]
    return build_example(segments, tokenizers.vocab)


def write_driving_dataset(out_dir: str | Path, samples: list[DrivingSample], tokenizers: Tokenizers | None = None,
                          image_size: int = 64, grid: int = 8, vq_steps: int = 1500, source: dict | None = None,
                          video: bool = False, plan_copies: int = 0, seed: int = 0, progress: bool = True) -> Path:
    """Fit tokenizers on `samples` (unless given) and write the sequence of every sample with a full future,
    followed by `plan_copies` plan-only sequences of each (`plan_example`; train them with `data.packing`).

    video=True writes pretraining data instead: each sample's frames alone (`video_example`), so a backbone
    learns how the camera's view evolves before it learns to plan.
    `source` records where the samples came from (nuScenes root, version, scenes) for `uwm eval driving`.
    Returns the shard folder.
    """
    from core.data import ShardWriter

    trainable = [s for s in samples if s.future_mask.all() and s.future_frame_mask.all()]
    if plan_copies < 0 or (plan_copies and video):
        raise ValueError(f"plan_copies must be >= 0 and 0 for video data, got {plan_copies} (video={video})")
    if not trainable:
        raise ValueError(f"none of the {len(samples)} samples has a full future to train on")
    report: dict = {}
    if tokenizers is None:
        tokenizers, report = fit_driving_tokenizers(trainable, image_size, grid, vq_steps=vq_steps, seed=seed,
                                                    progress=progress)
    if IMAGE not in tokenizers.images or not {"waypoint", PLAN} <= set(tokenizers.bins):
        raise ValueError(f"the given tokenizers need an image tokenizer named {IMAGE!r} and 'waypoint' and {PLAN!r} bins")
    vq = tokenizers.images[IMAGE]
    meta = {"task": "driving", "source": source or {}, "num_samples": len(trainable), "skipped_partial_future":
            len(samples) - len(trainable), "past_frames": len(trainable[0].frames),
            "future_frames": len(trainable[0].future_frames), "image_size": vq.config.image_size,
            "video": video, "plan_copies": plan_copies, "image_tokenizer": report}
    encoded: dict[str, torch.Tensor] = {}  # neighbouring key frames share frames: encode each file once
    with ShardWriter(out_dir, tokenizers, meta=meta) as writer:
        for start in tqdm(range(0, len(trainable), 64), desc="driving sequences", disable=not progress):
            chunk = trainable[start : start + 64]
            new = list(dict.fromkeys(p for s in chunk for p in s.frames + s.future_frames if p not in encoded))
            if new:
                encoded.update(zip(new, tokenizers.encode_image(IMAGE, load_frames(new, vq.config.image_size))))
            for sample in chunk:
                sample_codes = torch.stack([encoded[p] for p in sample.frames + sample.future_frames])
                past = len(sample.frames)
                writer.add(video_example(tokenizers, sample_codes) if video else
                           driving_example(tokenizers, sample, sample_codes[:past], sample_codes[past:]),
                           group=sample.scene)  # neighbouring key frames share frames and trajectories
        for _ in range(plan_copies):
            for sample in trainable:
                writer.add(plan_example(tokenizers, sample), group=sample.scene)
    return writer.directory
