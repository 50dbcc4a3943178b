"""Sequences, training and generation of the bidirectional model, at tiny scale."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from core.cli import main
from core.data import SequenceDataset
from domains.medical.dataset import IMAGE, draw_example, read_example
from domains.medical.model import MedicalModel


def _tags(example, vocab):
    """The special tokens of an example, in order."""
    specials = vocab["special"]
    ids = example.token_ids
    return [vocab.specials[int(i) - specials.start] for i in ids if specials.contains(torch.tensor([int(i)]))]


def test_both_directions_reorder_the_same_segments(tiny_medical_run):
    data, _, _ = tiny_medical_run
    tokenizers = SequenceDataset(data).tokenizers()
    vocab = tokenizers.vocab
    report = tokenizers.encode_text("The heart is enlarged.")
    codes = vocab.to_global(IMAGE, torch.arange(tokenizers.images[IMAGE].config.num_tokens) % 7)
    draw, read = draw_example(tokenizers, report, codes), read_example(tokenizers, codes, report)
    assert _tags(draw, vocab) == ["<bos>", "<medical>", "<report>", "</report>", "<img>", "</img>", "<eos>"]
    assert _tags(read, vocab) == ["<bos>", "<medical>", "<img>", "</img>", "<report>", "</report>", "<eos>"]
    # the loss covers exactly the second segment (its tags, content and <eos>)
    image_ids = vocab[IMAGE].contains(draw.token_ids)
    assert draw.loss_mask[image_ids].all() and not draw.loss_mask[vocab["text"].contains(draw.token_ids)].any()
    assert read.loss_mask[vocab["text"].contains(read.token_ids)].all() and not read.loss_mask[vocab[IMAGE].contains(read.token_ids)].any()
    # classifier-free guidance drops the report to one <null>
    dropped = draw_example(tokenizers, report, codes, drop_condition=True)
    assert _tags(dropped, vocab) == ["<bos>", "<medical>", "<null>", "<img>", "</img>", "<eos>"]


def test_dataset_meta_and_cfg_dropout(tiny_medical_run):
    data, _, _ = tiny_medical_run
    dataset = SequenceDataset(data)
    meta = dataset.meta
    assert meta["task"] == "medical" and meta["num_train_studies"] + meta["num_held_out_studies"] == 48
    assert len(dataset) == meta["num_train_studies"] * meta["renders"] * 2  # draw + read per render
    null = dataset.tokenizers().vocab.special("<null>")
    assert any(int(null) in dataset[i].token_ids.tolist() for i in range(len(dataset)))


def test_tiny_model_learns_both_directions(tiny_medical_run):
    data, model_dir, summary = tiny_medical_run
    losses = [json.loads(line)["loss"] for line in (model_dir.parent / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line]
    assert summary["final_loss"] < 0.5 * losses[0], losses
    model = MedicalModel.load(model_dir)
    images = model.draw(["The heart is enlarged.", "Normal chest."], cfg_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 1, 32, 32) and 0 <= float(images.min()) and float(images.max()) <= 1
    reports = model.read(images)
    assert len(reports) == 2 and all(isinstance(r, str) and r for r in reports)


def test_generate_cli_round_trip(tiny_medical_run, tmp_path, capsys):
    _, model_dir, _ = tiny_medical_run
    png = tmp_path / "cxr.png"
    assert main(["generate", "medical", "--model", str(model_dir), "--report", "Small left pleural effusion.",
                 "-o", str(png), "--seed", "1"]) == 0
    assert Image.open(png).size == (32, 32)
    capsys.readouterr()
    assert main(["generate", "medical", "--model", str(model_dir), "--image", str(png)]) == 0
    assert capsys.readouterr().out.strip()  # the report it wrote
    assert main(["generate", "medical", "--model", str(model_dir), "--report", "   ", "-o", str(png)]) == 2
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG broken")
    assert main(["generate", "medical", "--model", str(model_dir), "--image", str(corrupt)]) == 2
    assert "corrupt.png" in capsys.readouterr().err


def test_eval_cli_reports_both_directions_and_baselines(tiny_medical_run, tmp_path):
    data, model_dir, _ = tiny_medical_run
    out = tmp_path / "eval.json"
    assert main(["eval", "medical", "--model", str(model_dir), "--data", str(data), "--judge-steps", "4",
                 "--out", str(out), "--samples", str(tmp_path / "samples")]) == 0
    results = json.loads(out.read_text())
    reports = results["image_to_report"]
    for name in ("model", "retrieval", "retrieval_vq_features", "most_common"):
        assert set(reports[name]) >= {"bleu_1", "bleu_4", "rouge_l", "clinical_efficacy", "embedding_similarity"}
    images = results["report_to_image"]
    for name in ("model", "mean_image", "vq_reconstruction", "reference"):
        assert {"judge", "fid", "ssim"} <= set(images[name])
    assert images["reference"]["ssim"] == pytest.approx(1.0)
    assert (tmp_path / "samples" / "report_to_image.png").is_file() and (data / "judge" / "judge.json").is_file()


def test_study_images_use_real_images_else_deterministic_renders(tmp_path):
    from domains.medical.dataset import image_config, study_images
    from domains.medical.reports import Study

    png = tmp_path / "cxr.png"
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8)[:, None] * 4, (1, 64))).save(png)  # vertical ramp
    real = Study("a", "Clear lungs.", "", image=png, labels={"no_finding": 1})
    rendered = Study("b", "Cardiomegaly.", "", labels={"cardiomegaly": 1, "no_finding": 0})
    first, second = study_images([real, rendered], 32), study_images([real, rendered], 32)
    assert first.shape == (2, 1, 32, 32) and torch.equal(first, second)  # seeded by study id
    assert first[0, 0, -1, 0] > first[0, 0, 0, 0]  # the file's own pixels (bright at the bottom)
    assert not torch.equal(study_images([rendered], 32, variant=1)[0], first[1])  # another patient
    assert image_config(128, 16).grid_size == 16 and image_config(64, 16).block_out_channels == (32, 64)
    with pytest.raises(ValueError, match="grid"):
        image_config(64, 12)
