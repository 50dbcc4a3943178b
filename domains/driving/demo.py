"""The driving part of `uwm demo`: joint plan + camera prediction at tiny scale (32 x 32 frames, 8 x 8 codes).

highway-env scenes of every scenario type -> a nuScenes-format folder (read back through nuscenes-devkit)
-> tokenizers and sequences -> the `demo` backbone -> open-loop evaluation on the held-out scenes (L2 and
collisions vs constant velocity and the ego-status MLP; frames vs copy-last) -> a few closed-loop
episodes per scenario (model vs IDM vs constant velocity) -> trajectory plots and a frame GIF.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["run_driving_demo"]


def run_driving_demo(out: Path, quick: bool, train) -> dict:
    """Run the driving demo into `out`; `train(name, data, out, overrides)` is the demo's trainer."""
    from .closed_loop import evaluate_closed_loop
    from .dataset import write_driving_dataset
    from .evaluate import evaluate_open_loop, load_split
    from .model import DrivingModel
    from .nuscenes_writer import write_nuscenes
    from .plots import write_samples

    # Two scenes per scenario type at least, so that the held-out scenes' types were seen in training.
    scenes, duration, vq_steps, train_steps, episodes = (8, 8.0, 80, 150, 1) if quick else (16, 20.0, 300, 600, 2)
    root = out / "nuscenes"
    write_nuscenes(root, scenes, duration=duration, camera_width=96)
    train_samples, test_samples = load_split(root, "v1.0-sim", held_out=0.25)
    source = {"nuscenes": str(root.resolve()), "version": "v1.0-sim", "held_out": 0.25, "split_seed": 0}
    data = write_driving_dataset(out / "data", train_samples, image_size=32, grid=8, vq_steps=vq_steps, source=source)
    summary = train("demo-driving", data, out / "model",
                    [f"train.steps={train_steps}", "train.micro_batch=8", "data.seq_len=320", "model.max_seq_len=320"])
    model = DrivingModel.load(out / "model" / "final")
    keep: dict = {}
    open_loop = evaluate_open_loop(model, train_samples, test_samples, mlp_steps=300, fid=False, keep=keep)
    closed_loop = evaluate_closed_loop(model, episodes=episodes, duration=5.0, progress=False)
    samples = write_samples(keep, out)
    return {"train": summary, "open_loop": open_loop, "closed_loop": closed_loop["all"]["summary"], "samples": samples}
