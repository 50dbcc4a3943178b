"""Choose the alignments on training renders only: 2-fold cross-validation on the 800 tuning renders
(thresholds tuned on one half, F1 on the other, both ways, 10 random splits)."""

import numpy as np, sys

sys.path.insert(0, "/work/main")
from domains.medical.metrics import tune_thresholds, multilabel_f1
from domains.medical.findings import PATHOLOGIES

d = np.load("/tmp/gc/tta.npz")
sh = [tuple(s) for s in d["shifts"]]


def logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


Y = d["tune_Y"]
sets = {
    "as given": [sh.index((2, 2))],
    "2 x 2": [sh.index(s) for s in [(0, 0), (0, 2), (2, 0), (2, 2)]],
    "all 16": list(range(16)),
}
rng = np.random.default_rng(0)
splits = [rng.permutation(len(Y)) for _ in range(10)]
for name, sel in sets.items():
    P = 1 / (1 + np.exp(-logit(d["tune_P"][sel]).mean(0)))
    scores = []
    for perm in splits:
        a, b = perm[: len(Y) // 2], perm[len(Y) // 2 :]
        for fit, held in ((a, b), (b, a)):
            th = tune_thresholds(P[fit], Y[fit])
            scores.append(multilabel_f1(P[held] > th, Y[held], PATHOLOGIES)["macro_f1"])
    print(f"{name}: {np.mean(scores):.3f} +- {np.std(scores) / np.sqrt(len(scores)):.3f}")
