"""Paired bootstrap of CE macro-F1, model minus retrieval on the judge's features, for the committed runs
(`domains.medical.metrics.paired_bootstrap`, 2000 resamples of the held-out studies, seeded with the run's
seed as its evaluation does; runs evaluated before `model_vs_retrieval` was in `evaluation.json` get it
here, the others are checked against theirs), and pooled over the training seeds of a config (each resample
draws the studies once for all seeds and averages their differences): the first config's seeds 0-3 as first
published and 0-4, and the current config's (`seed*_current_config`).

    python experiments/results/medical/retrieval_bootstrap.py > experiments/results/medical/retrieval_bootstrap.json

Each folder's `examples.json` holds every held-out study's generated report and retrieved training study; the
reference and retrieved reports are read from the Open-i archive (the experiment's split). Seconds on 1 core.
"""
import json
import re
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
from core.provenance import provenance  # noqa: E402
from domains.medical.metrics import paired_bootstrap, report_findings  # noqa: E402
from domains.medical.reports import find_openi_archive, read_openi, split_studies  # noqa: E402

SEEDS = ("", "seed1", "seed2", "seed3", "seed4")  # the first config's training seeds 0-4
CURRENT = tuple(sorted(p.name for p in HERE.glob("seed*_current_config")))  # the current config's seeds
studies = {s.study_id: s for s in read_openi(find_openi_archive())}
_, test = split_studies(list(studies.values()), 0.1, 0)
reference = report_findings([s.report for s in test])
rows, findings = {}, {}
for folder in (*SEEDS, "control", *CURRENT):  # control/seed1 kept no examples
    summary = json.loads((HERE / folder / "summary.json").read_text())
    examples = {e["study"]: e for e in json.loads((HERE / folder / "examples.json").read_text())}
    if sorted(examples) != sorted(s.study_id for s in test):
        raise SystemExit(f"{folder}/examples.json does not hold the held-out split")
    retrieved = [studies[re.match(r"study (\S+) ", examples[s.study_id]["retrieved"]).group(1)].report for s in test]
    findings[folder] = (report_findings([examples[s.study_id]["generated"] for s in test]), report_findings(retrieved))
    result = paired_bootstrap(*findings[folder], reference, seed=summary["config"]["seed"])
    goals = summary["goals"]
    assert abs(result["difference"] - (goals["image_to_report_ce_macro_f1"]
                                       - goals["image_to_report_ce_macro_f1_retrieval"])) < 1e-9, folder
    recorded = json.loads((HERE / folder / "evaluation.json").read_text())["image_to_report"].get("model_vs_retrieval")
    assert recorded is None or np.allclose(recorded["ci95"] + [recorded["difference"], recorded["fraction_a_ahead"]],
                                           result["ci95"] + [result["difference"], result["fraction_a_ahead"]]), folder
    rows[folder or "."] = result


def pooled(folders: tuple) -> dict:
    """The paired bootstrap over several runs' (N, F) findings, the studies drawn once for all."""
    return paired_bootstrap(*(np.stack([findings[folder][i] for folder in folders]) for i in (0, 1)), reference)


print(json.dumps({"provenance": provenance(), "model_minus_retrieval": rows,
                  "pooled_seeds_0_to_3": pooled(SEEDS[:4]), "pooled_seeds_0_to_4": pooled(SEEDS),
                  "pooled_current_config": pooled(CURRENT) | {"folders": list(CURRENT)}}, indent=1))
