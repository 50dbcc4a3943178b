"""The driving experiment script end to end from an empty folder at toy scale (simulated nuScenes folder,
training, open and closed loop), and its resume."""

from __future__ import annotations

import json

import pytest

from tests.experiment_runs import run_from_scratch_and_resume


def shrink(cfg: dict) -> None:
    cfg["scenes"].update(count=4, duration=4.0)  # one scene per scenario type
    cfg["data"].update(image_size=32, grid=4, vq_steps=10)
    cfg.update(pretrain_steps=2, finetune_steps=2)
    cfg["eval"].update(mlp_steps=5, plan_samples=2, frame_samples=2, closed_loop_episodes=1, closed_loop_duration=1.0)


@pytest.mark.slow
def test_the_experiment_runs_from_scratch_and_resumes(tmp_path):
    results, summary = run_from_scratch_and_resume("driving_nuscenes", shrink, tmp_path)
    assert set(summary["stage_seconds"]) >= {"scenes", "pretrain", "finetune", "closed-loop evaluation"}
    closed_loop = json.loads((results / "closed_loop.json").read_text())
    assert closed_loop and json.loads((results / "open_loop.json").read_text())
    for name in ("trajectories.png", "frames.gif"):
        assert (results / name).stat().st_size > 0, name
