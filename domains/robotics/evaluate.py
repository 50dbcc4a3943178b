"""Open-loop evaluation of a robotics world model (`uwm eval robotics`).

From each held-out episode window the model sees `context` real observations and the actions
between them, then imagines `horizon` steps under the episode's real actions. Scored per horizon
step against the real frames: PSNR and SSIM; over all imagined frames: FID (Inception judge).
Baselines on the very same windows: copy-last-frame, the VQ tokenizer's own reconstruction of the
real frame (the ceiling of any model on these tokens), and optionally a second model trained with
actions zeroed (`baseline`), which shows how much the actions matter. Every decoded entry is scored
plainly ("model"), anchored to the last context frame by code equality ("model_anchored") and, for a
model with a context decoder, by that learned decoder ("model_learned"; `WorldModel.decode_frames`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from core.metrics import InceptionJudge, frechet_distance, psnr, ssim

from .world_model import IMAGE, WorldModel, step_rewards

__all__ = ["Window", "eval_windows", "open_loop_eval", "real_frames", "write_comparison_gif"]


@dataclass
class Window:
    """One evaluation window: `context` observations then `horizon` steps of one episode."""

    episode: object
    start: int
    context: int
    horizon: int

    def prompt(self, wm: WorldModel) -> torch.Tensor:
        e, s, c = self.episode, self.start, self.context
        rewards, success = step_rewards(e)
        return wm.prompt(e.task, e.frames[s:s + c], e.states[s:s + c], rewards[s:s + c], success[s:s + c],
                         e.actions[s:s + c - 1])

    @property
    def future_actions(self) -> np.ndarray:
        """(horizon, A): the actions that lead from the last context frame on."""
        first = self.start + self.context - 1
        return self.episode.actions[first:first + self.horizon]

    @property
    def future_frames(self) -> np.ndarray:
        """uint8 (horizon, H, W, 3): the real frames the model must predict."""
        first = self.start + self.context
        return self.episode.frames[first:first + self.horizon]


def eval_windows(episodes, context: int, horizon: int, per_episode: int = 2) -> list[Window]:
    """`per_episode` windows per episode, evenly spread over it (deterministic)."""
    windows = []
    for episode in episodes:
        last = len(episode) + 1 - (context + horizon)
        if last < 0:
            raise ValueError(f"{episode.task} seed {episode.seed}: {len(episode) + 1} frames, fewer than "
                             f"context {context} + horizon {horizon}")
        for start in np.unique(np.linspace(0, last, per_episode).round().astype(int)):
            windows.append(Window(episode, int(start), context, horizon))
    return windows


def real_frames(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).movedim(-1, -3).float() / 255


def _imagine_all(wm: WorldModel, windows: list[Window], batch_size: int, progress: bool, label: str) -> torch.Tensor:
    """(N, horizon, N_codes) local VQ codes imagined under each window's real actions."""
    codes = []
    for lo in tqdm(range(0, len(windows), batch_size), desc=f"imagining ({label})", disable=not progress):
        chunk = windows[lo:lo + batch_size]
        imagined = wm.imagine([w.prompt(wm) for w in chunk], np.stack([w.future_actions for w in chunk]), decode=False)
        codes.append(imagined.codes)
    return torch.cat(codes)


def _per_horizon(metric, predicted: torch.Tensor, truth: torch.Tensor) -> list[float]:
    """Mean metric per horizon step for (N, H, 3, h, w) tensors."""
    return [float(metric(predicted[:, h], truth[:, h]).clamp(max=60).mean()) for h in range(truth.shape[1])]


@torch.no_grad()
def open_loop_eval(wm: WorldModel, episodes, context: int = 2, horizon: int = 8, per_episode: int = 2,
                   baseline: WorldModel | None = None, with_fid: bool = True, fid_windows: int | None = None,
                   batch_size: int = 16, progress: bool = True, keep: dict | None = None) -> dict:
    """Score `wm` (and `baseline`) on windows of `episodes`; returns a JSON-ready dict.

    FID uses every imagined frame of `fid_windows` evenly spread windows (all windows if None): the
    Inception judge takes ~0.25 s per frame on a CPU core.

    keep: if a dict, receives "truth", "copy_last", "model", "vq_reconstruction" (and "zero_actions") frame
    tensors (N, horizon, 3, H, W), each decoded entry also "<name>_anchored" (and "<name>_learned"), for plots
    and GIFs.
    """
    windows = eval_windows(episodes, context, horizon, per_episode)
    truth = real_frames(np.stack([w.future_frames for w in windows]))
    anchors = np.stack([w.episode.frames[w.start + context - 1] for w in windows])  # uint8 (N, H, W, 3)
    predictions = {"copy_last": real_frames(anchors)[:, None].expand_as(truth)}
    vq = wm.tokenizers.images[IMAGE]
    codes = {"model": (wm, _imagine_all(wm, windows, batch_size, progress, "model")),  # each decoded by its tokenizer
             "vq_reconstruction": (wm, vq.encode(truth.flatten(0, 1)).unflatten(0, truth.shape[:2]))}
    if baseline is not None:
        codes["zero_actions"] = (baseline, _imagine_all(baseline, windows, batch_size, progress, "zero-action model"))
    for name, (model, imagined) in codes.items():
        for how, frames in model.decode_each(imagined, anchors).items():  # each with the model's own tokenizer
            predictions[name + ("" if how == "plain" else f"_{how}")] = frames
    results: dict = {"windows": len(windows), "episodes": len(episodes), "context": context, "horizon": horizon,
                     "tasks": sorted({w.episode.task for w in windows})}
    for name, frames in predictions.items():
        results[name] = {"psnr": _per_horizon(psnr, frames, truth), "ssim": _per_horizon(ssim, frames, truth)}
    if with_fid:
        judge = InceptionJudge()
        count = min(fid_windows or len(windows), len(windows))
        subset = torch.from_numpy(np.linspace(0, len(windows) - 1, count).round().astype(np.int64))
        real_features = judge.features(truth[subset].flatten(0, 1))
        for name, frames in predictions.items():
            results[name]["fid"] = frechet_distance(judge.features(frames[subset].flatten(0, 1)), real_features)
        results["fid_frames"] = int(count * horizon)
    if keep is not None:
        keep.update({"truth": truth, **predictions})
    return results


def write_comparison_gif(keep: dict, path, names: tuple[str, ...] | None = None, windows: int = 4, scale: int = 2) -> dict:
    """GIF of `keep` (from `open_loop_eval`): `windows` evenly spread windows side by side, one row per
    name present in `keep` (by default real, the model decoded each way, the zero-action model and copy-last
    decoded the best way there is), one GIF frame per horizon step. Returns what it shows."""
    from core.imageio import to_uint8, write_gif

    best = "_learned" if "model_learned" in keep else "_anchored"
    names = names or ("truth", "model_learned", "model_anchored", "model", f"zero_actions{best}", "copy_last")
    rows = [name for name in names if name in keep]
    count = len(keep["truth"])
    picks = np.linspace(0, count - 1, min(windows, count)).round().astype(int)
    # (horizon, 3, rows * H, picks * W)
    grid = torch.cat([torch.cat([keep[name][i] for i in picks], dim=-1) for name in rows], dim=-2)
    write_gif(to_uint8(grid), path, fps=3, scale=scale)
    return {"path": str(path), "rows": rows, "windows": picks.tolist()}
