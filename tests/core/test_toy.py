import numpy as np
import pytest
import torch

from core import toy
from core.pretrained import load_pretrained


def test_judge_reads_rendered_scenes_back():
    scenes = toy.random_scenes(60, np.random.default_rng(0))
    row, col, colour = toy.judge(torch.stack([toy.render(s, 32) for s in scenes]))
    assert row.tolist() == [s.row for s in scenes] and col.tolist() == [s.col for s in scenes]
    assert colour.tolist() == [list(toy.COLORS).index(s.color) for s in scenes]


def test_actions_move_the_shape_within_the_grid():
    scene = toy.Scene("circle", "red", 0, 2)
    assert scene.moved(np.array([1.2, 0.9])) == toy.Scene("circle", "red", 1, 2)  # clamped at the right edge
    assert not torch.equal(toy.render(scene), toy.render(scene.moved(np.array([1.0, -1.0]))))


def test_evaluation_scores_a_model_that_learned_to_locate(locate_run):
    model, tokenizers = load_pretrained(locate_run[0] / "final")
    metrics = toy.evaluate_toy(model, tokenizers, ("locate",), num_scenes=32)
    assert metrics["locate_accuracy"] > 0.9  # fresh scenes; chance is 1/9


def test_unknown_task_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown toy tasks \\['fly'\\]"):
        toy.write_toy_dataset(tmp_path, 4, ("fly",), progress=False)
