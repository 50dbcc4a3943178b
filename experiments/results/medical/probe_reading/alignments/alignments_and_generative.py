import numpy as np, sys

sys.path.insert(0, "/work/main")
from domains.medical.metrics import tune_thresholds, multilabel_f1
from domains.medical.findings import PATHOLOGIES

d = np.load("/tmp/gc/tta.npz")
tu, te = np.load("/tmp/gc/tune_800.npz"), np.load("/tmp/gc/test_10000.npz")
assert (tu["Y"] == d["tune_Y"]).all() and (te["Y"] == d["test_Y"]).all()


def logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


sh = [tuple(s) for s in d["shifts"]]
for name, sel in [("all16", list(range(16))), ("4 even", [sh.index(s) for s in [(0, 0), (0, 2), (2, 0), (2, 2)]])]:
    for w in (0, 0.1, 0.25, 0.5):
        pt = logit(d["tune_P"][sel]).mean(0) + w * tu["LLR"]
        pe = logit(d["test_P"][sel]).mean(0) + w * te["LLR"]
        th = tune_thresholds(1 / (1 + np.exp(-pt)), d["tune_Y"])
        m = multilabel_f1(1 / (1 + np.exp(-pe)) > th, d["test_Y"], PATHOLOGIES)
        print(name, w, round(m["macro_f1"], 3), {k: round(v["f1"], 2) for k, v in m["per_finding"].items()})
