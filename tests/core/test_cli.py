import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from core.cli import main

COMMANDS = ("data", "pretrain", "finetune", "eval", "generate", "bench", "demo")


def test_help_lists_the_seven_commands():
    result = subprocess.run([sys.executable, "-m", "core.cli", "--help"], capture_output=True, text=True, check=True)
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("    ") and line.split()]
    assert tuple(listed) == COMMANDS


def test_bad_config_key_is_reported(locate_data, tmp_path, capsys):
    code = main(["pretrain", "--data", str(locate_data), "--out", str(tmp_path), "model.num_expert=2"])
    assert code == 2 and "unknown config key 'model.num_expert'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    """data -> pretrain -> final/ through the CLI, on a small image + text toy set."""
    root = tmp_path_factory.mktemp("cli")
    assert main(["data", "toy", "--out", str(root / "data"), "--scenes", "48", "--tasks", "caption,draw",
                 "--image-size", "16", "--vq-steps", "20"]) == 0
    assert main(["pretrain", "--data", str(root / "data"), "--out", str(root / "run"), "--no-progress",
                 "train.steps=10", "data.seq_len=96", "train.save_every=0"]) == 0
    return root


def test_generate_and_eval_round_trip(image_model, capsys):
    model = image_model / "run" / "final"
    image = image_model / "drawn.png"
    assert main(["generate", "toy", "--model", str(model), "--caption", "a red circle at the top left",
                 "-o", str(image)]) == 0
    assert np.asarray(Image.open(image)).shape == (16, 16, 3)
    capsys.readouterr()
    assert main(["generate", "toy", "--model", str(model), "--image", str(image)]) == 0
    printed = capsys.readouterr().out
    assert printed.endswith("\n") and "<" not in printed  # one line of caption text, however poor after 10 steps
    metrics_path = image_model / "metrics.json"
    assert main(["eval", "toy", "--model", str(model), "--tasks", "caption,draw", "--scenes", "4",
                 "--out", str(metrics_path)]) == 0
    metrics = json.loads(metrics_path.read_text())
    assert 0 <= metrics["caption_accuracy"] <= 1 and metrics["draw_psnr"] > 0


def test_generate_rejects_an_image_of_the_wrong_size(image_model, capsys):
    wrong = image_model / "wrong.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(wrong)
    assert main(["generate", "toy", "--model", str(image_model / "run" / "final"), "--image", str(wrong)]) == 2
    assert "expected a 16x16 image, got 20x20" in capsys.readouterr().err
    missing = image_model / "no-such-model"  # checked before the model is loaded: the model is not needed to say so
    assert main(["generate", "toy", "--model", str(missing), "--caption", "a red circle at the top left"]) == 2
    assert "pass -o/--output PNG" in capsys.readouterr().err
    assert main(["generate", "toy", "--model", str(missing)]) == 2
    assert "give --caption (draw), --image (caption)" in capsys.readouterr().err


def test_finetune_needs_a_pretrained_model(locate_data, tmp_path):
    with pytest.raises(SystemExit, match="--init"):
        main(["finetune", "--data", str(locate_data), "--out", str(tmp_path)])


def test_runs_set_aside_within_one_second_each_get_a_folder(tmp_path, monkeypatch):
    import core.cli

    monkeypatch.setattr(core.cli.time, "strftime", lambda *_: "20261207T000000")
    for n in range(3):
        (tmp_path / "summary.json").write_text(str(n))
        assert core.cli._set_aside(tmp_path).name == ["before-20261207T000000", "before-20261207T000000-2",
                                                      "before-20261207T000000-3"][n]
    assert [(tmp_path / f / "summary.json").read_text() for f in ("before-20261207T000000", "before-20261207T000000-3")] \
        == ["0", "2"]


def test_no_resume_trains_afresh_and_keeps_the_earlier_checkpoints_aside(locate_data, tmp_path, capsys):
    train = ["pretrain", "--data", str(locate_data), "--out", str(tmp_path), "--no-progress", "data.seq_len=32",
             "train.save_every=2"]
    assert main([*train, "train.steps=4"]) == 0
    assert main([*train, "train.steps=2", "--no-resume"]) == 0  # a shorter run from the start, in the same folder
    assert "the earlier run's files are now in" in capsys.readouterr().err
    aside, = tmp_path.glob("before-*")
    assert (aside / "checkpoints" / "latest").read_text() == "step-00000004"  # the earlier run's, untouched
    assert json.loads((aside / "summary.json").read_text())["steps"] == 4 and (aside / "final" / "config.json").is_file()
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == ["step-00000002"]
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 2
    assert [row["step"] for row in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())][-1] == 2
