"""Open-loop evaluation on held-out scenes: the model's plan and future frames against baselines.

Planning: L2 at 1/2/3 s in the ST-P3 and UniAD conventions and collision rates (`metrics`), for the
model, constant velocity and the ego-status MLP (AD-MLP style, trained here on the training scenes),
on all samples and on the non-straight subset (command left or right). Frames: PSNR and SSIM of the
predicted future frames at 0.5 s and 1 s against copy-last-frame, the VQ reconstruction of the true
frames (the tokenizer's ceiling), and FID (Inception features) at 1 s.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from tqdm.auto import tqdm

from core.metrics import InceptionJudge, frechet_distance, psnr, ssim

from .baselines import EgoStatusMLP, constant_velocity
from .loader import COMMANDS, DrivingSample, load_frames, load_samples, stack_samples
from .metrics import planning_metrics
from .model import PLAN_SAMPLES

__all__ = ["split_scenes", "load_split", "evaluate_open_loop"]

# nuScenes' official splits for the real versions; generated folders are split by a hash of the scene name.
_OFFICIAL = {"v1.0-mini": ("mini_train", "mini_val"), "v1.0-trainval": ("train", "val")}


def split_scenes(names: list[str], version: str, held_out: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """(training, held-out) scene names: nuScenes' official split for v1.0-mini/trainval, else a seeded hash split."""
    if version in _OFFICIAL:
        from nuscenes.utils.splits import create_splits_scenes

        splits = create_splits_scenes()
        train, val = (set(splits[name]) for name in _OFFICIAL[version])
        return [n for n in names if n in train], [n for n in names if n in val]
    if not 0 < held_out < 1:
        raise ValueError(f"held_out must be in (0, 1), got {held_out}")

    def score(name: str) -> float:
        return int(hashlib.sha256(f"{seed}/{name}".encode()).hexdigest()[:8], 16) / 16**8

    ranked = sorted(names, key=score)
    count = sum(score(n) < held_out for n in names)
    if len(names) >= 2:  # a few scenes still give one of each
        count = min(max(count, 1), len(names) - 1)
    test = set(ranked[:count])
    return [n for n in names if n not in test], [n for n in names if n in test]


def load_split(root, version: str, held_out: float = 0.2, seed: int = 0, past_frames: int = 2,
               future_frames: int = 2) -> tuple[list[DrivingSample], list[DrivingSample]]:
    """All key frames of a nuScenes folder, split into (training, held-out) samples by scene."""
    samples = load_samples(root, version, past_frames, future_frames)
    names = sorted({s.scene for s in samples})
    train, test = split_scenes(names, version, held_out, seed)
    if not train or not test:
        raise ValueError(f"{root}: {len(names)} scenes give {len(train)} training and {len(test)} held-out scenes; "
                         "need at least one of each")
    train, test = set(train), set(test)
    return [s for s in samples if s.scene in train], [s for s in samples if s.scene in test]


PSNR_CAP = 60.0  # dB: a standing car sees identical frames (PSNR +inf), which would make any mean infinite


def _frame_metrics(predicted: torch.Tensor, truth: torch.Tensor) -> dict:
    """(N, F, 3, S, S) each -> per future step: PSNR (dB, the mean over images of each one's, capped at `PSNR_CAP`),
    how many images reach the cap (a capped image moves the mean by up to (60 - ~29) / N dB), the PSNR of the
    mean squared error over all images (no cap needed), and SSIM."""
    steps = range(truth.shape[1])
    per_image = [psnr(predicted[:, f], truth[:, f]).clamp(max=PSNR_CAP) for f in steps]
    mse = [(predicted[:, f].float() - truth[:, f].float()).pow(2).mean() for f in steps]
    return {"psnr_db": [float(v.mean()) for v in per_image],
            "images_at_psnr_cap": [int((v >= PSNR_CAP).sum()) for v in per_image],
            "psnr_of_mean_mse_db": [float(10 * torch.log10(1 / e)) if e > 0 else PSNR_CAP for e in mse],
            "ssim": [float(ssim(predicted[:, f], truth[:, f]).mean()) for f in steps]}


