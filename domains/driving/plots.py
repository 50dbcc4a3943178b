"""Figures of a driving evaluation: plans drawn on the camera frame, and GIFs of predicted vs real frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["draw_plans", "plan_figure", "write_samples"]

_STYLES = {"truth": ("white", "o"), "model": ("tab:red", "s"), "constant_velocity": ("tab:cyan", "^"),
           "ego_status_mlp": ("tab:orange", "v")}


def draw_plans(axis, image_path: str, plans: dict[str, np.ndarray]) -> None:
    """Show the full-resolution camera image with each (6, 2) ego-frame trajectory projected onto the ground.

    The projection uses the project's CAM_FRONT (nuScenes intrinsics and mounting scaled to the image width):
    exact for generated folders, approximate for real nuScenes logs (their calibrations differ slightly).
    """
    from PIL import Image

    from simulators.driving_camera import front_camera, project_points

    image = np.asarray(Image.open(image_path).convert("RGB"))
    camera = front_camera(image.shape[1])
    axis.imshow(image)
    for name, plan in plans.items():
        colour, marker = _STYLES.get(name, ("tab:green", "x"))
        uv, _ = project_points(np.concatenate([np.zeros((1, 2)), plan]), (0.0, 0.0, 0.0), camera)
        axis.plot(uv[:, 0], uv[:, 1], color=colour, marker=marker, markersize=3, linewidth=1.2, label=name)
    axis.set_xlim(0, image.shape[1])
    axis.set_ylim(image.shape[0], 0)
    axis.set_xticks([])
    axis.set_yticks([])


def plan_figure(sample, plan: np.ndarray, frames: torch.Tensor, path) -> None:
    """One sample: the camera frame with the true and planned trajectories, then the predicted future frames
    (F, 3, S, S) next to the real ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .loader import load_frames

    future = len(frames)
    figure, axes = plt.subplots(1, 1 + 2 * future, figsize=(4 + 2 * 2 * future, 2.6),
                                gridspec_kw={"width_ratios": [3.2] + [1] * (2 * future)})
    plans = {"model": plan}
    if sample.future_mask.all():
        plans = {"truth": sample.future, **plans}
    draw_plans(axes[0], sample.frames[-1], plans)
    axes[0].legend(fontsize=6, loc="upper right")
    axes[0].set_title(f"command: {('right', 'left', 'straight')[sample.command]}", fontsize=8)
    real = load_frames(sample.future_frames, frames.shape[-1])
    for f in range(future):
        for offset, (title, image) in enumerate((("predicted", frames[f].permute(1, 2, 0).numpy()),
                                                 ("real", real[f] / 255.0))):
            axis = axes[1 + 2 * f + offset]
            axis.imshow(np.clip(image, 0, 1))
            axis.set_title(f"{title} +{0.5 * (f + 1):.1f} s", fontsize=8)
            axis.set_xticks([])
            axis.set_yticks([])
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_samples(keep: dict, directory, count: int = 8) -> dict:
    """From `evaluate_open_loop(..., keep=...)`: `trajectories.png` (the first `count` non-straight samples and
    straight ones, each with the true, model, constant-velocity and MLP trajectories on its frame) and
    `frames.gif` (rows: real, predicted, copy-last; columns: samples; one GIF frame per future step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from core.imageio import to_uint8, write_gif

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    samples, plans = keep["samples"], keep["plans"]
    full = [i for i, s in enumerate(samples) if s.future_mask.all() and s.future_frame_mask.all()]
    turning = [i for i in full if samples[i].command != 2]
    picks = (turning[: count // 2] + [i for i in full if i not in turning])[:count]
    columns = 4
    rows = -(-len(picks) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.6 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, i in zip(axes.flat, picks):
        draw_plans(axis, samples[i].frames[-1], {"truth": samples[i].future, **{k: v[i] for k, v in plans.items()}})
        axis.set_title(f"{samples[i].scene} {('right', 'left', 'straight')[samples[i].command]}", fontsize=8)
    if picks:
        axes.flat[0].legend(fontsize=6, loc="upper right")
    figure.tight_layout()
    trajectories = directory / "trajectories.png"
    figure.savefig(trajectories, dpi=100)
    plt.close(figure)

    # The GIF: samples whose frames were predicted (`frame_rows` of the held-out ones), turning ones first.
    complete = set(full)
    rows = [r for r, i in enumerate(keep["frame_rows"]) if i in complete]
    shown = list(dict.fromkeys([r for r in rows if samples[keep["frame_rows"][r]].command != 2][:3] + rows))[:6]
    truth, predicted = keep["truth"][shown], keep["predicted"][shown]  # (n, F, 3, S, S)
    copy_last = keep["last"][shown][:, None].expand_as(truth)
    # (F, 3, 3 * S, n * S): one GIF frame per future step
    grid = torch.cat([torch.cat(list(block.transpose(0, 1).unbind(1)), dim=-1) for block in (truth, predicted, copy_last)],
                     dim=-2)
    gif = directory / "frames.gif"
    write_gif(to_uint8(grid), gif, fps=2, scale=2)
    return {"trajectories": str(trajectories), "frames_gif": str(gif), "gif_rows": ["real", "predicted", "copy_last"],
            "samples": [samples[i].token for i in picks],
            "gif_samples": [samples[keep["frame_rows"][r]].token for r in shown]}
