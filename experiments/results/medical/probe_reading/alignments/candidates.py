import json, sys, time
import numpy as np, torch

sys.path.insert(0, "/work/main")
from domains.medical.model import MedicalModel, _disagreements
from domains.medical.reports import find_openi_archive, read_openi, split_studies
from domains.medical.metrics import tune_thresholds, clinical_efficacy
from domains.medical.findings import PATHOLOGIES

torch.set_num_threads(2)
model = MedicalModel.load("/tmp/medrun26/finetune/final", max_report_tokens=128)
studies = read_openi(find_openi_archive())
train, test = split_studies(studies, 0.1, 0)
d = np.load("/tmp/gc/tta.npz")
sh = [tuple(s) for s in d["shifts"]]
sel = [sh.index(s) for s in [(0, 0), (0, 2), (2, 0), (2, 2)]]


def logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


pt = 1 / (1 + np.exp(-logit(d["tune_P"][sel]).mean(0)))
pe = 1 / (1 + np.exp(-logit(d["test_P"][sel]).mean(0)))
S = pe > tune_thresholds(pt, d["tune_Y"])
stated = [tuple(p for p, on in zip(PATHOLOGIES, r) if on) for r in S]
refs = [s.report for s in test]
for c in (8, 32):
    t0 = time.time()
    reports = model.write(stated, cfg_scale=2.0, candidates=c)
    miss = [_disagreements(r, s) for r, s in zip(reports, stated)]
    ce = clinical_efficacy(reports, refs)
    print(
        c,
        "time",
        round(time.time() - t0),
        "missed",
        sum(m > 0 for m in miss),
        "CE",
        round(ce["macro_f1"], 3),
        {k: round(v["f1"], 2) for k, v in ce["per_finding"].items()},
        flush=True,
    )
    json.dump({"stated": stated, "reports": reports, "miss": miss}, open(f"/tmp/gc/write_{c}.json", "w"))
