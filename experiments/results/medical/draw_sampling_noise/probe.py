"""Probe: how much of the drawing ratio is the luck of the draw. Redraws the experiment's held-out report -> image
evaluation (its `eval:` settings: 8 candidates drawn from the findings, guidance 3.0, temperature 0.7, the model's
reader choosing) from a trained run's model with other random streams, and scores each as the evaluation does
(judge macro-F1 of the chosen draws over the judge's on the reference renders, with its bootstrap over studies).

    python experiments/results/medical/draw_sampling_noise/probe.py --config CONFIG --work WORK --streams 101 102

CONFIG and WORK: the run's config (with its seed) and --work folder of experiments/medical_cxr.py (model, judge).
Writes one JSON per stream next to this file (stream_<S>_<work folder name>.json).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))
torch.set_num_threads(2)

from core.data import write_json_atomic  # noqa: E402
from core.provenance import provenance  # noqa: E402
from domains.medical.dataset import study_images  # noqa: E402
from domains.medical.evaluate import JUDGE_F1_RATIO_GOAL, load_or_fit_judge  # noqa: E402
from domains.medical.labeler import findings_vector  # noqa: E402
from domains.medical.metrics import multilabel_f1, ratio_bootstrap  # noqa: E402
from domains.medical.model import MedicalModel, choose_draw  # noqa: E402
from domains.medical.reports import find_openi_archive, read_openi, split_studies  # noqa: E402
from experiments.common import experiment_config  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--config", required=True)
parser.add_argument("--work", required=True)
parser.add_argument("--streams", type=int, nargs="+", required=True, help="generator seeds of the draws")
args = parser.parse_args()
cfg = experiment_config(args.config, HERE.parents[2] / "medical_cxr.yaml")
d, e, work = cfg["data"], cfg["eval"], Path(args.work)
train, test = split_studies(read_openi(find_openi_archive())[: d["limit"]], d["held_out"], d["split_seed"])
test = test[: e["limit"]] if e["limit"] else test
judge, _ = load_or_fit_judge(work / "judge", train, d["image_size"], cfg["judge_steps"], cfg["seed"])
model = MedicalModel.load(work / "finetune" / "final", max_report_tokens=d["max_report_tokens"],
                          read_phases=e["read_phases"], progress=True)
labels = np.stack([findings_vector(s.labels) for s in test]) > 0
judged_references = judge.predict(study_images(test, model.image_size, variant=0))
ceiling = multilabel_f1(judged_references, labels)["macro_f1"]
for stream in args.streams:
    started = time.perf_counter()
    tries, likelihood = model.candidate_draws([s.report for s in test], cfg_scale=e["cfg_scale"],
                                              temperature=e["temperature"], top_k=e["top_k"],
                                              generator=torch.Generator().manual_seed(stream),
                                              draw_from=e["draw_from"], candidates=e["draw_candidates"])
    judged = judge.predict(choose_draw(tries, likelihood))  # (N, F) bool
    scores = {"model": multilabel_f1(judged, labels), "model_first_draw": multilabel_f1(judge.predict(tries[0]), labels)}
    write_json_atomic(HERE / f"stream_{stream}_{work.name}.json", {
        "provenance": provenance(), "config": args.config, "seed": cfg["seed"], "stream": stream,
        "judge_f1_ratio": scores["model"]["macro_f1"] / ceiling, "judge_macro_f1_reference": ceiling,
        "judge_f1_ratio_first_draw": scores["model_first_draw"]["macro_f1"] / ceiling,
        "judge_f1_ratio_bootstrap": ratio_bootstrap(judged, judged_references, labels, seed=cfg["seed"],
                                                    goal=JUDGE_F1_RATIO_GOAL),
        "judge": scores, "seconds": time.perf_counter() - started})
    print(f"{work.name} stream {stream}: ratio {scores['model']['macro_f1'] / ceiling:.3f} "
          f"(first draw {scores['model_first_draw']['macro_f1'] / ceiling:.3f})", flush=True)
