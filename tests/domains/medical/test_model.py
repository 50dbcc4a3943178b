"""Sequences, training and generation of the bidirectional model, at tiny scale."""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.cli import main
from core.data import SequenceDataset
from domains.medical.dataset import (FINDINGS_BINS, IMAGE, dataset_split, draw_example, findings_draw_example,
                                     findings_ids, findings_present, findings_segment, imaged_studies, load_studies,
                                     read_example, write_counts, write_example)
from domains.medical.evaluate import EvalSettings, evaluate_medical, study_labels
from domains.medical.findings import FINDINGS, PATHOLOGIES
from domains.medical.metrics import ratio_bootstrap
from domains.medical.model import MedicalModel, compose_report
from domains.medical.reports import split_studies


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
    findings = ("cardiomegaly", "effusion")
    draw, read = draw_example(tokenizers, report, findings, codes), read_example(tokenizers, codes, findings, report)
    assert _tags(draw, vocab) == ["<bos>", "<medical>", "<report>", "</report>", "<findings>", "</findings>", "<img>",
                                  "</img>", "<eos>"]
    assert _tags(read, vocab) == ["<bos>", "<medical>", "<img>", "</img>", "<findings>", "</findings>", "<report>",
                                  "</report>", "<eos>"]
    # the image is drawn from report + findings; reading, the findings and then the report are targets
    image_ids, text_ids = vocab[IMAGE].contains(draw.token_ids), vocab["text"].contains(draw.token_ids)
    finding_ids = vocab[FINDINGS_BINS].contains(draw.token_ids)
    assert draw.loss_mask[image_ids].all() and not draw.loss_mask[text_ids | finding_ids].any()
    text_ids, finding_ids = vocab["text"].contains(read.token_ids), vocab[FINDINGS_BINS].contains(read.token_ids)
    assert read.loss_mask[text_ids | finding_ids].all() and not read.loss_mask[vocab[IMAGE].contains(read.token_ids)].any()
    # one token per pathology, in PATHOLOGIES order (cardiomegaly, effusion, pneumothorax, ...), each its own pair of ids
    ids = read.token_ids[finding_ids]
    assert findings_present(tokenizers, ids).tolist() == [True, True] + [False] * 8
    assert (vocab.to_local(FINDINGS_BINS, ids) // 2).tolist() == list(range(10))
    assert not torch.equal(ids, findings_ids(tokenizers, ["effusion"]))
    with pytest.raises(ValueError, match="unknown finding"):
        findings_segment(tokenizers, ["cardiomegally"])
    # writing, the findings alone condition the report
    write = write_example(tokenizers, findings, report)
    assert _tags(write, vocab) == ["<bos>", "<medical>", "<findings>", "</findings>", "<report>", "</report>", "<eos>"]
    text_ids, finding_ids = vocab["text"].contains(write.token_ids), vocab[FINDINGS_BINS].contains(write.token_ids)
    assert write.loss_mask[text_ids].all() and not write.loss_mask[finding_ids].any()
    assert torch.equal(write.token_ids[finding_ids], ids) and not vocab[IMAGE].contains(write.token_ids).any()
    # the findings draw: the same findings tokens alone condition the image
    sketch = findings_draw_example(tokenizers, findings, codes)
    assert _tags(sketch, vocab) == ["<bos>", "<medical>", "<findings>", "</findings>", "<img>", "</img>", "<eos>"]
    image_ids, finding_ids = vocab[IMAGE].contains(sketch.token_ids), vocab[FINDINGS_BINS].contains(sketch.token_ids)
    assert sketch.loss_mask[image_ids].all() and not sketch.loss_mask[finding_ids].any()
    assert torch.equal(sketch.token_ids[finding_ids], ids) and torch.equal(sketch.token_ids[image_ids], codes)
    # classifier-free guidance drops the report and the findings to one <null> each
    dropped = draw_example(tokenizers, report, findings, codes, drop_condition=True)
    assert _tags(dropped, vocab) == ["<bos>", "<medical>", "<null>", "<null>", "<img>", "</img>", "<eos>"]
    dropped = findings_draw_example(tokenizers, findings, codes, drop_condition=True)
    assert _tags(dropped, vocab) == ["<bos>", "<medical>", "<null>", "<img>", "</img>", "<eos>"]


def test_dataset_meta_and_cfg_dropout(tiny_medical_run):
    data, _, _ = tiny_medical_run
    dataset = SequenceDataset(data)
    meta = dataset.meta
    assert meta["task"] == "medical" and meta["num_train_studies"] + meta["num_held_out_studies"] == 48
    train, _ = split_studies(load_studies(meta["source"]["openi"]), meta["held_out"], meta["split_seed"])
    writes = write_counts(train, meta["writes"], meta["min_finding_writes"], meta["renders"])
    assert min(writes.values()) == meta["writes"] < max(writes.values())  # studies with rarer findings write more
    per_render = [2 + meta["findings_draws"] + count for count in writes.values()]  # draw, read, findings draws, writes
    random = meta["random_reads"] + meta["random_draws"]  # per study: renders of random finding sets
    assert meta["findings_draws"] == 1 and meta["random_reads"] == meta["random_draws"] == 1
    assert len(dataset) == meta["renders"] * sum(per_render) + meta["num_train_studies"] * random
    vocab = dataset.tokenizers().vocab
    write_tags = ["<bos>", "<medical>", "<findings>", "</findings>", "<report>", "</report>", "<eos>"]
    assert sum(_tags(dataset[i], vocab) == write_tags for i in range(len(dataset))) == meta["renders"] * sum(writes.values())
    start = len(dataset) - 2 * meta["num_train_studies"]  # a findings read and a findings draw of each come last
    reads = [dataset[i] for i in range(start, len(dataset), 2)]
    assert all(_tags(read, vocab) == ["<bos>", "<medical>", "<img>", "</img>", "<findings>", "</findings>", "<eos>"]
               for read in reads)
    draws = [dataset[i] for i in range(start + 1, len(dataset), 2)]
    assert all(_tags(draw, vocab) in (["<bos>", "<medical>", "<findings>", "</findings>", "<img>", "</img>", "<eos>"],
                                      ["<bos>", "<medical>", "<null>", "<img>", "</img>", "<eos>"]) for draw in draws)
    for read, draw in zip(reads, draws):  # the same render, read and drawn
        image = vocab[IMAGE].contains(read.token_ids)
        assert torch.equal(read.token_ids[image], draw.token_ids[vocab[IMAGE].contains(draw.token_ids)])
    present = torch.stack([findings_present(dataset.tokenizers(), read.token_ids[vocab[FINDINGS_BINS].contains(read.token_ids)])
                           for read in reads])
    assert 0 < present.float().mean() < 0.5 and present.any(0).sum() >= 8  # random sets: most pathologies occur
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
    # the prompt's findings come from the labeler unless given; they are a decision per pathology when reading
    tail = 13  # <findings>, 10 pathology tokens, </findings>, <img>
    enlarged = model.draw_prompt("The heart is enlarged.", draw_from="findings")  # the findings draw's prompt
    assert torch.equal(enlarged, model.draw_prompt("Other words.", findings=["cardiomegaly"], draw_from="findings"))
    assert torch.equal(enlarged, model.draw_prompt(None, findings=["cardiomegaly"])) and len(enlarged) == 2 + tail
    assert not torch.equal(enlarged, model.draw_prompt("Normal chest.", draw_from="findings"))
    with_report = model.draw_prompt("The heart is enlarged.")  # with a report, by default the draw sequence's prompt
    assert torch.equal(with_report[-tail:], enlarged[-tail:]) and len(with_report) > len(enlarged)
    assert not torch.equal(with_report, model.draw_prompt("Other words.", findings=["cardiomegaly"]))
    null = model.vocab.special("<null>")
    assert model.draw_prompt(None).tolist().count(null) == 1
    assert model.draw_prompt(None, draw_from="report").tolist().count(null) == 2
    drawn = model.draw(None, findings=[["cardiomegaly"], []], cfg_scale=1.0)
    assert drawn.shape == (2, 1, 32, 32)
    for bad in (dict(draw_from="image"), dict(findings=[["cardiomegaly"]])):
        with pytest.raises(ValueError, match="draw_from|findings lists"):
            model.draw(["A", "B"], **bad)
    with pytest.raises(ValueError, match="needs the report"):
        model.draw(None, findings=[["cardiomegaly"]], draw_from="report")
    everything, _ = model.read_findings(images, threshold=0.0)
    nothing, from_findings = model.read_findings(images, threshold=1.0)
    assert everything == [PATHOLOGIES] * 2 and nothing == [()] * 2
    # by default the report is written from the stated findings alone: what `write` gives for them
    assert from_findings == model.write([[], []])
    assert all(isinstance(r, str) for r in model.read(images, threshold=1.0, report_from="image"))
    with pytest.raises(ValueError, match="report_from"):
        model.read(images, report_from="report")


def test_write_tries_candidates_until_the_labeler_reads_the_findings(tiny_medical_run, monkeypatch):
    from domains.medical.model import CANDIDATE_TEMPERATURE

    model = MedicalModel.load(tiny_medical_run[1])
    asked = [["cardiomegaly"], [], ["cardiomegaly"]]
    tries = iter([["Small pleural effusion.", "Normal chest."],  # greedy, one per distinct findings set
                  ["The heart is enlarged. Small pleural effusion."] * 2,  # rows 0 and 2: 1 disagreement, not 2
                  ["The heart is enlarged.", "Pleural effusion."],  # row 0: none (done); row 2: 2, its 1 stays
                  ["The heart is enlarged."]])  # row 2: none; nothing is pending, so no more tries
    calls = []

    def scripted(sets, temperature, *args):
        calls.append((sets, temperature))
        return next(tries)

    monkeypatch.setattr(model, "_write", scripted)
    assert model.write(asked, candidates=8) == ["The heart is enlarged.", "Normal chest.", "The heart is enlarged."]
    assert [temperature for _, temperature in calls] == [0.0] + [CANDIDATE_TEMPERATURE] * 3
    assert [sets for sets, _ in calls] == [[("cardiomegaly",), ()], [("cardiomegaly",)] * 2, [("cardiomegaly",)] * 2,
                                           [("cardiomegaly",)]]
    tries = iter([["Small pleural effusion.", "Normal chest."]])
    assert model.write(asked, candidates=1) == ["Small pleural effusion.", "Normal chest.", "Small pleural effusion."]
    with pytest.raises(ValueError, match="candidates"):
        model.write(asked, candidates=0)
    with pytest.raises(ValueError, match="unknown finding"):
        model.write([["enlarged heart"]])


def test_write_never_keeps_an_empty_report_over_a_written_one(tiny_medical_run, monkeypatch):
    model = MedicalModel.load(tiny_medical_run[1])
    tries = iter([["", "Small pleural effusion."],  # greedy: the normal chest's closed at once, cardiomegaly's wrong
                  ["Normal chest.", ""],  # row 0 done; row 1's empty try does not replace its 2 disagreements
                  ["The heart is enlarged."]])  # row 1 done
    monkeypatch.setattr(model, "_write", lambda *args: next(tries))
    assert model.write([[], ["cardiomegaly"]], candidates=8) == ["Normal chest.", "The heart is enlarged."]
    tries = iter([[""]])
    assert model.write([[]], candidates=1) == [""]  # one candidate: kept as it came, not labeled


def test_compose_report_says_each_finding_in_a_sentence_of_the_tries():
    both = ["cardiomegaly", "pneumothorax"]
    # no try says both: the first's sentences that deny nothing wanted, then the first sentence that says the
    # missing one and nothing unwanted (not the one that also says an effusion)
    tries = ["The heart is enlarged. No pneumothorax.", "Right pneumothorax and pleural effusion.",
             "Lungs are clear.\nsmall right pneumothorax", "Large pneumothorax."]
    assert compose_report(tries, both) == "The heart is enlarged. small right pneumothorax."
    # the missing finding is said nowhere: still better without the first's unwanted effusion sentence
    assert compose_report(["The heart is enlarged. Small effusion.", "Effusion."], both) == "The heart is enlarged."
    assert compose_report(["", "The heart is enlarged."], ["cardiomegaly"]) == "The heart is enlarged."
    # nothing better to make of them (an empty report is worse than any written one): the first, as it came
    assert compose_report(["Small effusion.", "Normal chest."], ["cardiomegaly"]) == "Small effusion."
    assert compose_report(["Heart size is normal."], []) == "Heart size is normal."


def test_write_composes_a_report_from_the_tries_when_none_says_the_findings(tiny_medical_run, monkeypatch):
    model = MedicalModel.load(tiny_medical_run[1])
    asked = [["cardiomegaly", "pneumothorax"], ["cardiomegaly"]]

    written = {("cardiomegaly", "pneumothorax"): ["The heart is enlarged. No pneumothorax.",  # 1 disagreement
                                                  "Small right pneumothorax. Small pleural effusion.",  # 2
                                                  "Pleural effusion."],  # 3
               ("cardiomegaly",): ["The heart is enlarged."]}  # said at the first try: never tried again
    tries = {}
    monkeypatch.setattr(model, "_write", lambda sets, *args: [next(tries[key]) for key in sets])
    for compose, first in ((True, "The heart is enlarged. Small right pneumothorax."),
                           (False, "The heart is enlarged. No pneumothorax.")):
        tries.update({key: iter(reports) for key, reports in written.items()})
        assert model.write(asked, candidates=3, compose=compose) == [first, "The heart is enlarged."]
    # the search keeps each stage: the first try, the best try, the composed report
    tries.update({key: iter(reports) for key, reports in written.items()})
    search = model.write_search(asked, candidates=3)
    assert search.first == search.best == ["The heart is enlarged. No pneumothorax.", "The heart is enlarged."]
    assert search.composed == ["The heart is enlarged. Small right pneumothorax.", "The heart is enlarged."]


def test_findings_log_likelihood_is_the_readers_probability_of_the_findings(tiny_medical_run):
    from domains.medical.dataset import load_studies, study_images

    model = MedicalModel.load(tiny_medical_run[1])
    studies = load_studies(SequenceDataset(tiny_medical_run[0]).meta["source"]["openi"])[:3]
    images = study_images(studies, 32)
    # threshold 0 states every pathology, each read after the earlier ones present: the chain of all present
    present = model.findings_probabilities(images, threshold=0.0).double()
    absent = 1 - model.findings_probabilities(images, threshold=1.0).double()
    for chain, probabilities in ((list(PATHOLOGIES), present), ([], absent)):
        likelihood = model.findings_log_likelihood(images, [chain] * 3)
        assert likelihood.shape == (3,) and bool((likelihood <= 0).all())
        torch.testing.assert_close(likelihood.double(), probabilities.log().sum(1), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="2 findings lists for 3 images"):
        model.findings_log_likelihood(images, [[], []])
    with pytest.raises(ValueError, match="unknown finding"):
        model.findings_log_likelihood(images[:1], [["enlarged heart"]])


def test_progress_bars_where_asked_over_more_than_one_batch(tiny_medical_run, capsys):
    from domains.medical.dataset import load_studies, study_images

    studies = load_studies(SequenceDataset(tiny_medical_run[0]).meta["source"]["openi"])[:3]
    images = study_images(studies, 32)
    model = MedicalModel.load(tiny_medical_run[1], progress=True)
    capsys.readouterr()
    model.findings_probabilities(images, batch_size=1)
    assert "medical findings probabilities" in capsys.readouterr().err
    model.draw(None, findings=[[], ["effusion"]], batch_size=1)
    assert "medical draw" in capsys.readouterr().err
    model.findings_probabilities(images)  # one batch: no bar
    quiet = MedicalModel.load(tiny_medical_run[1])
    quiet.findings_probabilities(images, batch_size=1)
    assert "medical" not in capsys.readouterr().err


def test_draw_keeps_the_candidate_the_models_reader_finds_the_findings_in(tiny_medical_run):
    model = MedicalModel.load(tiny_medical_run[1])
    asked = [["cardiomegaly"], [], ["effusion", "support_devices"]]
    drawn = model.draw(None, findings=asked, generator=torch.Generator().manual_seed(3), candidates=3)
    # the candidates are three one-image passes over the reports, from the same generator in turn
    generator = torch.Generator().manual_seed(3)
    passes = torch.stack([model.draw(None, findings=asked, generator=generator) for _ in range(3)])  # (3, B, 1, S, S)
    likelihood = torch.stack([model.findings_log_likelihood(images, asked) for images in passes])  # (3, B)
    assert torch.equal(drawn, passes[likelihood.argmax(0), torch.arange(3)])
    # every candidate and its likelihood, as `draw` chose among them
    tries, scores = model.candidate_draws(None, findings=asked, generator=torch.Generator().manual_seed(3), candidates=3)
    assert torch.equal(tries, passes) and torch.equal(scores, likelihood)
    one, none = model.candidate_draws(None, findings=asked, generator=torch.Generator().manual_seed(3))
    assert torch.equal(one, passes[:1]) and none is None
    assert torch.equal(model.draw(None, findings=asked, generator=torch.Generator().manual_seed(3)), passes[0])
    with pytest.raises(ValueError, match="candidates"):
        model.draw(None, findings=asked, candidates=0)


def test_findings_thresholds_tuned_or_given(tiny_medical_run):
    from domains.medical.dataset import load_studies, study_findings, study_images
    from domains.medical.evaluate import TUNING_VARIANT, findings_threshold, pathology_matrix
    from domains.medical.metrics import tune_thresholds

    data, model_dir, _ = tiny_medical_run
    model = MedicalModel.load(model_dir)
    studies = load_studies(SequenceDataset(data).meta["source"]["openi"])[:12]
    images = study_images(studies, 32)
    probabilities = model.findings_probabilities(images)
    assert probabilities.shape == (12, len(PATHOLOGIES)) and 0 <= float(probabilities.min()) <= float(probabilities.max()) <= 1
    tuned = findings_threshold("tuned", model, studies)
    assert list(tuned) == list(PATHOLOGIES) and all(0.05 <= t <= 0.95 for t in tuned.values())
    assert set(findings_threshold("tuned", model, studies, min_f1=1.01).values()) <= {0.5, 1.0}  # none stated
    assert findings_threshold("0.3", model, studies) == 0.3
    assert findings_threshold("tuned", model, studies, tune_studies=6) == findings_threshold("tuned", model, studies[:6])
    assert findings_threshold("tuned", model, studies, tune_studies=None) == tuned  # all 12
    with pytest.raises(ValueError, match="tune_studies"):
        findings_threshold("tuned", model, studies, tune_studies=0)
    # a second pass reads each finding after the earlier ones are decided at the first pass's thresholds
    tuning = study_images(studies, 32, TUNING_VARIANT)
    reference = pathology_matrix(map(study_findings, studies))
    again = tune_thresholds(model.findings_probabilities(tuning, threshold=tuned).numpy(), reference)
    assert findings_threshold("tuned", model, studies, passes=2) == dict(zip(PATHOLOGIES, again.tolist()))
    with pytest.raises(ValueError, match="passes"):
        findings_threshold("tuned", model, studies, passes=0)
    for bad in ("high", "1.5"):
        with pytest.raises(ValueError, match="findings_threshold: expected a number"):
            findings_threshold(bad, model, studies)
    # one threshold per pathology: the first five always stated, the others never
    stated, _ = model.read_findings(images[:2], threshold=[0.0] * 5 + [1.0] * 5)
    assert stated == [PATHOLOGIES[:5]] * 2
    by_name = {name: 0.0 if j < 5 else 1.0 for j, name in enumerate(PATHOLOGIES)}
    assert model.read_findings(images[:2], threshold=by_name)[0] == stated  # the same thresholds by name
    with pytest.raises(ValueError, match="threshold"):
        model.read_findings(images[:1], threshold=2.0)
    with pytest.raises(ValueError, match="lack"):
        model.read_findings(images[:1], threshold={"cardiomegaly": 0.5})
    with pytest.raises(ValueError, match="one per pathology in the order"):  # e.g. 11: the judge's findings
        model.read_findings(images[:1], threshold=[0.5] * (len(PATHOLOGIES) + 1))
    # studies with a real image are not tuned on (the model trained on that image; no new patient of it)
    real = [dataclasses.replace(s, image=Path("real.png")) for s in studies[6:]]
    assert findings_threshold("tuned", model, real + studies[:6]) == findings_threshold("tuned", model, studies[:6])
    with pytest.raises(ValueError, match="without an image"):
        findings_threshold("tuned", model, real)


def test_reading_averages_the_findings_log_odds_over_code_grid_alignments(tiny_medical_run):
    from domains.medical.dataset import load_studies, study_images
    from domains.medical.model import phase_shifts, shift_images

    assert phase_shifts(4, 2) == [(0, 0), (0, 2), (2, 0), (2, 2)] and phase_shifts(4, 1) == [(0, 0)]
    assert len(phase_shifts(4, 4)) == 16
    with pytest.raises(ValueError, match="read_phases"):
        phase_shifts(4, 5)
    dot = torch.zeros(1, 1, 8, 8)
    dot[0, 0, 5, 5] = 1.0
    assert torch.nonzero(shift_images(dot, 2, 1)[0, 0]).tolist() == [[7, 6]]
    assert float(shift_images(dot, 2, 1).sum()) == 1.0  # the repeated top/left edge is dark here

    data, model_dir, _ = tiny_medical_run
    studies = load_studies(SequenceDataset(data).meta["source"]["openi"])[:3]
    images = study_images(studies, 32)
    single, joint = MedicalModel.load(model_dir, read_phases=1), MedicalModel.load(model_dir, read_phases=2)
    assert len(joint.shifts) == 4
    # threshold 0 states every finding at every alignment, so the joint read conditions each pathology on the
    # same earlier tokens as separate reads of the shifted images: its log-odds are their mean
    separate = torch.stack([single.findings_probabilities(shift_images(images, dy, dx), threshold=0.0)
                            for dy, dx in joint.shifts])  # (K, B, P)
    expected = torch.sigmoid(torch.logit(separate.double()).mean(0)).float()
    torch.testing.assert_close(joint.findings_probabilities(images, threshold=0.0), expected, atol=2e-3, rtol=0)
    assert not torch.allclose(separate[0], expected, atol=2e-3)  # the alignments do read differently
    stated, reports = joint.read_findings(images, threshold=0.5, report_from="image")
    assert len(stated) == len(reports) == 3


def test_data_cli_reuses_tokenizers_with_their_fit_report(tiny_medical_run, tmp_path):
    data, _, _ = tiny_medical_run
    meta, out = SequenceDataset(data).meta, tmp_path / "unpaired"
    assert main(["data", "medical", "--out", str(out), "--openi", meta["source"]["openi"], "--tokenizers", str(data),
                 "--unpaired", "--limit", "8", "--image-size", "32", "--max-report-tokens", "40"]) == 0
    written = SequenceDataset(out)
    assert written.meta["unpaired"] and written.vocab_size == SequenceDataset(data).vocab_size
    assert written.meta["image_tokenizer"] == meta["image_tokenizer"] and "psnr_held_out" in meta["image_tokenizer"]


def test_generate_cli_round_trip(tiny_medical_run, tmp_path, capsys):
    _, model_dir, _ = tiny_medical_run
    assert MedicalModel.load(model_dir).max_report_tokens == 40  # its training data's
    png = tmp_path / "cxr.png"
    assert main(["generate", "medical", "--model", str(model_dir), "--report", "Small left pleural effusion.",
                 "-o", str(png), "--seed", "1"]) == 0
    assert Image.open(png).size == (32, 32)
    capsys.readouterr()
    assert main(["generate", "medical", "--model", str(model_dir), "--image", str(png)]) == 0
    findings, report = capsys.readouterr().out.strip().split("\n", 1)
    assert findings.startswith("findings: ") and report.strip()  # the findings it stated, then its report
    # at an evaluation's per-pathology thresholds (its results JSON): here the first five always stated, the rest never
    evaluation = tmp_path / "eval.json"
    evaluation.write_text(json.dumps({"image_to_report": {"read_phases": 1, "findings_threshold": {
        name: 0.0 if j < 5 else 1.0 for j, name in enumerate(PATHOLOGIES)}}}))
    assert main(["generate", "medical", "--model", str(model_dir), "--image", str(png), "--thresholds",
                 str(evaluation)]) == 0  # read at the evaluation's one phase
    assert capsys.readouterr().out.split("\n")[0] == f"findings: {', '.join(PATHOLOGIES[:5])}"
    assert main(["generate", "medical", "--model", str(model_dir), "--image", str(png), "--thresholds", "1"]) == 0
    assert capsys.readouterr().out.startswith("findings: none\n")
    assert main(["generate", "medical", "--model", str(model_dir), "--image", str(png), "--thresholds",
                 str(evaluation), "--read-phases", "2"]) == 2
    assert "the evaluation read at 1 phases, --read-phases says 2" in capsys.readouterr().err
    assert main(["generate", "medical", "--model", str(model_dir), "--report", "Normal chest.", "--thresholds", "0.3",
                 "-o", str(png)]) == 2
    assert "--thresholds goes with --image" in capsys.readouterr().err
    assert main(["generate", "medical", "--model", str(model_dir), "--report", "Normal chest.", "--findings",
                 "cardiomegaly, effusion", "-o", str(png)]) == 0
    assert main(["generate", "medical", "--model", str(model_dir), "--report", "Normal chest.", "--findings",
                 "enlarged heart", "-o", str(png)]) == 2
    assert "unknown finding" in capsys.readouterr().err
    assert main(["generate", "medical", "--model", str(model_dir), "--findings", "cardiomegaly"]) == 0
    assert capsys.readouterr().out.strip() == MedicalModel.load(model_dir).write([["cardiomegaly"]])[0]
    drawn = tmp_path / "drawn.png"  # --findings with -o: an image for the findings
    assert main(["generate", "medical", "--model", str(model_dir), "--findings", "cardiomegaly", "-o", str(drawn)]) == 0
    assert Image.open(drawn).size == (32, 32)
    assert main(["generate", "medical", "--model", str(model_dir), "--findings", "cardiomegaly", "--draw-from",
                 "report", "-o", str(drawn)]) == 2
    assert "needs the report" in capsys.readouterr().err
    assert main(["generate", "medical", "--model", str(model_dir)]) == 2
    assert "--findings alone" in capsys.readouterr().err
    assert main(["generate", "medical", "--model", str(model_dir), "--report", "   ", "-o", str(png)]) == 2
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG broken")
    assert main(["generate", "medical", "--model", str(model_dir), "--image", str(corrupt)]) == 2
    assert "corrupt.png" in capsys.readouterr().err


def test_evaluation_settings_are_checked_before_anything_runs(tiny_medical_run):
    _, model_dir, _ = tiny_medical_run
    model = MedicalModel.load(model_dir, read_phases=1)
    with pytest.raises(ValueError, match="reads at 1 phases but the settings say 2: load it with read_phases=2"):
        evaluate_medical(model, [], [], None, EvalSettings(read_phases=2))
    for bad, message in (({"draw_streams": 0}, "eval.draw_streams: expected an integer >= 1, got 0"),
                         ({"limit": 0}, "eval.limit: expected an integer >= 1, or null for all"),
                         ({"top_k": -1}, "eval.top_k: expected an integer >= 0"),
                         ({"findings_threshold": "1.5"}, "findings_threshold: expected a number in [0, 1] or 'tuned'"),
                         ({"findings_threshold": True}, "findings_threshold: expected a number in [0, 1] or 'tuned'"),
                         ({"temperature": -0.5}, "eval.temperature: expected a number >= 0"),
                         ({"temperature": 0, "draw_streams": 2}, "eval.draw_streams: expected 1 at temperature 0")):
        with pytest.raises(ValueError, match=re.escape(message)):
            EvalSettings(**bad)
    assert EvalSettings(findings_threshold="0.25").findings_threshold == 0.25  # CLI strings read as numbers


def test_eval_cli_refuses_data_split_otherwise_than_the_models(tiny_medical_run, tmp_path, capsys):
    import shutil

    data, model_dir, _ = tiny_medical_run
    other = shutil.copytree(data, tmp_path / "data", ignore=shutil.ignore_patterns("judge"))
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["meta"]["split_seed"] += 1  # another split: some of its held-out studies trained the model
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert main(["eval", "medical", "--model", str(model_dir), "--data", str(other), "--judge-steps", "2"]) == 2
    assert "splits its studies otherwise than the data" in capsys.readouterr().err
    assert not (other / "judge").exists()  # refused before anything was trained or scored


def test_eval_cli_reports_both_directions_and_baselines(tiny_medical_run, tmp_path):
    data, model_dir, _ = tiny_medical_run
    out = tmp_path / "eval.json"
    assert main(["eval", "medical", "--model", str(model_dir), "--data", str(data), "--judge-steps", "4",
                 "--read-phases", "1", "--draw-candidates", "2", "--draw-streams", "2", "--out", str(out),
                 "--samples", str(tmp_path / "samples"), "--stages", str(tmp_path / "stages")]) == 0
    results = json.loads(out.read_text())
    reports = results["image_to_report"]
    assert reports["read_phases"] == 1 and results["stages_loaded"] == {}
    assert (tmp_path / "stages" / "stream_1__pass_1.stage.pt").is_file()  # kept for a rerun to resume from
    assert results["settings"] == {**dataclasses.asdict(EvalSettings()), "read_phases": 1, "draw_candidates": 2,
                                   "draw_streams": 2}  # the options given, the others at their defaults
    for name in ("model", "model_uncomposed", "model_one_candidate", "model_report_from_image", "retrieval",
                 "retrieval_vq_features", "most_common"):
        assert set(reports[name]) >= {"bleu_1", "bleu_4", "rouge_l", "clinical_efficacy", "embedding_similarity"}
    # composing only replaces a report that disagrees more; the best try disagrees no more than the first
    off = reports["reports_off_stated_findings"]
    assert 0 <= off["model"] <= off["model_uncomposed"] <= off["model_one_candidate"] <= results["num_held_out"]
    stated = reports["model_findings"]
    assert set(stated["per_finding"]) == set(PATHOLOGIES) and 0 <= stated["macro_f1"] <= 1
    images = results["report_to_image"]
    for name in ("model", "model_first_draw", "model_draw_from_findings", "mean_image", "vq_reconstruction",
                 "reference"):
        assert {"judge", "fid", "ssim"} <= set(images[name]) and images[name]["feature_spread"] >= 0
    assert images["reference"]["feature_spread"] > 0  # renders of different patients and findings
    assert images["draw_from"] == "report" and images["draw_candidates"] == 2
    assert 0 <= images["draws_not_first"] <= results["num_held_out"]
    assert images["reference"]["ssim"] == pytest.approx(1.0)
    ratio, interval = images["judge_f1_ratio"], images["judge_f1_ratio_bootstrap"]  # None when the ceiling is 0
    assert (interval is None) if ratio is None else (interval["ratio"] == pytest.approx(ratio) and interval["goal"] == 0.7)
    # the same drawing from a second random stream: each stream scored alike, their mean ratio with its interval
    streams = images["draw_streams"]
    assert [stream["stream"] for stream in streams["streams"]] == [0, 1]
    assert streams["streams"][0]["judge"]["model"] == images["model"]["judge"]
    assert all(set(stream["judge"]) == {"model", "model_first_draw"} for stream in streams["streams"])
    if ratio is not None:
        mean = np.mean([stream["judge_f1_ratio"] for stream in streams["streams"]])
        assert streams["judge_f1_ratio_mean"] == pytest.approx(mean) == streams["judge_f1_ratio_bootstrap"]["ratio"]
        assert streams["judge_f1_ratio_bootstrap"]["runs"] == 2
    assert (tmp_path / "samples" / "report_to_image.png").is_file() and (data / "judge" / "judge.json").is_file()
    # the source reports are named by study, never quoted (Open-i / MIMIC-CXR licences); generated ones are written
    examples = json.loads((tmp_path / "samples" / "examples.json").read_text())
    cited = re.compile(r"study \S+ \(findings: [a-z_, ]+\)")
    for example in examples:
        assert all(cited.fullmatch(example[key]) for key in ("reference", "retrieved", "retrieved_vq_latents"))
        assert example["reference"].startswith(f"study {example['study']} ") and example["generated"]
        assert set(example["judged_findings"]) | set(example["judged_reference_findings"]) <= set(FINDINGS)
        streams_judged = example["judged_findings_streams"]
        assert len(streams_judged) == 2 and streams_judged[0] == example["judged_findings"]
    judged = np.array([[name in e["judged_reference_findings"] for name in FINDINGS] for e in examples])
    predicted = {name: finding["recall"] * finding["support"] / finding["precision"]  # tp / precision
                 for name, finding in images["reference"]["judge"]["per_finding"].items() if finding["precision"]}
    assert all(judged[:, FINDINGS.index(name)].sum() == pytest.approx(count) for name, count in predicted.items())
    if ratio is not None:  # the streams' judged findings give back the evaluation's interval over the streams
        drawn = np.array([[[name in stream for name in FINDINGS] for stream in e["judged_findings_streams"]]
                          for e in examples]).transpose(1, 0, 2)
        labels = study_labels(dataset_split(SequenceDataset(data).meta)[1])
        again = ratio_bootstrap(drawn, np.stack([judged] * 2), labels, goal=0.7, seed=0)
        assert again == streams["judge_f1_ratio_bootstrap"]
    assert set(reports["most_common_report"]) == {"study", "count"} and reports["most_common_report"]["count"] >= 1


def test_a_stopped_evaluation_resumes_after_its_last_stage(tiny_medical_run, tmp_path, monkeypatch):
    from domains.medical.evaluate import load_or_fit_judge

    data, model_dir, _ = tiny_medical_run
    train, test = dataset_split(SequenceDataset(data).meta)
    judge, _ = load_or_fit_judge(tmp_path / "judge", train, 32, steps=2, progress=False)
    settings = EvalSettings(limit=4, read_phases=1, tune_studies=8, report_candidates=2, draw_candidates=2,
                            draw_streams=2)

    def evaluate(stages, seed=0) -> dict:
        model = MedicalModel.load(model_dir, read_phases=1)
        results = evaluate_medical(model, train, test, judge, settings, seed=seed, stages=stages)
        loaded.append(results["stages_loaded"])
        return {key: value for key, value in results.items() if key not in ("seconds", "read_seconds", "stages_loaded")}

    import domains.medical.evaluate as evaluation

    baseline = evaluation.mean_image_baseline

    def without_autograd(*args):  # the whole evaluation runs without recording gradients
        assert not torch.is_grad_enabled()
        return baseline(*args)

    monkeypatch.setattr(evaluation, "mean_image_baseline", without_autograd)
    loaded = []  # the stages each run loaded
    whole = evaluate(None)
    stages = tmp_path / "stages"
    assert evaluate(stages) == whole
    kept = sorted(p.name for p in stages.glob("*.stage.pt"))
    assert {f"{name}.stage.pt" for name in ("threshold", "read", "write", "draw_from_report__pass_1",
                                             "stream_1__likelihood")} <= set(kept)
    # stopped during the first draws: what came after is gone, and what came before is not computed again
    for name in kept:
        if name.startswith(("draw_from_report__pass_1", "draw_from_report__likelihood", "draw_from_findings",
                            "stream_")):
            (stages / name).unlink()
    monkeypatch.setattr(MedicalModel, "read_findings", lambda *a, **k: pytest.fail("the reads were kept"))
    monkeypatch.setattr(MedicalModel, "write_search", lambda *a, **k: pytest.fail("the reports were kept"))
    assert evaluate(stages) == whole  # the draws after the kept pass are those an uninterrupted run drew
    assert loaded[0] == loaded[1] == {} and {"threshold", "read", "write", "draw_from_report/pass_0"} <= set(loaded[2])
    assert "draw_from_report/pass_1" not in loaded[2] and all(stage["seconds"] > 0 for stage in loaded[2].values())
    monkeypatch.undo()
    evaluate(stages, seed=1)  # another seed: the stages of seed 0 are dropped, not mixed in
    assert json.loads((stages / "fingerprint.json").read_text())["seed"] == 1


def test_study_images_use_real_images_else_deterministic_renders(tmp_path):
    from domains.medical.dataset import image_config, study_images, write_medical_dataset
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
    for random in ({"random_reads": 1}, {"random_draws": 1}):  # renders of random findings would sit among real images
        with pytest.raises(ValueError, match="random_draws"):
            write_medical_dataset(tmp_path / "data", [real, rendered], image_size=32, grid=8, held_out=0.01, **random,
                                  progress=False)


def test_write_counts_raise_rare_findings_to_the_floor():
    from domains.medical.reports import Study

    def study(i, *findings, image=None):
        return Study(f"s{i}", "Text.", "", image=image, labels={name: 1 for name in findings} or {"no_finding": 1})

    studies = [study(i, "cardiomegaly") for i in range(10)] + [study(10, "pneumothorax", "cardiomegaly"),
                                                               study(11, "pneumothorax", image="own.png"), study(12)]
    counts = write_counts(studies, writes=2, min_finding_writes=12, renders=2)
    # pneumothorax: 2 renders + 1 own image = 3 images, 4 writes each to reach 12; cardiomegaly: 22 images x 2 >= 12
    assert counts == {**{f"s{i}": 2 for i in range(10)}, "s10": 4, "s11": 4, "s12": 2}
    assert write_counts(studies, writes=2, min_finding_writes=0, renders=2) == dict.fromkeys(counts, 2)
    assert write_counts(studies, writes=3, min_finding_writes=5, renders=2)["s10"] == 3  # never fewer than writes
    assert imaged_studies(studies, 0) == studies  # a first image: its own, or a render
    assert imaged_studies(studies, 1) == studies[:11] + studies[12:]  # a real image is one image
