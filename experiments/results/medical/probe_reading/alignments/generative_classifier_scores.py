import numpy as np, sys

sys.path.insert(0, "/work/main")
from domains.medical.metrics import tune_thresholds, multilabel_f1
from domains.medical.findings import PATHOLOGIES
from sklearn.metrics import roc_auc_score

tu, te = np.load("/tmp/gc/tune_800.npz"), np.load(sys.argv[1] if len(sys.argv) > 1 else "/tmp/gc/test_10000.npz")


def logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def sig(x):
    return 1 / (1 + np.exp(-x))


for name, f in [
    ("disc", lambda d, w: d["P"]),
    ("gen", lambda d, w: sig(d["LLR"])),
    *[
        (f"comb w={w}", (lambda w: lambda d, _: sig(logit(d["P"]) + w * d["LLR"]))(w))
        for w in (0.1, 0.25, 0.5, 1.0, 2.0)
    ],
]:
    pt, pe = f(tu, None), f(te, None)
    th = tune_thresholds(pt, tu["Y"])
    m = multilabel_f1(pe > th, te["Y"], PATHOLOGIES)
    aucs = [
        roc_auc_score(te["Y"][:, j], pe[:, j]) if 0 < te["Y"][:, j].sum() < len(pe) else np.nan
        for j in range(len(PATHOLOGIES))
    ]
    print(
        f"{name:12s} macroF1 {m['macro_f1']:.3f}  meanAUC {np.nanmean(aucs):.3f}  ", " ".join(f"{a:.2f}" for a in aucs)
    )
print(PATHOLOGIES, te["Y"].sum(0))
for name, pt, pe in [
    ("disc", tu["P"], te["P"]),
    ("comb.25", sig(logit(tu["P"]) + 0.25 * tu["LLR"]), sig(logit(te["P"]) + 0.25 * te["LLR"])),
]:
    th = tune_thresholds(pt, tu["Y"])
    m = multilabel_f1(pe > th, te["Y"], PATHOLOGIES)
    print(name, {k: v for k, v in m.items() if k != "per_label"})
    print(m.get("per_label", m))
