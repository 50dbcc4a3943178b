"""The findings-use monitor: what it measures, on oracle models whose answers are known, and the trainer logging it."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from core.cli import domain_monitors
from core.config import load_config
from core.data import SequenceDataset
from core.training import Trainer, validation_split
from domains.medical.dataset import findings_present
from domains.medical.findings import PATHOLOGIES
from domains.medical.monitor import training_monitors


class NextToken(nn.Module):
    """An oracle that puts `margin` on the token that comes next (it has seen the whole sequence), or, with
    `flip_findings`, on the other token of the same pathology where a findings token comes next."""

    def __init__(self, vocab_size: int, tokenizers=None, flip_findings: bool = False, margin: float = 10.0):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # for the device
        self.vocab_size, self.tokenizers, self.flip, self.margin = vocab_size, tokenizers, flip_findings, margin

    def forward(self, input_ids, positions=None, attention_mask=None):
        following = torch.cat([input_ids[:, 1:], input_ids[:, -1:]], 1)
        if self.flip:
            span = self.tokenizers.vocab["findings"]
            is_finding = span.contains(following)
            following = torch.where(is_finding, following ^ 1, following)  # 2j <-> 2j + 1 (the range starts even)
        logits = torch.zeros(*input_ids.shape, self.vocab_size)
        logits.scatter_(-1, following[..., None], self.margin)
        return SimpleNamespace(logits=logits)


def _monitor(data):
    dataset = SequenceDataset(data)
    monitors = training_monitors(dataset, np.arange(len(dataset)))
    assert len(monitors) == 1
    return dataset, monitors[0]


def test_monitor_picks_draws_and_reads(tiny_medical_run):
    data, _, _ = tiny_medical_run
    dataset, monitor = _monitor(data)
    assert monitor.drawn and monitor.reads and monitor.pairs
    meta = dataset.meta  # the studies' reads, one per render, and not the findings reads of random finding sets
    assert meta["random_reads"] and len(monitor.reads) == meta["num_train_studies"] * meta["renders"] <= 96
    vocab = dataset.tokenizers().vocab
    for draw in monitor.drawn:
        assert int(draw.token_ids[2]) == vocab.special("<findings>")
    for read in monitor.reads:  # cut after the findings: <bos> <medical> <img> ... </img> <findings> f </findings>
        assert int(read.token_ids[2]) == vocab.special("<img>")
        assert int(read.token_ids[-1]) == vocab.special("</findings>")
    for finding, j, without in monitor.pairs:  # the pair differs in that finding's token only
        drawn = monitor.drawn[j]
        differ = (drawn.token_ids != without.token_ids).nonzero()[:, 0]
        assert len(differ) == 1
        position = int(differ[0]) - 3
        assert PATHOLOGIES[position] == finding and bool(findings_present(dataset.tokenizers(), drawn.token_ids[3 + position]))


def test_oracle_scores(tiny_medical_run):
    """A model that knows every next token: its drawing needs no findings (gains 0) and it reads perfectly (AUC 1);
    one that states the wrong finding every time reads at AUC 0."""
    data, _, _ = tiny_medical_run
    dataset, monitor = _monitor(data)
    tokenizers = dataset.tokenizers()
    assert tokenizers.vocab["findings"].start % 2 == 0
    values = monitor(NextToken(tokenizers.vocab.size))
    draws = {k: v for k, v in values.items() if k.startswith("draw_")}
    assert draws and all(abs(v) < 1e-3 for v in draws.values()), draws
    reads = {k: v for k, v in values.items() if k.startswith(("read_auc", "read_ap"))}
    assert {"read_auc", "read_ap"} <= set(reads) and all(v == 1.0 for v in reads.values()), reads
    flipped = monitor(NextToken(tokenizers.vocab.size, tokenizers, flip_findings=True))
    assert flipped["read_auc"] == 0.0
    # Every read that states a finding ranks it last: average precision falls to the finding's share of the reads.
    _, stated = monitor._read_scores(NextToken(tokenizers.vocab.size))
    both = [j for j in range(len(PATHOLOGIES)) if 0 < stated[:, j].sum() < len(stated)]
    assert both
    for j in both:
        assert flipped[f"read_ap_{PATHOLOGIES[j]}"] == pytest.approx(stated[:, j].mean()), PATHOLOGIES[j]


def test_monitor_on_a_trained_model_and_a_finding_it_is_denied(tiny_medical_run):
    """On the tiny trained model, the values are finite and each finding's gain is its pairs' mean log-likelihood
    difference, computed here directly from the model's logits."""
    from core.pretrained import load_pretrained

    data, model_dir, _ = tiny_medical_run
    dataset, monitor = _monitor(data)
    model, _ = load_pretrained(model_dir)
    values = monitor(model)
    assert all(math.isfinite(v) for v in values.values())
    finding, j, without = monitor.pairs[0]

    def logprob(example):
        ids = example.token_ids[None]
        logp = torch.log_softmax(model(ids).logits.float()[0, :-1], -1).gather(-1, ids[0, 1:, None])[:, 0]
        return float((logp * example.loss_mask[1:]).sum())

    with torch.no_grad():
        gains = [logprob(monitor.drawn[k]) - logprob(w) for f, k, w in monitor.pairs if f == finding]
    assert math.isclose(values[f"draw_{finding}"], float(np.mean(gains)), rel_tol=1e-3, abs_tol=1e-3)


