"""`uwm data|eval|generate driving`.

    uwm data driving --out NS --scenes 40                  simulate highway-env scenes -> a nuScenes-format folder
    uwm data driving --nuscenes NS --out D                 a nuScenes folder (simulated or real) -> sequences of
                                                           the training scenes (tokenizers fitted there)
    uwm data driving --nuscenes NS --out P --tokenizers D --video    pretraining data (camera frames alone)
    uwm finetune driving --data D --init P/final --out R   (the generic trainer)
    uwm eval driving --model R/final --data D              held-out scenes: L2, collisions, frames vs baselines
                     [--closed-loop 20]                    + closed-loop episodes per scenario in highway-env
    uwm generate driving --model R/final --nuscenes NS --sample TOKEN -o plan.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    if command == "data":
        parser.add_argument("--out", required=True, help="nuScenes folder to write (simulation) or sequence folder (--nuscenes)")
        sim = parser.add_argument_group("simulation (without --nuscenes)")
        sim.add_argument("--scenes", type=int, default=20, help="scenes to simulate (rotating through the scenarios)")
        sim.add_argument("--scenarios", nargs="+", help="highway merge intersection roundabout (default: all)")
        sim.add_argument("--duration", type=float, default=20.0, help="seconds per scene")
        sim.add_argument("--camera-width", type=int, default=320, help="CAM_FRONT width in pixels (16:9)")
        sim.add_argument("--workers", type=int, default=2, help="scene processes")
        conv = parser.add_argument_group("sequences (with --nuscenes)")
        conv.add_argument("--nuscenes", help="a nuScenes-format folder to turn into training sequences")
        conv.add_argument("--held-out", type=float, default=0.2, help="fraction of scenes kept for evaluation "
                          "(generated folders; v1.0-mini/trainval use the official split)")
        conv.add_argument("--tokenizers", help="reuse the tokenizers of this sequence folder")
        conv.add_argument("--video", action="store_true", help="pretraining data: the camera frames alone")
        conv.add_argument("--plan-copies", type=int, default=0, help="plan-only sequences (no frames) per key frame "
                          "beside its joint sequence; train with data.packing=true (not with --video)")
        conv.add_argument("--image-size", type=int, default=64)
        conv.add_argument("--grid", type=int, default=8, help="VQ codes per frame side")
        conv.add_argument("--vq-steps", type=int, default=1500)
        parser.add_argument("--version", default="v1.0-sim", help="nuScenes version folder (v1.0-mini for the real mini)")
        parser.add_argument("--seed", type=int, default=0)
        return
    parser.add_argument("--model", required=True, help="an exported driving model folder (final/)")
    if command == "eval":
        parser.add_argument("--data", required=True, help="the model's training sequences: the manifest says which "
                            "nuScenes folder and split to evaluate on")
        parser.add_argument("--limit", type=int, help="evaluate only the first N held-out samples")
        parser.add_argument("--mlp-steps", type=int, default=2000, help="ego-status MLP baseline training steps")
        parser.add_argument("--no-fid", action="store_true", help="skip FID (Inception on CPU takes a while)")
        parser.add_argument("--closed-loop", type=int, default=0, metavar="N", help="also drive N seeded episodes "
                            "per scenario in highway-env (model, IDM, constant velocity)")
        parser.add_argument("--duration", type=float, default=15.0, help="closed-loop episode length (s)")
        parser.add_argument("--plan-samples", type=int, default=16, help="plans drawn per key frame; the model's "
                            "plan is their per-waypoint median (1: the greedy plan)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--samples", help="write trajectory plots and frame GIFs to this folder")
        parser.add_argument("--out", help="write the metrics JSON here")
    if command == "generate":
        parser.add_argument("--nuscenes", required=True, help="nuScenes-format folder")
        parser.add_argument("--version", default="v1.0-sim")
        parser.add_argument("--sample", help="sample token (default: the middle key frame of the first scene)")
        parser.add_argument("-o", "--output", required=True, help="PNG: the frame with the plan, then the future frames")


def run(command: str, args: argparse.Namespace) -> None:
    """Run `uwm data|eval|generate driving` with its parsed options."""
    {"data": _data, "eval": _eval, "generate": _generate}[command](args)


def _data(args) -> None:
    if args.nuscenes is None:
        from .nuscenes_writer import write_nuscenes

        folder = write_nuscenes(args.out, args.scenes, tuple(args.scenarios) if args.scenarios else None, args.seed,
                                args.duration, args.camera_width, args.version, args.workers)
        print(f"{folder}: {args.scenes} scenes; load with NuScenes(version={args.version!r}, dataroot={args.out!r})")
        return
    from .dataset import write_driving_dataset
    from .evaluate import load_split

    train, test = load_split(args.nuscenes, args.version, args.held_out, args.seed)
    tokenizers = None
    if args.tokenizers:
        from core.data import SequenceDataset

        tokenizers = SequenceDataset(args.tokenizers).tokenizers()
    source = {"nuscenes": str(Path(args.nuscenes).resolve()), "version": args.version, "held_out": args.held_out,
              "split_seed": args.seed, "num_held_out_samples": len(test)}
    path = write_driving_dataset(args.out, train, tokenizers, args.image_size, args.grid, args.vq_steps, source,
                                 args.video, args.plan_copies, args.seed)
    print(json.dumps(json.loads((Path(path) / "manifest.json").read_text())["meta"], indent=1))


def _eval(args) -> None:
    from core.data import SequenceDataset

    from .evaluate import evaluate_open_loop, load_split
    from .model import DrivingModel

    meta = SequenceDataset(args.data).meta
    if meta.get("task") != "driving":
        raise ValueError(f"{args.data} holds {meta.get('task')!r} sequences, not driving ones")
    source = meta["source"]
    train, test = load_split(source["nuscenes"], source["version"], source["held_out"], source["split_seed"],
                             meta["past_frames"], meta["future_frames"])
    test = test[: args.limit] if args.limit else test
    model = DrivingModel.load(args.model, past_frames=meta["past_frames"], future_frames=meta["future_frames"])
    keep: dict = {}
    results = evaluate_open_loop(model, train, test, args.mlp_steps, args.seed, fid=not args.no_fid, keep=keep,
                                 plan_samples=args.plan_samples)
    results.update(model_dir=str(args.model), data_dir=str(args.data), nuscenes=source)
    if args.closed_loop:
        from .closed_loop import evaluate_closed_loop

        results["closed_loop"] = evaluate_closed_loop(model, args.closed_loop, args.duration, args.seed,
                                                      plan_samples=args.plan_samples)
    if args.samples:
        from .plots import write_samples

        results["samples"] = write_samples(keep, args.samples)
    from core.data import report_json

    report_json(results, args.out)


def _generate(args) -> None:
    from .loader import load_samples
    from .model import Context, DrivingModel
    from .plots import plan_figure

    model = DrivingModel.load(args.model)
    samples = load_samples(args.nuscenes, args.version, model.past_frames, model.future_frames)
    if args.sample:
        matches = [s for s in samples if s.token == args.sample]
        if not matches:
            raise ValueError(f"sample {args.sample!r} is not in {args.nuscenes} ({args.version})")
        sample = matches[0]
    else:
        first = [s for s in samples if s.scene == samples[0].scene]
        sample = first[len(first) // 2]
    plan, frames = model.predict([Context.from_sample(sample, model.image_size)])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    plan_figure(sample, plan[0], frames[0], args.output)
    print(json.dumps({"sample": sample.token, "command": sample.command, "plan_m": plan[0].round(2).tolist(),
                      "output": args.output}))
