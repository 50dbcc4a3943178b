"""The medical experiment script end to end from an empty folder at toy scale, on the first 60 real Open-i
reports (skipped where the archive is not installed), and its resume."""

from __future__ import annotations

import json

import pytest

from domains.medical.metrics import multilabel_f1
from domains.medical.reports import find_openi_archive
from experiments.medical_cxr import FinishedRun
from tests.experiment_runs import run_from_scratch_and_resume


def shrink(cfg: dict) -> None:
    cfg["data"].update(limit=60, held_out=0.2, image_size=32, grid=8, renders=1, vq_steps=10, text_vocab=300, writes=1)
    cfg.update(judge_steps=3, pretrain_steps=2, finetune_steps=2)
    cfg["eval"].update(limit=3, findings_threshold=0.5, report_candidates=2)


@pytest.mark.slow
@pytest.mark.skipif(find_openi_archive() is None, reason="the Open-i archive (torchxrayvision's wheel) is not installed")
def test_the_experiment_runs_from_scratch_and_resumes(tmp_path):
    results, summary = run_from_scratch_and_resume("medical_cxr", shrink, tmp_path, redone=("reports",))
    assert set(summary["stage_seconds"]) >= {"reports", "findings judge", "pretrain", "finetune", "evaluation"}
    assert json.loads((results / "labeler_mesh_agreement.json").read_text())["num_reports"] == 60
    evaluation = json.loads((results / "evaluation.json").read_text())
    assert len(evaluation["samples"]) > 0 and (results / "report_to_image.png").stat().st_size > 0
    edge = summary["goals"]["image_to_report_ce_macro_f1_minus_retrieval"]  # with its bootstrap interval
    assert -1 <= edge["ci95"][0] <= edge["ci95"][1] <= 1 and -1 <= edge["difference"] <= 1
    assert summary["finetune"]["val_loss"] > 0 and "rows" in json.loads((results / "finetune_validation.json").read_text())
    # probes load the finished run as its evaluation did: the same held-out studies, judge and reference findings
    run = FinishedRun.load(tmp_path / "medical_cxr.yaml", tmp_path / "work")
    assert len(run.test) == evaluation["num_held_out"] and len(run.train) == evaluation["num_train"]
    assert run.model.read_phases == run.settings.read_phases == run.cfg["eval"]["read_phases"]
    reference = evaluation["report_to_image"]["reference"]["judge"]
    assert multilabel_f1(run.judged_references(), run.labels()) == reference
