"""Probe: how long the medical model takes to draw, write and read with the code it is run from, on a trained
model; run it at two commits to compare them (README, Benchmarks).

    python experiments/results/medical/decode_speed/bench.py MODEL_DIR [ROUNDS]

MODEL_DIR: an exported medical model (`final/` of `uwm finetune medical` or of experiments/medical_cxr.py's
fine-tuning). 256 random finding sets (each pathology present at 15%, seed 0) are drawn from their findings
(guidance 3.0, temperature 0.7, as the experiment's evaluation) and written (temperature 0.7, one try), and 128
random images are read for those findings' likelihood (the evaluation's choice among draws), each with the
code's default batch sizes, 2 threads; prints each part's seconds per round.
"""

import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
torch.set_num_threads(2)

from domains.medical.findings import PATHOLOGIES  # noqa: E402
from domains.medical.model import MedicalModel  # noqa: E402

model = MedicalModel.load(sys.argv[1])
rng = random.Random(0)
sets = [[name for name in PATHOLOGIES if rng.random() < 0.15] for _ in range(256)]
images = torch.rand(128, 1, model.image_size, model.image_size, generator=torch.Generator().manual_seed(0))
model.draw(None, findings=sets[:4], cfg_scale=3.0, temperature=0.7)  # warm-up
for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 1):
    started = time.perf_counter()
    model.draw(None, findings=sets, cfg_scale=3.0, temperature=0.7, generator=torch.Generator().manual_seed(0))
    drawn = time.perf_counter() - started
    started = time.perf_counter()
    model.write(sets, temperature=0.7, generator=torch.Generator().manual_seed(0), candidates=1)
    written = time.perf_counter() - started
    started = time.perf_counter()
    model.findings_log_likelihood(images, sets[:128])
    read = time.perf_counter() - started
    print(f"draw {drawn:.1f} s, write {written:.1f} s ({len(sets)} each); reader likelihood {read:.1f} s "
          f"({len(images)} images)", flush=True)
