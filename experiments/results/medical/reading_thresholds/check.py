"""How much of the image -> report reading do the tuned thresholds give away, and how much the reader itself?

On a finished run of `experiments/medical_cxr.py`, each held-out study's reference render is read as the
evaluation read it (`MedicalModel.findings_probabilities` at the evaluation's read phases, each pathology decided
after the earlier ones at the evaluation's thresholds: `evaluate.evaluated_thresholds`). Per pathology: ROC AUC of
the probabilities (how well the reader ranks), F1 at the evaluation's threshold (what it stated; the evaluation's
`model_findings`), and the best F1 at any threshold in 0.05 steps, chosen on these held-out studies themselves:
an upper bound on what threshold tuning could give, not a result.

    python experiments/results/medical/reading_thresholds/check.py --work RUN_WORK --results RUN_RESULTS [--out F]

About a minute on 2 CPU cores.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))
from core.data import SequenceDataset, write_json_atomic  # noqa: E402
from core.provenance import provenance  # noqa: E402
from domains.medical.dataset import dataset_split, study_findings, study_images  # noqa: E402
from domains.medical.evaluate import evaluated_thresholds, pathology_matrix  # noqa: E402
from domains.medical.findings import PATHOLOGIES  # noqa: E402
from domains.medical.metrics import multilabel_f1, roc_auc  # noqa: E402
from domains.medical.model import MedicalModel  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--work", required=True, help="the run's --work folder (sequences/paired, finetune/final)")
parser.add_argument("--results", required=True, help="the run's --results folder (evaluation.json)")
parser.add_argument("--out", default=str(HERE / "results.json"))
args = parser.parse_args()
started = time.perf_counter()
work, results = Path(args.work), Path(args.results)
test = dataset_split(SequenceDataset(work / "sequences" / "paired").meta)[1]
threshold, phases = evaluated_thresholds(results / "evaluation.json")
model = MedicalModel.load(work / "finetune" / "final", read_phases=phases)
probabilities = model.findings_probabilities(study_images(test, model.image_size, variant=0), threshold=threshold).numpy()
labels = pathology_matrix(map(study_findings, test)).astype(bool)
cuts = np.round(np.arange(0.05, 1.0, 0.05), 2)


def f1(stated: np.ndarray, truth: np.ndarray) -> float:
    return multilabel_f1(stated[:, None], truth[:, None], ("x",))["macro_f1"]


per_finding = {}
for j, name in enumerate(PATHOLOGIES):
    at = threshold[name] if isinstance(threshold, dict) else threshold
    best = max((f1(probabilities[:, j] >= cut, labels[:, j]), float(cut)) for cut in cuts)
    per_finding[name] = {"positives": int(labels[:, j].sum()),
                         "roc_auc": roc_auc(probabilities[:, j], labels[:, j]),
                         "threshold": at, "f1_at_threshold": f1(probabilities[:, j] >= at, labels[:, j]),
                         "best_f1": best[0], "best_threshold": best[1]}
    print(name.ljust(16), {k: round(v, 3) if isinstance(v, float) else v for k, v in per_finding[name].items()})
macro = {key: float(np.mean([row[key] for row in per_finding.values()])) for key in ("f1_at_threshold", "best_f1")}
print("macro", {k: round(v, 3) for k, v in macro.items()})
write_json_atomic(Path(args.out), {"provenance": provenance(), "work": str(work), "results": str(results),
                                   "held_out": len(test), "read_phases": phases, "per_finding": per_finding,
                                   "macro": macro, "seconds": round(time.perf_counter() - started, 1)})
