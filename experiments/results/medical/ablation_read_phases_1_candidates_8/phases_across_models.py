"""Stated-findings macro-F1 of several trained medical models read at 1 x 1 and 2 x 2 code-grid alignments
(per-pathology thresholds tuned on new renders of 800 training studies, as the experiment's evaluation).

    python phases_across_models.py medrun26 medrun27 medrun31 medrun32 > phases_across_models.jsonl

Each NAME is a `--work /tmp/NAME` folder of `experiments/medical_cxr.py` (the README names the runs:
the control, the grids at seeds 0 and 1, lr 5e-4). Run at commit bdc3217; 2 CPU cores, about 2.5 min per model.
"""
import json
import sys
import time
from pathlib import Path

import torch
sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from domains.medical.dataset import study_findings, study_images
from domains.medical.evaluate import pathology_matrix, tune_findings_thresholds
from domains.medical.findings import PATHOLOGIES
from domains.medical.metrics import multilabel_f1
from domains.medical.model import MedicalModel
from domains.medical.reports import find_openi_archive, read_openi, split_studies

torch.set_num_threads(2)
train, test = split_studies(read_openi(find_openi_archive()), 0.1, 0)
truth = pathology_matrix(map(study_findings, test))
for name in sys.argv[1:]:
    for phases in (1, 2):
        started = time.perf_counter()
        model = MedicalModel.load(f'/tmp/{name}/finetune/final', read_phases=phases)
        thresholds = tune_findings_thresholds(model, train[:800])
        stated = model.findings_probabilities(study_images(test, model.image_size, 0), threshold=thresholds).numpy()
        m = multilabel_f1(stated > [thresholds[p] for p in PATHOLOGIES], truth, PATHOLOGIES)
        print(json.dumps({"model": name, "read_phases": phases, "stated_macro_f1": round(m["macro_f1"], 4),
                          "per_finding": {k: round(v["f1"], 3) for k, v in m["per_finding"].items()},
                          "seconds": round(time.perf_counter() - started, 1)}), flush=True)
