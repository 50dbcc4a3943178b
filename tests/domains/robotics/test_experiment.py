"""The robotics experiment script end to end from an empty folder, at toy scale: every stage runs (episodes of
the planner too, and the MPC ensemble), writes its results, and a second run resumes without redoing any."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[3]


def tiny_config(path: Path) -> Path:
    """The experiment's own config with every size shrunk (so its keys stay the script's)."""
    cfg = yaml.safe_load((ROOT / "experiments" / "robotics_metaworld.yaml").read_text())
    cfg["data"].update(image_size=32, grid=4, steps=6, episodes=2, test_episodes=2, pretrain_tasks=["reach-v3"],
                       pretrain_episodes=1, policies={"expert:0": 1, "random": 1}, planner_episodes=1, window=4,
                       stride=2, vq_steps=10, workers=1)
    cfg.update(pretrain_steps=2, finetune_steps=2, zero_action_steps=2,
               finetune_overrides=[*cfg["finetune_overrides"], "train.save_every=0", "train.eval_every=0"],
               open_loop={"context": 2, "horizon": 2, "per_episode": 1, "fid_windows": 2},
               ranking={"policies": ["expert:0", "random"], "episodes": 1})
    cfg["planning"].update(seeds=1, horizon=2, population=4, elites=2, iterations=1, replan_every=2, ensemble_seeds=[1])
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_the_experiment_runs_from_scratch_and_resumes(tmp_path):
    command = [sys.executable, str(ROOT / "experiments" / "robotics_metaworld.py"), "--config",
               str(tiny_config(tmp_path / "tiny.yaml")), "--work", str(tmp_path / "work"),
               "--results", str(tmp_path / "results")]
    first = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    results = tmp_path / "results"
    summary = json.loads((results / "summary.json").read_text())
    assert set(summary["stage_seconds"]) >= {"episodes", "pretrain", "finetune", "finetune ensemble", "planning"}
    assert "robotics_metaworld.py --config" in summary["provenance"]["command"]
    planning = json.loads((results / "planning.json").read_text())
    assert planning["world_models"] == 2 and planning["ensemble_seeds"] == [1]
    assert len(planning["world_model_mpc"]["successes"]) == 1
    for name in ("open_loop.json", "ranking.json", "speed.json", "open_loop_psnr_ssim.png", "ranking_scatter.png",
                 "real_vs_predicted.gif"):
        assert (results / name).stat().st_size > 0, name
    assert (tmp_path / "work" / "finetune_seed1" / "final" / "config.json").exists()

    again = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    redone = [line for line in again.stdout.splitlines() if line.startswith("== ") and line.endswith(" s")
              and float(line.split(": ")[-1][:-2]) >= 2]
    assert not redone, f"the second run redid stages: {redone}"
    assert json.loads((results / "summary.json").read_text())["stage_seconds"] == summary["stage_seconds"]
