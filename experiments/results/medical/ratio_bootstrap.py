"""Bootstrap of the drawing ratio (the judge's findings macro-F1 on drawn images over its macro-F1 on the
reference renders, `domains.medical.metrics.ratio_bootstrap`, 2000 resamples of the held-out studies, seeded
with the run's seed as its evaluation does) for every committed run whose `examples.json` keeps the judge's
findings (`judged_findings`, `judged_reference_findings`; runs evaluated from `d09b7de` on), each checked
against its `evaluation.json`, and pooled over those runs (each resample draws the studies once for all
runs and averages their ratios). The runs must share the held-out split (`data.split_seed`, `data.held_out`).

    python experiments/results/medical/ratio_bootstrap.py > experiments/results/medical/ratio_bootstrap.json

The references' labels are the labeler's on the Open-i reports (the experiment's split). Seconds on 1 core.
"""
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
from core.provenance import provenance  # noqa: E402
from domains.medical.evaluate import JUDGE_F1_RATIO_GOAL  # noqa: E402
from domains.medical.findings import FINDINGS  # noqa: E402
from domains.medical.labeler import findings_vector  # noqa: E402
from domains.medical.metrics import ratio_bootstrap  # noqa: E402
from domains.medical.reports import find_openi_archive, read_openi, split_studies  # noqa: E402


def vectors(names_per_study: list[list[str]]) -> np.ndarray:
    """Finding names per study -> (N, F) bool over FINDINGS."""
    return np.array([[name in names for name in FINDINGS] for names in names_per_study], dtype=bool)


folders = sorted(p.parent for p in HERE.glob("*/examples.json") if "judged_findings" in p.read_text())
splits = {(s["config"]["data"]["split_seed"], s["config"]["data"]["held_out"])
          for s in (json.loads((folder / "summary.json").read_text()) for folder in folders)}
if len(splits) != 1:
    raise SystemExit(f"the runs hold out different splits (split_seed, held_out): {sorted(splits)}")
split_seed, held_out = splits.pop()
_, test = split_studies(read_openi(find_openi_archive()), held_out, split_seed)
labels = np.stack([findings_vector(s.labels) for s in test]) > 0
rows, judged = {}, {}
for folder in folders:
    seed = json.loads((folder / "summary.json").read_text())["config"]["seed"]
    examples = {e["study"]: e for e in json.loads((folder / "examples.json").read_text())}
    if sorted(examples) != sorted(s.study_id for s in test):
        raise SystemExit(f"{folder.name}/examples.json does not hold the held-out split")
    judged[folder.name] = tuple(vectors([examples[s.study_id][key] for s in test])
                                for key in ("judged_findings", "judged_reference_findings"))
    result = ratio_bootstrap(*judged[folder.name], labels, goal=JUDGE_F1_RATIO_GOAL, seed=seed)
    recorded = json.loads((folder / "evaluation.json").read_text())["report_to_image"]["judge_f1_ratio_bootstrap"]
    if not np.allclose([recorded["ratio"], *recorded["ci95"], recorded["fraction_at_goal"]],
                       [result["ratio"], *result["ci95"], result["fraction_at_goal"]]):
        raise SystemExit(f"{folder.name}: recomputed {result} differs from evaluation.json's {recorded}")
    rows[folder.name] = result
pooled = ratio_bootstrap(*(np.stack([judged[name][i] for name in judged]) for i in (0, 1)), labels,
                         goal=JUDGE_F1_RATIO_GOAL)
print(json.dumps({"provenance": provenance(), "runs": rows, "pooled": pooled | {"folders": list(judged)}}, indent=1))