def evaluate_open_loop(model, train: list[DrivingSample], test: list[DrivingSample], mlp_steps: int = 2000,
                       seed: int = 0, batch_size: int = 16, fid: bool = True, keep: dict | None = None,
                       decode: str = "mean", frame_samples: int | None = None, plan_samples: int = PLAN_SAMPLES,
                       progress: bool = True) -> dict:
    """Evaluate a `DrivingModel` on held-out samples (plans: the median of `plan_samples` drawn plans, read
    as `decode`, see `DrivingModel.plan`); `keep` (a dict) receives arrays for plots.

    Plans are scored on every sample; frames (a longer generation) on `frame_samples` evenly spaced ones
    (default: all)."""
    from .model import Context

    if not test:
        raise ValueError("evaluate_open_loop: no held-out samples")
    if frame_samples is not None and frame_samples < 1:
        raise ValueError(f"evaluate_open_loop: frame_samples must be at least 1, got {frame_samples}")
    a, t = stack_samples(train), stack_samples(test)
    subset = t["command"] != COMMANDS.index("straight")
    mlp = EgoStatusMLP()
    mlp_fit = mlp.fit(a["history"], a["history_mask"], a["status"], a["command"], a["future"], a["future_mask"],
                      steps=mlp_steps, seed=seed)
    size = model.image_size
    count = len(test) if frame_samples is None else min(frame_samples, len(test))
    with_frames = np.unique(np.linspace(0, len(test) - 1, count).round().astype(int))
    contexts, plans, frames = [], [], []
    generator = torch.Generator().manual_seed(seed)
    for start in tqdm(range(0, len(test), batch_size), desc="driving eval", disable=not progress):
        chunk = [Context.from_sample(s, size) for s in test[start : start + batch_size]]
        rows = [i - start for i in with_frames[(with_frames >= start) & (with_frames < start + batch_size)]]
        plans.append(model.plan(chunk, decode=decode, samples=plan_samples, batch_size=batch_size, generator=generator))
        if rows:  # frames follow the plan drawn greedily in the same sequence
            frames.append(model.predict([chunk[r] for r in rows], decode=decode, batch_size=batch_size,
                                        generator=generator)[1])
            contexts += [chunk[r] for r in rows]
    plans = {"model": np.concatenate(plans),
             "constant_velocity": constant_velocity(t["history"], t["history_mask"], t["status"]),
             "ego_status_mlp": mlp.predict(t["history"], t["history_mask"], t["status"], t["command"])}
    planning = {name: planning_metrics(plan, t["future"], t["future_mask"], t["boxes"], subset=subset,
                                       ego_size=t["ego_size"]) for name, plan in plans.items()}

    predicted = torch.cat(frames)  # (N, F, 3, S, S)
    scored = [test[i] for i in with_frames]
    full = np.array([s.future_frame_mask.all() for s in scored])
    truth = torch.from_numpy(np.stack([load_frames(s.future_frames, size) for s in scored])).permute(0, 1, 4, 2, 3)
    truth = truth.float() / 255
    last = torch.from_numpy(np.stack([c.frames[-1] for c in contexts])).permute(0, 3, 1, 2).float() / 255
    copy_last = last[:, None].expand_as(truth)
    reconstruction = model.tokenizers.decode_image(
        "camera", model.tokenizers.encode_image("camera", truth.flatten(0, 1))).unflatten(0, truth.shape[:2])
    keep_rows = torch.from_numpy(full)
    frames_out = {"num_samples": int(full.sum()), "horizons_s": [0.5 * (f + 1) for f in range(truth.shape[1])],
                  "model": _frame_metrics(predicted[keep_rows], truth[keep_rows]),
                  "copy_last": _frame_metrics(copy_last[keep_rows], truth[keep_rows]),
                  "vq_reconstruction": _frame_metrics(reconstruction[keep_rows], truth[keep_rows])}
    if fid and int(full.sum()) >= 2:
        judge = InceptionJudge()
        real = judge.features(truth[keep_rows][:, -1])
        frames_out["fid_last_horizon"] = {name: frechet_distance(judge.features(images[keep_rows][:, -1]), real)
                                          for name, images in (("model", predicted), ("copy_last", copy_last))}
    if keep is not None:
        keep.update(samples=test, plans=plans, frame_rows=with_frames, predicted=predicted, truth=truth, last=last)
    return {"num_train_samples": len(train), "num_test_samples": len(test),
            "num_non_straight": int(subset.sum()), "plan_decode": decode,
            "plan_samples": plan_samples, "planning": planning, "frames": frames_out,
            "ego_status_mlp_fit": {k: v for k, v in mlp_fit.items() if k != "l1_m_curve"}}
