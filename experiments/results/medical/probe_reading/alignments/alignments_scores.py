import numpy as np, sys

sys.path.insert(0, "/work/main")
from domains.medical.metrics import tune_thresholds, multilabel_f1
from domains.medical.findings import PATHOLOGIES

d = np.load(sys.argv[1] if len(sys.argv) > 1 else "/tmp/gc/tta.npz")
sh = [tuple(s) for s in d["shifts"]]


def logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def score(idx):
    pt = 1 / (1 + np.exp(-logit(d["tune_P"][idx]).mean(0)))
    pe = 1 / (1 + np.exp(-logit(d["test_P"][idx]).mean(0)))
    th = tune_thresholds(pt, d["tune_Y"])
    m = multilabel_f1(pe > th, d["test_Y"], PATHOLOGIES)
    return m["macro_f1"], {k: round(v["f1"], 2) for k, v in m["per_finding"].items()}


for i, s in enumerate(sh):
    print(s, round(score([i])[0], 3))
for name, sel in [
    ("4 even", [sh.index(s) for s in [(0, 0), (0, 2), (2, 0), (2, 2)]]),
    ("5 cross", [sh.index(s) for s in [(2, 2), (1, 2), (3, 2), (2, 1), (2, 3)]]),
    ("9 inner", [sh.index((a, b)) for a in (1, 2, 3) for b in (1, 2, 3)]),
    ("all16", list(range(16))),
]:
    print(name, score(sel))
