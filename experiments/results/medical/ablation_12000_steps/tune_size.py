"""Stated-findings F1 of the 12000-step model on the held-out studies with the per-pathology thresholds tuned on
new renders of the first 800 training studies (the evaluation's setting) or of all training studies.

python experiments/results/medical/ablation_12000_steps/tune_size.py MODEL_DIR OUT.json   (repository root)
"""
import json
import sys
import time

import numpy as np

sys.path.insert(0, ".")
from domains.medical.dataset import study_findings, study_images  # noqa: E402
from domains.medical.evaluate import TUNING_VARIANT, pathology_matrix  # noqa: E402
from domains.medical.findings import PATHOLOGIES  # noqa: E402
from domains.medical.metrics import multilabel_f1, tune_thresholds  # noqa: E402
from domains.medical.model import MedicalModel  # noqa: E402
from domains.medical.reports import find_openi_archive, read_openi, split_studies  # noqa: E402

started = time.perf_counter()
model = MedicalModel.load(sys.argv[1], max_report_tokens=128, read_phases=2)
train, test = split_studies(read_openi(find_openi_archive()), 0.1, 0)
p_train = model.findings_probabilities(study_images(train, 64, TUNING_VARIANT)).numpy()
y_train = pathology_matrix(map(study_findings, train))
test_images, y_test = study_images(test, 64, 0), pathology_matrix(map(study_findings, test))
out = {}
for name, n in (("first_800", 800), ("all", len(train))):
    thresholds = tune_thresholds(p_train[:n], y_train[:n])
    p_test = model.findings_probabilities(test_images, threshold=dict(zip(PATHOLOGIES, thresholds.tolist()))).numpy()
    f1 = multilabel_f1(p_test > thresholds, y_test, PATHOLOGIES)
    out[name] = {"studies": n, "thresholds": dict(zip(PATHOLOGIES, thresholds.tolist())), "macro_f1": f1["macro_f1"],
                 "f1": {k: v["f1"] for k, v in f1["per_finding"].items()}}
    print(name, n, round(f1["macro_f1"], 3), {k: round(v["f1"], 2) for k, v in f1["per_finding"].items()},
          np.round(thresholds, 2).tolist())
json.dump({"command": " ".join(sys.argv), "results": out, "seconds": time.perf_counter() - started},
          open(sys.argv[2], "w"), indent=1)
