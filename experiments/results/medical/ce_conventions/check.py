"""Does the reading verdict (CE macro-F1, model minus retrieval on the judge's features) hang on the clinical-
efficacy conventions? The evaluations count an uncertain mention as present (U-Ones) and average F1 over the
findings with a positive reference (`metrics.multilabel_f1`); R2Gen's `compute_ce.py` (its MIMIC-CXR figures;
it reports none on IU X-ray) counts uncertain as absent (U-Zeros) and averages over all labels, 0 where a label
has no positive (sklearn's macro). This rescores the committed current-config runs' held-out reports
(`examples.json`) under both, with the evaluation's paired bootstrap (2000 resamples seeded as the run was)
per run and pooled over the runs (`retrieval_bootstrap.py`'s pooling).

    python experiments/results/medical/ce_conventions/check.py > experiments/results/medical/ce_conventions/results.json

Seconds on 1 core.
"""
import json
import re
import sys
from pathlib import Path
from unittest import mock

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent
sys.path.insert(0, str(RESULTS.parents[2]))
from core.provenance import provenance  # noqa: E402
from domains.medical import metrics  # noqa: E402
from domains.medical.reports import find_openi_archive, read_openi, split_studies  # noqa: E402

STUDY = re.compile(r"study (\S+) ")


def all_label_macro(predicted: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(..., N, F) bool -> (...,) sklearn's macro-F1: the mean over all F findings, 0 where neither has a positive."""
    return metrics._f1(predicted, reference, axis=-2).mean(-1)


studies = {s.study_id: s for s in read_openi(find_openi_archive())}
_, test = split_studies(list(studies.values()), 0.1, 0)
folders = sorted(p.name for p in RESULTS.glob("seed*_current_config"))
conventions = {"as_evaluated": (True, None), "u_zeros": (False, None), "u_zeros_all_labels": (False, all_label_macro)}
out = {"provenance": provenance(), "folders": folders, "conventions": {
    "as_evaluated": "uncertain counts as present; macro over findings with a positive reference",
    "u_zeros": "uncertain counts as absent; macro over findings with a positive reference",
    "u_zeros_all_labels": "uncertain counts as absent; macro over all 11 findings, 0 where F1 is undefined "
                          "(R2Gen's compute_ce.py)"}}
for name, (uncertain_as_positive, macro) in conventions.items():
    reference = metrics.report_findings([s.report for s in test], uncertain_as_positive)
    model, retrieval, rows = [], [], {}
    for folder in folders:
        examples = {e["study"]: e for e in json.loads((RESULTS / folder / "examples.json").read_text())}
        seed = json.loads((RESULTS / folder / "summary.json").read_text())["config"]["seed"]
        model.append(metrics.report_findings([examples[s.study_id]["generated"] for s in test], uncertain_as_positive))
        retrieval.append(metrics.report_findings([studies[STUDY.match(examples[s.study_id]["retrieved"]).group(1)].report
                                   for s in test], uncertain_as_positive))
        with mock.patch.object(metrics, "_macro_f1", macro or metrics._macro_f1):
            rows[folder] = metrics.paired_bootstrap(model[-1], retrieval[-1], reference, seed=seed)
            rows[folder]["model_macro_f1"] = float((macro or metrics._macro_f1)(model[-1], reference))
    if name == "as_evaluated":  # the check: these are the evaluation's own figures
        for folder in folders:
            recorded = json.loads((RESULTS / folder / "evaluation.json").read_text())["image_to_report"]
            if abs(recorded["model_vs_retrieval"]["difference"] - rows[folder]["difference"]) > 1e-9:
                raise SystemExit(f"{folder}: its examples do not reproduce evaluation.json's model_vs_retrieval")
    with mock.patch.object(metrics, "_macro_f1", macro or metrics._macro_f1):
        pooled = metrics.paired_bootstrap(np.stack(model), np.stack(retrieval), reference)
    out[name] = {"runs": rows, "pooled": pooled,
                 "reference_positives": dict(zip(metrics.FINDINGS, reference.sum(0).tolist()))}
print(json.dumps(out, indent=1))
