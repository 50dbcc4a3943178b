"""Paired bootstrap of CE macro-F1, model minus retrieval on the judge's features, for committed evaluations
that predate `model_vs_retrieval` in `evaluation.json` (`domains.medical.metrics.paired_bootstrap`, the same
2000 resamples and seed as the evaluation of that run would use).

    python experiments/results/medical/retrieval_bootstrap.py > experiments/results/medical/retrieval_bootstrap.json

Each folder's `examples.json` holds every held-out study's generated report and retrieved training study; the
reference and retrieved reports are read from the Open-i archive (the experiment's split). Seconds on 1 core.
"""
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
from core.provenance import provenance  # noqa: E402
from domains.medical.metrics import paired_bootstrap, report_findings  # noqa: E402
from domains.medical.reports import find_openi_archive, read_openi, split_studies  # noqa: E402

studies = {s.study_id: s for s in read_openi(find_openi_archive())}
_, test = split_studies(list(studies.values()), 0.1, 0)
rows = {}
for folder in ("", "seed1", "seed2", "control"):  # control/seed1 kept no examples
    summary = json.loads((HERE / folder / "summary.json").read_text())
    examples = {e["study"]: e for e in json.loads((HERE / folder / "examples.json").read_text())}
    if sorted(examples) != sorted(s.study_id for s in test):
        raise SystemExit(f"{folder}/examples.json does not hold the held-out split")
    retrieved = [studies[re.match(r"study (\S+) ", examples[s.study_id]["retrieved"]).group(1)].report for s in test]
    generated = [examples[s.study_id]["generated"] for s in test]
    result = paired_bootstrap(report_findings(generated), report_findings(retrieved),
                              report_findings([s.report for s in test]), seed=summary["config"]["seed"])
    goals = summary["goals"]
    assert abs(result["difference"] - (goals["image_to_report_ce_macro_f1"]
                                       - goals["image_to_report_ce_macro_f1_retrieval"])) < 1e-9, folder
    rows[folder or "."] = result
print(json.dumps({"provenance": provenance(), "model_minus_retrieval": rows}, indent=1))