def test_trainer_logs_the_monitor(tiny_medical_run, tmp_path):
    data, model_dir, _ = tiny_medical_run
    dataset = SequenceDataset(data)
    config = load_config("tiny", [f"data.path={data}", "data.seq_len=160", "model.max_seq_len=192", "data.val_fraction=0.3",
                                  "train.steps=4", "train.eval_every=2", "train.log_every=3", "train.save_every=0",
                                  f"finetune.init={model_dir}"])
    monitors = domain_monitors(dataset, config)
    assert len(monitors) == 1  # the validation split's draws and reads
    assert len(monitors[0].reads) <= len(validation_split(len(dataset), config.data, dataset.groups())[0])
    summary = Trainer(config, dataset, tmp_path / "run", progress=False, monitors=monitors).fit()
    assert "draw_findings" in summary["monitors"] and "read_auc" in summary["monitors"]
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "monitor/draw_findings" in line] == [2, 4]  # every validation, logged
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tb")).Reload()
    assert "monitor/draw_findings" in events.Tags()["scalars"] and "train/loss" in events.Tags()["scalars"]


def test_no_monitor_for_other_data(tiny_medical_run, tmp_path):
    from domains.medical.dataset import load_studies, write_medical_dataset

    data, _, _ = tiny_medical_run
    studies = load_studies(json.loads((data / "manifest.json").read_text())["meta"]["source"]["openi"])
    unpaired = write_medical_dataset(tmp_path / "unpaired", studies[:8], image_size=32, grid=8, renders=1, unpaired=True,
                                     tokenizers=SequenceDataset(data).tokenizers(), max_report_tokens=40, progress=False)
    dataset = SequenceDataset(unpaired)
    assert training_monitors(dataset, np.arange(len(dataset))) == []


def test_validation_curves_plot(tmp_path):
    from domains.medical.plots import plot_validation_curves

    rows = [{"step": s, "val_loss": 2.0 / s, "monitor/draw_findings": s / 10, "monitor/draw_cardiomegaly": s / 20,
             "monitor/read_auc": 0.5 + s / 1000, "monitor/read_auc_cardiomegaly": 0.6, "monitor/read_ap": 0.3,
             "monitor/read_ap_cardiomegaly": 0.4} for s in (200, 400, 600)]
    path = plot_validation_curves(rows, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_validation_curves([], tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
    assert plot_validation_curves([{"step": 200, "val_loss": 1.0}], tmp_path / "loss.png").is_file()  # no monitors


def test_validation_holds_out_whole_studies(tiny_medical_run):
    from domains.medical.dataset import IMAGE

    data, _, _ = tiny_medical_run
    dataset = SequenceDataset(data)
    image = dataset.tokenizers().vocab[IMAGE]
    val, train = validation_split(len(dataset), load_config("tiny", ["data.val_fraction=0.3"]).data, dataset.groups())

    def images(indices) -> set:
        codes = (dataset[int(i)].token_ids for i in indices)
        return {tuple(ids[image.contains(ids)].tolist()) for ids in codes} - {()}

    held = images(val)
    assert held and not held & images(train)  # a study's read and draw share its render: both held out or neither
