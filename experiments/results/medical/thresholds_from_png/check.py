"""Does `uwm generate medical --image x.png --thresholds evaluation.json` state what the evaluation scored?

For the first N held-out studies of a finished run of `experiments/medical_cxr.py`, the findings the model states
at the evaluation's tuned thresholds and read phases (`evaluate.evaluated_thresholds`) are compared with those
the evaluation stated (its `examples.json`), reading each study's reference render three ways: as rendered
(floats, what the evaluation read), saved as an 8-bit PNG and read back through the CLI's MONAI loader
(`images.load_image`, which scales each file to [0, 1]), and the same PNG read back unscaled (/ 255).

    python experiments/results/medical/thresholds_from_png/check.py --work RUN_WORK --results RUN_RESULTS [--studies 60]

writes results.json next to itself. One thread, about a minute for 60 studies on a CPU.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))
from core.data import SequenceDataset, write_json_atomic  # noqa: E402
from core.provenance import provenance  # noqa: E402
from domains.medical.dataset import dataset_split, study_images  # noqa: E402
from domains.medical.evaluate import evaluated_thresholds  # noqa: E402
from domains.medical.images import load_images  # noqa: E402
from domains.medical.model import MedicalModel  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--work", required=True, help="the run's --work folder (sequences/paired, finetune/final)")
parser.add_argument("--results", required=True, help="the run's --results folder (evaluation.json, examples.json)")
parser.add_argument("--studies", type=int, default=60)
args = parser.parse_args()
torch.set_num_threads(1)
started = time.perf_counter()
work, results = Path(args.work), Path(args.results)
meta = SequenceDataset(work / "sequences" / "paired").meta
test = dataset_split(meta)[1][: args.studies]
stated_by_evaluation = {e["study"]: tuple(e["stated_findings"]) for e in json.loads((results / "examples.json").read_text())}
threshold, phases = evaluated_thresholds(results / "evaluation.json")
model = MedicalModel.load(work / "finetune" / "final", read_phases=phases)
rendered = study_images(test, model.image_size, variant=0)
with tempfile.TemporaryDirectory() as folder:
    paths = [Path(folder) / f"{study.study_id}.png" for study in test]
    for path, image in zip(paths, rendered):
        Image.fromarray((image[0].numpy() * 255 + 0.5).astype("uint8")).save(path)
    scaled = load_images(paths, model.image_size)
    unscaled = torch.stack([torch.from_numpy(np.asarray(Image.open(p), dtype=np.float32) / 255)[None] for p in paths])
reference = [stated_by_evaluation[study.study_id] for study in test]
same = {}
for name, images in (("rendered", rendered), ("png_through_the_cli_loader", scaled), ("png_unscaled", unscaled)):
    stated = model.read_findings(images, threshold=threshold, candidates=1)[0]
    same[name] = sum(tuple(a) == b for a, b in zip(stated, reference))
write_json_atomic(HERE / "results.json", {
    "provenance": provenance(), "work": str(work), "results": str(results), "studies": len(test),
    "read_phases": phases, "same_findings_as_the_evaluation": same,
    "render_max": [round(float(image.max()), 3) for image in rendered], "seconds": round(time.perf_counter() - started, 1)})
print(json.dumps(same))
