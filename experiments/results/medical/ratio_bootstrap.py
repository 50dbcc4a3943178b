"""Bootstrap of the drawing ratio (the judge's findings macro-F1 on drawn images over its macro-F1 on the
reference renders, `domains.medical.metrics.ratio_bootstrap`, 2000 resamples of the held-out studies, seeded
with the run's seed as its evaluation does) for every committed run whose `examples.json` keeps the judge's
findings (`judged_findings`, `judged_reference_findings`; runs evaluated from `d09b7de` on), each checked
against its `evaluation.json`, and pooled over the current config's runs, `seed*_current_config`
(`pooled_current_config`: each resample draws the studies once for all runs and averages their ratios).
A run evaluated over several random streams (`eval.draw_streams`; its examples keep `judged_findings_streams`)
counts each stream, weighted so that every model counts once: the mean over models of each model's mean over
its streams. The runs must share the held-out studies (`data.limit`, `data.held_out`, `data.split_seed`,
`eval.limit`). Only folders with an `examples.json` count, so a model's re-evaluations elsewhere (summary and
evaluation only) are not counted twice.

    python experiments/results/medical/ratio_bootstrap.py      # writes ratio_bootstrap.json next to itself

The references' labels are the labeler's on the Open-i reports (the experiment's split). Seconds on 1 core.
"""
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
from core.provenance import provenance  # noqa: E402
from domains.medical.evaluate import JUDGE_F1_RATIO_GOAL, pathology_matrix, study_labels  # noqa: E402
from domains.medical.findings import FINDINGS  # noqa: E402
from domains.medical.metrics import ratio_bootstrap  # noqa: E402
from domains.medical.reports import find_openi_archive, read_openi, split_studies  # noqa: E402


def split(summary: dict) -> tuple:
    """The held-out studies a run evaluated on, as the experiment picks them."""
    config = summary["config"]
    return (config["data"].get("limit"), config["data"]["held_out"], config["data"]["split_seed"],
            config["eval"].get("limit"))


candidates = (HERE / "examples.json", *HERE.glob("*/examples.json"), *HERE.glob("*/*/examples.json"))
folders = sorted(p.parent for p in candidates if p.exists() and "judged_findings" in p.read_text())
if not folders:
    raise SystemExit(f"no run under {HERE} keeps the judge's findings in its examples.json")
summaries = {folder: json.loads((folder / "summary.json").read_text()) for folder in folders}
splits = {split(summary) for summary in summaries.values()}
if len(splits) != 1:
    raise SystemExit(f"the runs hold out different studies (data.limit, held_out, split_seed, eval.limit): {sorted(splits)}")
data_limit, held_out, split_seed, eval_limit = splits.pop()
_, test = split_studies(read_openi(find_openi_archive())[:data_limit], held_out, split_seed)
test = test[:eval_limit] if eval_limit else test
labels = study_labels(test)
rows, judged = {}, {}
for folder in folders:
    name = str(folder.relative_to(HERE))
    seed = summaries[folder]["config"]["seed"]
    images = json.loads((folder / "evaluation.json").read_text())["report_to_image"]
    recorded = images.get("draw_streams", images)["judge_f1_ratio_bootstrap"]  # over its streams, if several
    if recorded is None:  # the judge found no finding on the references: no ratio
        continue
    examples = {e["study"]: e for e in json.loads((folder / "examples.json").read_text())}
    if sorted(examples) != sorted(s.study_id for s in test):
        raise SystemExit(f"{name}/examples.json does not hold the held-out split")
    examples = [examples[s.study_id] for s in test]
    streams = [e.get("judged_findings_streams", [e["judged_findings"]]) for e in examples]  # (N, R) finding lists
    drawn = np.stack([pathology_matrix([study[r] for study in streams], FINDINGS) for r in range(len(streams[0]))])
    reference = pathology_matrix([e["judged_reference_findings"] for e in examples], FINDINGS)
    judged[name] = drawn, np.stack([reference] * len(drawn))  # (R, N, F) each
    result = ratio_bootstrap(*judged[name], labels, goal=JUDGE_F1_RATIO_GOAL, seed=seed)
    if not np.allclose([recorded["ratio"], *recorded["ci95"], recorded["fraction_at_goal"]],
                       [result["ratio"], *result["ci95"], result["fraction_at_goal"]]):
        raise SystemExit(f"{name}: recomputed {result} differs from evaluation.json's {recorded}")
    rows[name] = result


def pooled(names: list[str]) -> dict:
    """The ratio bootstrap over several runs' (R, N, F) judged findings, the studies drawn once for all, each
    run's R streams weighted 1 / R."""
    weights = [1 / len(judged[name][0]) for name in names for _ in judged[name][0]]
    return ratio_bootstrap(*(np.concatenate([judged[name][i] for name in names]) for i in (0, 1)), labels,
                           goal=JUDGE_F1_RATIO_GOAL, weights=weights) | {
        "folders": names, "streams": [len(judged[name][0]) for name in names]}


pools = {"pooled_current_config": pooled([name for name in judged if name.endswith("_current_config")])}
out = HERE / "ratio_bootstrap.json"  # written here, not printed: importing the evaluation logs to stdout
out.write_text(json.dumps({"provenance": provenance(), "runs": rows, **pools}, indent=1) + "\n")
for key, pool in pools.items():
    print(f"{out}: {key} over {pool['folders']}: ratio {pool['ratio']:.3f}, 95% interval {pool['ci95']}")
