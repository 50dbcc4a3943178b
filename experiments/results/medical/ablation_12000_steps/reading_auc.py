"""Reading AUC vs F1 of the 12000-step model: per pathology, the ROC AUC of the probability the model
gives each finding (read at 2 x 2 alignments, each finding conditioned on the earlier decisions) on
(a) new renders of the 800 threshold-tuning training studies, (b) the held-out studies' renders, and
the F1 at the tuned thresholds on (b). Tells whether the model ranks the held-out images right but
decides at the wrong threshold, or ranks them wrong.

python experiments/results/medical/ablation_12000_steps/reading_auc.py MODEL_DIR OUT.json (repository root;
the held-out F1 at the tuned thresholds equals the evaluation's stated findings; `best_f1_held_out` is
the best of thresholds 0.05, 0.10, ... chosen on the held-out studies themselves: an oracle, for diagnosis only)
"""
import json
import sys
import time

import numpy as np

sys.path.insert(0, ".")
from domains.medical.dataset import study_findings, study_images  # noqa: E402
from domains.medical.evaluate import TUNING_VARIANT, pathology_matrix  # noqa: E402
from domains.medical.findings import PATHOLOGIES  # noqa: E402
from domains.medical.metrics import roc_auc, tune_thresholds  # noqa: E402
from domains.medical.model import MedicalModel  # noqa: E402
from domains.medical.reports import find_openi_archive, read_openi, split_studies  # noqa: E402

started = time.perf_counter()
model = MedicalModel.load(sys.argv[1], max_report_tokens=128, read_phases=2)
train, test = split_studies(read_openi(find_openi_archive()), 0.1, 0)
tune = train[:800]
p_tune = model.findings_probabilities(study_images(tune, 64, TUNING_VARIANT)).numpy()
y_tune = pathology_matrix(map(study_findings, tune))
thresholds = tune_thresholds(p_tune, y_tune)
p_test = model.findings_probabilities(study_images(test, 64, 0), threshold=dict(zip(PATHOLOGIES, thresholds.tolist()))).numpy()
y_test = pathology_matrix(map(study_findings, test))
rows = {}
for j, name in enumerate(PATHOLOGIES):
    said = p_test[:, j] > thresholds[j]
    tp = int((said & y_test[:, j]).sum())
    f1 = 2 * tp / max(1, int(said.sum()) + int(y_test[:, j].sum()))
    rows[name] = {"auc_tuning_renders": roc_auc(p_tune[:, j], y_tune[:, j]), "auc_held_out": roc_auc(p_test[:, j], y_test[:, j]),
                  "threshold": float(thresholds[j]), "f1_held_out": f1, "positives_held_out": int(y_test[:, j].sum()),
                  "best_f1_held_out": float(max(2 * ((p_test[:, j] > t) & y_test[:, j]).sum()
                                                / max(1, (p_test[:, j] > t).sum() + y_test[:, j].sum())
                                                for t in np.arange(0.05, 1.0, 0.05)))}
    print(name, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[name].items()})
json.dump({"command": " ".join(sys.argv), "model": sys.argv[1], "per_pathology": rows,
           "seconds": time.perf_counter() - started}, open(sys.argv[2], "w"), indent=1)
