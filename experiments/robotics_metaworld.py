"""Robotics experiment: a Meta-World world model, evaluated open loop and in closed loop.

    python experiments/robotics_metaworld.py [--config experiments/robotics_metaworld.yaml]
        [--work runs/robotics] [--results experiments/results/robotics]

Stages (each skipped when its output already exists in --work, or its results JSON in --results, so an
interrupted run resumes; delete a results JSON to run that evaluation again):
 1. episodes: `task` (fine-tuning), held-out `task` episodes (another seed), pretraining tasks, and
    `task` episodes of the oracle planner (fine-tuning: contacts made by the planner's kind of actions)
 2. tokenizers (fitted on all training episodes) and sequence shards; the frame tokenizer's learned
    context decoder (fitted on the fine-tuning episodes)
 3. pretrain the MoE backbone on the pretraining tasks, fine-tune it on `task`, and fine-tune a
    second copy on `task` with actions zeroed (the no-action baseline)
 4. open loop: PSNR / SSIM per horizon, FID; copy-last-frame, zero-action model, VQ ceiling; each
    decoded plainly, anchored to the last context frame by code equality, and by the context decoder
 5. policy ranking: success of each policy in Meta-World vs in `WorldModelEnv`'s batched simulator
 6. planning: CEM MPC with world-model rollouts vs with the real simulator (oracle) vs random (each seed's
    episodes kept in --work/planning_stages as they finish, so a stopped planning stage resumes too; removed once
    planning.json is written)
 7. rollout speed; summary.json with goals, provenance and stage times; plots and GIFs
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data import write_json_atomic  # noqa: E402
from core.provenance import provenance  # noqa: E402
from core.tokenizers import Tokenizers  # noqa: E402
from domains.robotics import closed_loop  # noqa: E402
from domains.robotics.episodes import EpisodeConfig, evaluation_seeds, generate_episodes, load_episodes  # noqa: E402
from domains.robotics.evaluate import open_loop_eval, write_comparison_gif  # noqa: E402
from domains.robotics.planning import MPCSettings  # noqa: E402
from domains.robotics.world_model import (WorldModel, fit_context_decoder, fit_robot_tokenizers,  # noqa: E402
                                          write_world_model_dataset)
from experiments.common import experiment_config, saved_stage, stage, train  # noqa: E402

HERE = Path(__file__).resolve().parent


def episodes_stage(cfg: dict, work: Path) -> dict[str, Path]:
    d, seed = cfg["data"], cfg["seed"]
    common = dict(steps=d["steps"], image_size=d["image_size"], action_repeat=d["action_repeat"])
    mix = dict(policies=d["policies"], **common)
    specs = {"finetune": EpisodeConfig(tasks=[cfg["task"]], episodes=d["episodes"], seed=seed, **mix),
             "test": EpisodeConfig(tasks=[cfg["task"]], episodes=d["test_episodes"], seed=seed + 1, **mix),
             "pretrain": EpisodeConfig(tasks=d["pretrain_tasks"], episodes=d["pretrain_episodes"], seed=seed + 2,
                                       **mix)}
    if d["planner_episodes"]:
        specs["planner"] = EpisodeConfig(tasks=[cfg["task"]], episodes=d["planner_episodes"], seed=seed + 3,
                                         policies={d["planner_policy"]: 1}, **common)
    return {name: generate_episodes(work / "episodes" / name, config, workers=d["workers"])
            for name, config in specs.items()}


def sequences_stage(cfg: dict, work: Path, episodes: dict[str, Path]) -> dict[str, Path]:
    """Tokenizers fitted on the pretraining and fine-tuning episodes (kept in work/sequences/tokenizers, so
    an interrupted stage does not fit them again); fine-tuning sequences also get the planner's episodes."""
    d = cfg["data"]
    out = {name: work / "sequences" / name for name in ("pretrain", "finetune", "zero_actions")}
    if all((path / "manifest.json").exists() for path in out.values()):
        return out
    saved = work / "sequences" / "tokenizers"
    try:
        tokenizers = Tokenizers.load(saved)
    except FileNotFoundError:  # not fitted yet (the manifest is written last)
        training = load_episodes(episodes["pretrain"]) + load_episodes(episodes["finetune"])
        tokenizers, report = fit_robot_tokenizers(training, d["image_size"], d["grid"], vq_steps=d["vq_steps"],
                                                  seed=cfg["seed"])
        print("image tokenizer:", json.dumps(report))
        write_json_atomic(work / "sequences" / "image_tokenizer.json", report)
        tokenizers.save(saved)
    finetune = [episodes["finetune"]] + ([episodes["planner"]] if "planner" in episodes else [])
    for name, folders in (("pretrain", episodes["pretrain"]), ("finetune", finetune), ("zero_actions", finetune)):
        if not (out[name] / "manifest.json").exists():
            write_world_model_dataset(folders, out[name], window=d["window"], stride=d["stride"], tokenizers=tokenizers,
                                      zero_actions=name == "zero_actions")
    return out


