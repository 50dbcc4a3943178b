"""Driving experiment: joint ego-trajectory and front-camera prediction on a nuScenes-format folder written
from highway-env, evaluated open loop (nuScenes metrics) and closed loop (the model drives in highway-env).

    python experiments/driving_nuscenes.py [--config experiments/driving_nuscenes.yaml]
        [--work runs/driving] [--results experiments/results/driving] [--nuscenes DIR --version v1.0-mini]

Stages (each skipped when its output already exists in --work, or its results JSON in --results, so an
interrupted run resumes; delete a results JSON to run that evaluation again):
 1. scenes: highway-env scenes of every scenario type -> a nuScenes-format folder (skipped with --nuscenes,
    e.g. the real v1.0-mini; closed-loop evaluation still drives in highway-env)
 2. tokenizers (frame VQ, waypoint/status/command bins) and sequences of the training scenes; camera-only
    sequences for pretraining
 3. pretrain the MoE backbone on the camera-only data, fine-tune it on the joint sequences
 4. open-loop evaluation on the held-out scenes vs constant velocity and the ego-status MLP; trajectory
    plots and a GIF of predicted vs real frames
 5. closed-loop episodes per scenario type: the model, the IDM driver and constant velocity
 6. summary.json with goals, provenance and stage times
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data import SequenceDataset, json_ready, write_json_atomic  # noqa: E402
from core.provenance import provenance  # noqa: E402
from domains.driving.closed_loop import evaluate_closed_loop  # noqa: E402
from domains.driving.dataset import write_driving_dataset  # noqa: E402
from domains.driving.evaluate import evaluate_open_loop, load_split  # noqa: E402
from domains.driving.model import DrivingModel  # noqa: E402
from domains.driving.nuscenes_writer import write_nuscenes  # noqa: E402
from domains.driving.plots import write_samples  # noqa: E402
from experiments.common import experiment_config, saved_stage, stage, train  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(HERE / "driving_nuscenes.yaml"))
    parser.add_argument("--work", default="runs/driving", help="nuScenes folder, sequences, checkpoints (not committed)")
    parser.add_argument("--results", default=str(HERE / "results" / "driving"))
    parser.add_argument("--nuscenes", help="use this nuScenes-format folder instead of simulating one")
    parser.add_argument("--version", default="v1.0-sim")
    args = parser.parse_args()
    cfg = experiment_config(args.config, HERE / "driving_nuscenes.yaml")
    work, results = Path(args.work), Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    started = time.perf_counter()
    d, s, e = cfg["data"], cfg["scenes"], cfg["eval"]

    root = Path(args.nuscenes) if args.nuscenes else work / "nuscenes"
    if not args.nuscenes:
        with stage("scenes", times, root):
            write_nuscenes(root, s["count"], seed=cfg["seed"], duration=s["duration"], camera_width=s["camera_width"],
                           version=args.version)
    with stage("tokenizers and sequences", times, work / "sequences"):
        train_samples, test_samples = load_split(root, args.version, d["held_out"], cfg["seed"])
        sequences = {name: work / "sequences" / name for name in ("joint", "video")}
        source = {"nuscenes": str(root.resolve()), "version": args.version, "held_out": d["held_out"],
                  "split_seed": cfg["seed"], "num_held_out_samples": len(test_samples)}
        if not (sequences["joint"] / "manifest.json").exists():
            write_driving_dataset(sequences["joint"], train_samples, image_size=d["image_size"], grid=d["grid"],
                                  vq_steps=d["vq_steps"], source=source, plan_copies=d["plan_copies"], seed=cfg["seed"])
        if not (sequences["video"] / "manifest.json").exists():
            tokenizers = SequenceDataset(sequences["joint"]).tokenizers()
            write_driving_dataset(sequences["video"], train_samples, tokenizers, source=source, video=True,
                                  seed=cfg["seed"])
    with stage("pretrain", times, work / "pretrain"):
        pretrained = train("driving-pretrain", cfg, sequences["video"], work / "pretrain", cfg["pretrain_steps"])
    with stage("finetune", times, work / "finetune"):
        model_dir = train("driving-finetune", cfg, sequences["joint"], work / "finetune", cfg["finetune_steps"],
                          pretrained)
    model = DrivingModel.load(model_dir)

    def open_loop_stage() -> dict:
        keep: dict = {}
        open_loop = evaluate_open_loop(model, train_samples, test_samples, e["mlp_steps"], cfg["seed"], keep=keep,
                                       frame_samples=e["frame_samples"], plan_samples=e["plan_samples"])
        return {**open_loop, "samples": write_samples(keep, results), "provenance": provenance(), "nuscenes": source}

    open_loop = saved_stage(results / "open_loop.json", "open-loop evaluation", times, open_loop_stage)
    closed_loop = saved_stage(results / "closed_loop.json", "closed-loop evaluation", times, lambda: {
        **evaluate_closed_loop(model, e["closed_loop_episodes"], e["closed_loop_duration"], cfg["seed"],
                               plan_samples=e["plan_samples"]), "provenance": provenance()})

    planning, frames = open_loop["planning"], open_loop["frames"]
    l2 = {name: planning[name]["l2_m"]["stp3"]["avg"] for name in planning}
    l2_turns = {name: planning[name]["subset"]["l2_m"]["stp3"]["avg"] for name in planning}
    collisions = {name: planning[name]["collision_rate"]["stp3"]["avg"] for name in planning}
    loop = closed_loop["all"]["summary"]
    goals = {
        "l2_stp3_avg_m": l2, "l2_stp3_avg_m_non_straight": l2_turns,
        "l2_below_constant_velocity_by": 1 - l2["model"] / l2["constant_velocity"],
        "goal_l2_30pct_below_cv": l2["model"] <= 0.7 * l2["constant_velocity"],
        "goal_l2_not_worse_than_mlp": l2["model"] <= l2["ego_status_mlp"],
        "goal_non_straight_better_than_mlp": (l2_turns["model"] or math.inf) < (l2_turns["ego_status_mlp"] or 0),
        "collision_rate_stp3_avg": collisions,
        "goal_open_loop_collisions_at_most_cv": collisions["model"] <= collisions["constant_velocity"],
        "closed_loop_collision_rate": {name: loop[name]["collision_rate"] for name in loop},
        "closed_loop_score": {name: loop[name]["score"] for name in loop},
        "goal_closed_loop_collisions_at_most_cv": loop["model"]["collision_rate"] <= loop["constant_velocity"]["collision_rate"],
        "frame_psnr_1s_db": {name: frames[name]["psnr_db"][1] for name in ("model", "copy_last", "vq_reconstruction")},
        # how many 1 s frames count the 60 dB cap in that mean (copy-last's of a standing car), and the pooled PSNR
        "frame_psnr_1s_images_at_cap": {name: frames[name]["images_at_psnr_cap"][1] for name in ("model", "copy_last")},
        "frame_psnr_1s_of_mean_mse_db": {name: frames[name]["psnr_of_mean_mse_db"][1] for name in ("model", "copy_last")},
        "goal_psnr_1s_above_copy_last": frames["model"]["psnr_db"][1] > frames["copy_last"]["psnr_db"][1],
    }
    image_tokenizer = json.loads((sequences["joint"] / "manifest.json").read_text())["meta"]["image_tokenizer"]
    summary = {"provenance": provenance(), "config": cfg, "nuscenes": source, "model": str(model_dir), "goals": goals,
               "image_tokenizer": image_tokenizer, "stage_seconds": times,
               "wall_seconds": round(time.perf_counter() - started, 1)}
    write_json_atomic(results / "summary.json", summary)
    print(json.dumps(json_ready(goals), indent=1))


if __name__ == "__main__":
    main()
