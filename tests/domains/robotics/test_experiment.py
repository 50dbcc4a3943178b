"""The robotics experiment script end to end from an empty folder at toy scale: every stage (episodes of the
planner and the MPC ensemble too) runs and writes its results, and a second run resumes."""

from __future__ import annotations

import json

import pytest

from tests.experiment_runs import run_from_scratch_and_resume


def shrink(cfg: dict) -> None:
    cfg["data"].update(image_size=32, grid=4, steps=6, episodes=2, test_episodes=2, pretrain_tasks=["reach-v3"],
                       pretrain_episodes=1, policies={"expert:0": 1, "random": 1}, planner_episodes=1, window=4,
                       stride=2, vq_steps=10, workers=1)
    cfg.update(pretrain_steps=2, finetune_steps=2, zero_action_steps=2,
               finetune_overrides=[*cfg["finetune_overrides"], "train.save_every=0", "train.eval_every=0"],
               open_loop={"context": 2, "horizon": 2, "per_episode": 1, "fid_windows": 2},
               ranking={"policies": ["expert:0", "random"], "episodes": 1})
    cfg["planning"].update(seeds=1, ensemble_seeds=[1])
    cfg["planning"]["mpc"].update(horizon=2, population=4, elites=2, iterations=1, replan_every=2)


@pytest.mark.slow
def test_the_experiment_runs_from_scratch_and_resumes(tmp_path):
    results, summary = run_from_scratch_and_resume("robotics_metaworld", shrink, tmp_path)
    assert set(summary["stage_seconds"]) >= {"episodes", "pretrain", "finetune", "finetune ensemble", "planning"}
    assert "robotics_metaworld.py --config" in summary["provenance"]["command"]
    planning = json.loads((results / "planning.json").read_text())
    assert planning["world_models"] == 2 and planning["ensemble_seeds"] == [1]
    assert len(planning["world_model_mpc"]["successes"]) == 1
    for name in ("open_loop.json", "ranking.json", "speed.json", "open_loop_psnr_ssim.png", "ranking_scatter.png",
                 "real_vs_predicted.gif"):
        assert (results / name).stat().st_size > 0, name