def context_decoder_stage(cfg: dict, work: Path, episodes: dict[str, Path], results: Path) -> Path | None:
    """The frame tokenizer's learned context decoder (work/context_decoder, None if `data.context_decoder_steps`
    is 0), fitted on the fine-tuning episodes; its report is copied to results/context_decoder.json."""
    steps = cfg["data"]["context_decoder_steps"]
    if not steps:
        return None
    out = work / "context_decoder"
    if not (out / "report.json").exists():
        fit_context_decoder(Tokenizers.load(work / "sequences" / "tokenizers"),
                            [episodes[name] for name in ("finetune", "planner") if name in episodes], out, steps,
                            seed=cfg["seed"])
    write_json_atomic(results / "context_decoder.json", json.loads((out / "report.json").read_text()))
    return out


def open_loop_stage(cfg: dict, wm: WorldModel, zero_dir: Path, test_episodes: Path, results: Path,
                    decoder_dir: Path | None) -> dict:
    """Open-loop metrics; writes the PSNR/SSIM plot and a real | model (each decoding) | zero-action | copy-last GIF."""
    ol, keep = cfg["open_loop"], {}
    baseline = WorldModel.load(zero_dir, zero_actions=True, context_decoder=decoder_dir)  # the same frame tokenizer
    open_loop = open_loop_eval(wm, load_episodes(test_episodes), ol["context"], ol["horizon"], ol["per_episode"],
                               baseline=baseline, fid_windows=ol["fid_windows"], keep=keep)
    plot_open_loop(open_loop, results / "open_loop_psnr_ssim.png")
    write_comparison_gif(keep, results / "real_vs_predicted.gif")
    return open_loop


