"""Does the training monitor's reading (`monitor/read_auc`) measure reading, or memory of the validation studies?

Runs made before validation held out whole studies (every committed medical run) split their sequences at
random: a validation read (image -> findings) had its study's draw (report -> the same image codes) and
writes (findings -> report) in training. This scores the monitor's read (`FindingsUse`, teacher-forced
log-odds of each finding, ROC AUC and average precision over findings) on a finished run's final weights:

- `validation_reads`: the reads the monitor scored in training (the run's by-sequence split);
- `new_renders_of_those_studies`: the same studies rendered as another patient (variant 7, never trained);
- `held_out_studies`: reads of held-out studies (their first render, as the evaluation reads them).

    python experiments/results/medical/monitor_leak/check.py --work RUN_WORK [--out results.json]

One thread, about a minute on a CPU (most of it rendering and encoding the training studies' renders to
find which studies the validation reads show).
"""
import argparse
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))
from core.config import load_config  # noqa: E402
from core.data import SequenceDataset, write_json_atomic  # noqa: E402
from core.pretrained import load_pretrained  # noqa: E402
from core.provenance import provenance  # noqa: E402
from core.training import validation_split  # noqa: E402
from domains.medical.dataset import IMAGE, dataset_split, imaged_studies, read_example, study_findings, study_images  # noqa: E402
from domains.medical.monitor import FindingsUse, training_monitors  # noqa: E402

NEW_VARIANT = 7  # a patient no run renders (paired data: variants 0 .. renders - 1)

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--work", required=True, help="the run's --work folder (sequences/paired, finetune/final)")
parser.add_argument("--out", default=str(HERE / "results.json"))
args = parser.parse_args()
torch.set_num_threads(1)
started = time.perf_counter()
work = Path(args.work)
dataset = SequenceDataset(work / "sequences" / "paired")
config = load_config(str(work / "finetune" / "config.json"))  # JSON is YAML
model, tokenizers = load_pretrained(work / "finetune" / "final")
leaked, = training_monitors(dataset, validation_split(len(dataset), config.data)[0])  # the run's split, by sequence
image = tokenizers.vocab[IMAGE]
train, held_out = dataset_split(dataset.meta)


def codes_of(studies, variant: int) -> torch.Tensor:
    """(N, codes) the image tokens of the studies' `variant` renders, in the vocabulary."""
    return tokenizers.encode_image(IMAGE, study_images(studies, dataset.meta["image_size"], variant))


def reads(studies, codes) -> list:
    return [read_example(tokenizers, c, study_findings(s), None) for s, c in zip(studies, codes)]


by_codes = {}  # the image tokens of every trained render -> its study
for variant in range(dataset.meta["renders"]):
    studies = imaged_studies(train, variant)
    for study, codes in zip(studies, codes_of(studies, variant)):
        by_codes[tuple(codes.tolist())] = study
shown = [by_codes[tuple(read.token_ids[image.contains(read.token_ids)].tolist())] for read in leaked.reads]
count = len(leaked.reads)
sets = {
    "validation_reads": leaked,
    "new_renders_of_those_studies": FindingsUse(tokenizers, [], reads(shown, codes_of(shown, NEW_VARIANT))),
    "held_out_studies": FindingsUse(tokenizers, [], reads(held_out[:count], codes_of(held_out[:count], 0))),
}
results = {}
for name, monitor in sets.items():
    values = monitor(model)
    results[name] = {"reads": len(monitor.reads), **{k: v for k, v in values.items() if k.startswith("read_")}}
    print(name, len(monitor.reads), {k: round(v, 3) for k, v in values.items() if k in ("read_auc", "read_ap")})
write_json_atomic(Path(args.out), {
    "provenance": provenance(), "command": " ".join(sys.argv), "work": str(work), "new_variant": NEW_VARIANT,
    "results": results, "seconds": round(time.perf_counter() - started, 1)})
