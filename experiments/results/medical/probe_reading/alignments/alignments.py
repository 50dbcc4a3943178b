"""The findings probabilities of the control model (/tmp/medrun26) on the held-out images and on new renders of
800 training studies, read at each of the 16 pixel shifts (dy, dx) in [0, 4)^2 of the 4 x 4 code: tta.npz."""

import json, sys, time
import numpy as np, torch

sys.path.insert(0, "/work/main")
from domains.medical.model import MedicalModel
from domains.medical.reports import find_openi_archive, read_openi, split_studies
from domains.medical.dataset import study_images, study_findings
from domains.medical.evaluate import pathology_matrix, TUNING_VARIANT

torch.set_num_threads(2)
model = MedicalModel.load(sys.argv[1] if len(sys.argv) > 1 else "/tmp/medrun26/finetune/final", max_report_tokens=128)
studies = read_openi(find_openi_archive())
train, test = split_studies(studies, 0.1, 0)
thresholds_file = "/work/main/experiments/results/medical/ablation_read_phases_1_candidates_8/evaluation.json"
thr = json.load(open(thresholds_file))["image_to_report"]["findings_threshold"]
shifts = [(dy, dx) for dy in (0, 1, 2, 3) for dx in (0, 1, 2, 3)]


def shift(x, dy, dx):
    """x moved by (2 - dy, 2 - dx) pixels, edges repeated: (2, 2) is the image as given."""
    p = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    return p[..., dy : dy + x.shape[-2], dx : dx + x.shape[-1]]


out = {}
for which, subset, variant in (("test", test, 0), ("tune", train[:800], TUNING_VARIANT)):
    images = study_images(subset, model.image_size, variant)
    P = []
    for dy, dx in shifts:
        t0 = time.time()
        P.append(model.findings_probabilities(shift(images, dy, dx), threshold=thr).numpy())
        print(which, dy, dx, time.time() - t0, flush=True)
    out[which + "_P"] = np.stack(P)
    out[which + "_Y"] = pathology_matrix(map(study_findings, subset))
np.savez(sys.argv[2] if len(sys.argv) > 2 else "/tmp/gc/tta.npz", shifts=np.array(shifts), **out)
