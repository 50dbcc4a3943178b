"""The main job, `uwm demo --quick`, end to end: what the README's first command runs (at full size)."""

import json

import numpy as np
import pytest
from PIL import Image

from core import toy
from core.cli import main


@pytest.mark.slow
def test_quick_demo_runs_end_to_end(tmp_path):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    vq = summary["image_tokenizer"]
    assert vq["psnr_held_out"] > vq["psnr_mean_image_held_out"]  # the tokenizer learned more than the mean
    for part in ("pretrain", "finetune"):  # both trainings learned
        logged = [json.loads(line)["loss"] for line in (tmp_path / part / "metrics.jsonl").read_text().splitlines()]
        assert logged[-1] < 0.7 * logged[0]
    for key in ("locate_accuracy", "caption_accuracy", "draw_cell_accuracy", "predict_cell_accuracy"):
        assert 0.0 <= summary["eval"][key] <= 1.0
    for path in summary["samples"]:
        size = toy.IMAGE_SIZE
        assert np.asarray(Image.open(path)).shape == (6 * size, 2 * size, 3)  # truth | generated, 6 scenes
    for part in ("pretrain", "finetune"):
        assert (tmp_path / part / "final" / "model.safetensors").is_file()
    assert "uwm demo (quick)" in (tmp_path / "summary.md").read_text()
    robotics = summary["robotics"]  # Meta-World push-v3 world model at tiny scale
    logged = [json.loads(line)["loss"] for line in
              (tmp_path / "robotics" / "model" / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1] < 0.8 * logged[0]
    assert len(robotics["open_loop"]["model"]["psnr"]) == robotics["open_loop"]["horizon"] == 4
    gif = Image.open(robotics["gif"])
    assert gif.n_frames == 13 and gif.size == (2 * 32 * 4, 32 * 4)  # real | imagined, 12 steps + the first frame
    driving = summary["driving"]  # highway-env -> nuScenes format -> plan + camera at tiny scale
    logged = [json.loads(line)["loss"] for line in
              (tmp_path / "driving" / "model" / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1] < 0.7 * logged[0]
    planning = driving["open_loop"]["planning"]
    assert set(planning) == {"model", "constant_velocity", "ego_status_mlp"}
    assert all(np.isfinite(p["l2_m"]["stp3"]["avg"]) for p in planning.values())
    assert set(driving["closed_loop"]) == {"idm", "constant_velocity", "model"}
    assert driving["closed_loop"]["model"]["episodes"] == 4  # one per scenario type
    assert Image.open(driving["samples"]["frames_gif"]).n_frames == 2  # +0.5 s and +1 s
    assert "driving (" in (tmp_path / "summary.md").read_text()
    medical = summary["medical"]  # real Open-i reports <-> rendered chest X-rays at tiny scale
    logged = [json.loads(line)["loss"] for line in
              (tmp_path / "medical" / "model" / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1] < 0.7 * logged[0]
    evaluation = medical["evaluation"]
    assert evaluation["num_held_out"] == 16 and evaluation["report_to_image"]["reference"]["ssim"] == pytest.approx(1.0)
    assert 0.0 <= evaluation["image_to_report"]["model"]["clinical_efficacy"]["macro_f1"] <= 1.0
    assert Image.open(medical["samples"]["report_to_image"]).size[0] > 0
    assert "medical (16 held-out Open-i reports" in (tmp_path / "summary.md").read_text()