def plot_open_loop(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = np.arange(1, results["horizon"] + 1)
    for color, name in enumerate(("model", "zero_actions", "copy_last", "vq_reconstruction")):
        for suffix, style in (("", "-"), ("_anchored", "--"), ("_learned", ":")):  # decodings: one colour, 3 styles
            if name + suffix in results:
                for ax, metric in zip(axes, ("psnr", "ssim")):
                    ax.plot(steps, results[name + suffix][metric], style, marker="o", color=f"C{color}",
                            label=(name + suffix).replace("_", " "))
    for ax, label in zip(axes, ("PSNR (dB)", "SSIM")):
        ax.set_xlabel("horizon step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_ranking(ranking: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("success", "success", "success rate (success token)"), ("return", "return", "mean return")]
    if "imagined_goal_success" in ranking:
        panels.insert(1, ("success", "goal_success", "success rate (task test on imagined states)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.2))
    for ax, (real_key, key, label) in zip(axes, panels):
        ax.scatter(ranking[f"real_{real_key}"], ranking[f"imagined_{key}"])
        for name, x, y in zip(ranking["policies"], ranking[f"real_{real_key}"], ranking[f"imagined_{key}"]):
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(f"{real_key.replace('_', ' ')} in Meta-World")
        ax.set_ylabel(f"{label} in the world model", fontsize=8)
        rho = ranking[f"{key}_spearman"]
        ax.set_title(f"Spearman {rho:.2f}" if rho is not None else "no correlation (a constant side)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(HERE / "robotics_metaworld.yaml"))
    parser.add_argument("--work", default="runs/robotics", help="episodes, shards, checkpoints (not committed)")
    parser.add_argument("--results", default=str(HERE / "results" / "robotics"))
    parser.add_argument("--skip", default="", help="comma-separated evaluations to skip: ranking, planning")
    args = parser.parse_args()
    cfg = experiment_config(args.config, HERE / "robotics_metaworld.yaml",
                            free=("data.policies", "planning.mpc"))  # MPCSettings checks its own
    work, results = Path(args.work), Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    times: dict[str, float] = {}
    started = time.perf_counter()
    task, d, p = cfg["task"], cfg["data"], cfg["planning"]
    settings = MPCSettings(**p["mpc"])  # checked now, not after an hour of training

    with stage("episodes", times, work / "episodes"):
        episodes = episodes_stage(cfg, work)
    with stage("tokenizers and sequences", times, work / "sequences"):
        sequences = sequences_stage(cfg, work, episodes)
    with stage("context decoder", times, work / "context_decoder"):
        decoder_dir = context_decoder_stage(cfg, work, episodes, results)
    with stage("pretrain", times, work / "pretrain"):
        pretrained = train("robotics-pretrain", cfg, sequences["pretrain"], work / "pretrain", cfg["pretrain_steps"])
    tuning = cfg["finetune_overrides"]
    with stage("finetune", times, work / "finetune"):
        model_dir = train("robotics-finetune", cfg, sequences["finetune"], work / "finetune", cfg["finetune_steps"],
                          pretrained, tuning)
    with stage("finetune zero actions", times, work / "zero_actions"):
        zero_dir = train("robotics-zero-actions", cfg, sequences["zero_actions"], work / "zero_actions",
                         cfg["zero_action_steps"], pretrained, tuning)
    ensemble_seeds, ensemble_dirs = p["ensemble_seeds"], []
    if ensemble_seeds:
        # The same fine-tuning with other seeds, for the MPC ensemble; each member also holds out other samples.
        with stage("finetune ensemble", times, *(work / f"finetune_seed{seed}" for seed in ensemble_seeds)):
            ensemble_dirs = [train(f"robotics-finetune-seed{seed}", cfg, sequences["finetune"],
                                   work / f"finetune_seed{seed}", cfg["finetune_steps"], pretrained,
                                   [*tuning, f"train.seed={seed}", f"data.val_seed={seed}"]) for seed in ensemble_seeds]

    wm = WorldModel.load(model_dir, context_decoder=decoder_dir)
    summary = {"provenance": provenance(), "config": cfg, "model": str(model_dir)}

    def run_or_load(name: str, label: str, evaluate) -> dict | None:
        """results/<name>.json if it exists (from an earlier run), else run `evaluate` and write it."""
        path = results / f"{name}.json"
        if name in skip and not path.exists():
            return None
        return saved_stage(path, label, times, evaluate)

    open_loop = run_or_load("open_loop", "open loop", lambda: open_loop_stage(cfg, wm, zero_dir, episodes["test"],
                                                                              results, decoder_dir))
    def rank() -> dict:
        ranking = closed_loop.policy_ranking(wm, task, cfg["ranking"]["policies"],
                                             evaluation_seeds("ranking", cfg["ranking"]["episodes"]), d["steps"],
                                             d["action_repeat"], stages=work / "ranking_stages")
        plot_ranking(ranking, results / "ranking_scatter.png")
        return ranking

    ranking = run_or_load("ranking", "policy ranking", rank)
    if ranking is not None:  # written: a rerun (JSON deleted) starts afresh
        shutil.rmtree(work / "ranking_stages", ignore_errors=True)
    planning = run_or_load("planning", "planning", lambda: {**closed_loop.planning_benchmark(
        wm, task, evaluation_seeds("planning", p["seeds"]), d["steps"], d["action_repeat"], settings,
        ensemble=[WorldModel.load(path) for path in ensemble_dirs], stages=work / "planning_stages"),
        "ensemble_seeds": ensemble_seeds})
    if planning is not None:  # written: a rerun (JSON deleted) starts afresh
        shutil.rmtree(work / "planning_stages", ignore_errors=True)
    speed = run_or_load("speed", "rollout speed", lambda: closed_loop.rollout_speed(wm, task,
                                                                                    action_repeat=d["action_repeat"]))

    h = open_loop["horizon"] - 1
    psnr_8 = {name: scores["psnr"][h] for name, scores in open_loop.items() if isinstance(scores, dict)}
    goals = {"open_loop_psnr_at_8_minus_copy_last_db": psnr_8["model"] - psnr_8["copy_last"],
             "open_loop_psnr_at_8_minus_zero_action_db": psnr_8["model"] - psnr_8["zero_actions"]}
    for how in ("anchored", "learned"):  # absent from an open_loop.json written before that decoding
        if f"model_{how}" in psnr_8:
            goals[f"open_loop_{how}_psnr_at_8_minus_copy_last_db"] = psnr_8[f"model_{how}"] - psnr_8["copy_last"]
            goals[f"open_loop_{how}_psnr_at_8_minus_zero_action_db"] = (psnr_8[f"model_{how}"]
                                                                       - psnr_8[f"zero_actions_{how}"])
    if ranking is not None:
        goals["ranking_success_spearman"] = ranking["success_spearman"]
        goals["ranking_return_spearman"] = ranking["return_spearman"]
        goals["ranking_goal_success_spearman"] = ranking.get("goal_success_spearman")
    if planning is not None:
        goals["mpc_success_world_model"] = planning["world_model_mpc"]["success_rate"]
        goals["mpc_success_oracle"] = planning["oracle_mpc"]["success_rate"]
        goals["mpc_success_random"] = planning["random"]["success_rate"]
    summary.update(goals=goals, stage_seconds=times, wall_seconds=round(time.perf_counter() - started, 1),
                   speed=speed)
    write_json_atomic(results / "summary.json", summary)
    print(json.dumps(goals, indent=1))


if __name__ == "__main__":
    main()
