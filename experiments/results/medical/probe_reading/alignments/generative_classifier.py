"""Generative-classifier probe: log p(codes | findings) ratios from the findings-draw direction."""

import json, sys, time
import numpy as np, torch

sys.path.insert(0, "/work/main")
from domains.medical.model import MedicalModel
from domains.medical.reports import find_openi_archive, read_openi, split_studies
from domains.medical.dataset import study_images, study_findings, IMAGE
from domains.medical.evaluate import pathology_matrix, TUNING_VARIANT
from domains.medical.findings import PATHOLOGIES

torch.set_num_threads(2)
which, limit = sys.argv[1], int(sys.argv[2])
model = MedicalModel.load("/tmp/medrun26/finetune/final", max_report_tokens=128)
studies = read_openi(find_openi_archive())
train, test = split_studies(studies, 0.1, 0)
thresholds_file = "/work/main/experiments/results/medical/ablation_read_phases_1_candidates_8/evaluation.json"
thr = json.load(open(thresholds_file))["image_to_report"]["findings_threshold"]
if which == "tune":
    subset, variant = train[:800][:limit], TUNING_VARIANT
else:
    subset, variant = test[:limit], 0
images = study_images(subset, model.image_size, variant)
t0 = time.time()
P = model.findings_probabilities(images, threshold=thr).numpy()
print("disc", time.time() - t0, flush=True)
codes = model.tokenizers.encode_image(IMAGE, images)  # (B, N) global ids
img = model.vocab[IMAGE]
thresholds = np.array([thr[p] for p in PATHOLOGIES])
S = P > thresholds


def loglik(sets, codes):
    prompts = torch.stack([model.draw_prompt(None, list(s), "findings") for s in sets])
    ids = torch.cat([prompts, codes], 1)
    L = prompts.shape[1]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model.model(ids).logits[:, L - 1 : -1, img.start : img.stop].float()
    lp = torch.log_softmax(logits, -1).gather(-1, (codes - img.start)[..., None])[..., 0]
    return lp.sum(1)


LLR = np.zeros_like(P)
base = np.zeros(len(P))
t0 = time.time()
bs = 16
for s in range(0, len(P), bs):
    c = codes[s : s + bs]
    rows = S[s : s + bs]
    names = [[p for p, on in zip(PATHOLOGIES, r) if on] for r in rows]
    base[s : s + bs] = loglik(names, c).numpy()
    for j, p in enumerate(PATHOLOGIES):
        flipped = []
        for r in rows:
            r2 = r.copy()
            r2[j] = ~r2[j]
            flipped.append([q for q, on in zip(PATHOLOGIES, r2) if on])
        lf = loglik(flipped, c).numpy()
        sign = np.where(rows[:, j], 1.0, -1.0)
        LLR[s : s + bs, j] = sign * (base[s : s + bs] - lf)
    print(s, time.time() - t0, flush=True)
Y = pathology_matrix(map(study_findings, subset))
np.savez(f"/tmp/gc/{which}_{limit}.npz", P=P, LLR=LLR, Y=Y, base=base)
