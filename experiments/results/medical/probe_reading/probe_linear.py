"""Probe: how much of the findings can a linear model read from the VQ codes, with no learned attention?

    python probe_linear.py WORK

WORK: an experiment --work folder (its sequences/paired tokenizers). Features of each image's 16 x 16 codes:
`histogram` (how often each code occurs: what uniform attention over learned code embeddings can carry),
`pooled` (the codes' standardised codebook vectors averaged over a 4 x 4 grid of regions: where and what,
at a coarse scale), `pixels` (the 64 x 64 render itself; an upper reference). One logistic regression per
pathology on renders 0 and 1 of the training studies, thresholds tuned like the evaluation's (render 500 of
the first 800 training studies), macro-F1 over the 10 pathologies on render 0 of the held-out studies.
Appends a line per feature set to probe.jsonl here.
"""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from core.data import SequenceDataset  # noqa: E402
from domains.medical.dataset import IMAGE, study_findings, study_images  # noqa: E402
from domains.medical.evaluate import TUNING_VARIANT, pathology_matrix  # noqa: E402
from domains.medical.findings import PATHOLOGIES  # noqa: E402
from domains.medical.metrics import multilabel_f1, tune_thresholds  # noqa: E402
from domains.medical.reports import find_openi_archive, read_openi, split_studies  # noqa: E402

work = Path(sys.argv[1])
studies = read_openi(find_openi_archive())
train, test = split_studies(studies, 0.1, 0)
tokenizers = SequenceDataset(work / "sequences/paired").tokenizers()
vq = tokenizers.images[IMAGE]
codebook = vq.codebook.float()
codebook = ((codebook - codebook.mean(0)) / codebook.std(0).clamp_min(1e-6)).numpy()  # (K, D)
K = codebook.shape[0]


def features(images: torch.Tensor) -> dict[str, np.ndarray]:
    """(N, 1, 64, 64) -> {name: (N, F)}."""
    codes = vq.encode(images).numpy()  # (N, 256) local ids
    n, side = len(codes), int(round(codes.shape[1] ** 0.5))
    histogram = np.stack([np.bincount(row, minlength=K) for row in codes]).astype(np.float32)
    grid = codebook[codes].reshape(n, 4, side // 4, 4, side // 4, -1).mean((2, 4))  # (N, 4, 4, D)
    return {"histogram": histogram, "pooled": grid.reshape(n, -1),
            "pixels": images.reshape(n, -1).numpy()}


start = time.time()
fit = [features(study_images(train, 64, v)) for v in (0, 1)]
tune_studies = train[:800]
tune = features(study_images(tune_studies, 64, TUNING_VARIANT))
evaluate = features(study_images(test, 64, 0))
y_fit = np.concatenate([pathology_matrix(map(study_findings, train))] * 2)
y_tune = pathology_matrix(map(study_findings, tune_studies))
y_test = pathology_matrix(map(study_findings, test))
print(f"features in {time.time() - start:.0f} s")
for name in ("histogram", "pooled", "pixels"):
    start = time.time()
    x_fit = np.concatenate([f[name] for f in fit])
    scaler = StandardScaler().fit(x_fit)
    x_fit = scaler.transform(x_fit)
    p_tune, p_test = np.zeros(y_tune.shape), np.zeros(y_test.shape)
    for j in range(len(PATHOLOGIES)):
        if y_fit[:, j].all() or not y_fit[:, j].any():
            continue
        model = LogisticRegression(C=0.05, max_iter=2000).fit(x_fit, y_fit[:, j])
        p_tune[:, j] = model.predict_proba(scaler.transform(tune[name]))[:, 1]
        p_test[:, j] = model.predict_proba(scaler.transform(evaluate[name]))[:, 1]
    thresholds = tune_thresholds(p_tune, y_tune)
    result = multilabel_f1(p_test >= thresholds, y_test, PATHOLOGIES)
    out = dict(tag=f"linear-{name}", work=str(work), features=int(x_fit.shape[1]), macro_f1=result["macro_f1"],
               seconds=round(time.time() - start),
               per={k: round(v["f1"], 2) for k, v in result["per_finding"].items()})
    print(json.dumps(out))
    with open(Path(__file__).with_name("probe.jsonl"), "a") as f:
        f.write(json.dumps(out) + "\n")
