"""Probe: how much of the drawing ratio is the luck of the draw. Redraws the experiment's held-out report -> image
evaluation (its `eval:` settings: 8 candidates drawn from the findings, guidance 3.0, temperature 0.7, the model's
reader choosing) from a trained run's model with other random streams, and scores each as the evaluation does
(judge macro-F1 of the chosen draws over the judge's on the reference renders, with its bootstrap over studies).

    python experiments/results/medical/draw_sampling_noise/probe.py --config CONFIG --work WORK --streams 101 102

CONFIG and WORK: the run's config (with its seed) and --work folder of experiments/medical_cxr.py (model, judge).
Writes one JSON per stream next to this file (stream_<S>_<work folder name>.json).
"""

import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))
torch.set_num_threads(2)

from core.data import write_json_atomic  # noqa: E402
from core.provenance import provenance  # noqa: E402
from domains.medical.evaluate import JUDGE_F1_RATIO_GOAL, judge_redraw, stream_scores  # noqa: E402
from domains.medical.metrics import ratio_bootstrap  # noqa: E402
from experiments.medical_cxr import FinishedRun, stream_probe_arguments  # noqa: E402

args = stream_probe_arguments(__doc__)
run = FinishedRun.load(args.config, args.work)
cfg, e, test, judge, model, work = run.cfg, run.cfg["eval"], run.test, run.judge, run.model, Path(args.work)
labels, judged_references = run.labels(), run.judged_references()  # (N, F) bool each
for stream in args.streams:
    started = time.perf_counter()
    judged, judged_first = judge_redraw(model, [s.report for s in test], judge, stream, e["draw_candidates"],
                                        cfg_scale=e["cfg_scale"], temperature=e["temperature"], top_k=e["top_k"],
                                        draw_from=e["draw_from"])  # (N, F) bool each, as evaluate_medical scores them
    scores = stream_scores(judged, judged_first, judged_references, labels, stream)
    write_json_atomic(HERE / f"stream_{stream}_{work.name}.json", {
        "provenance": provenance(), "config": args.config, "seed": cfg["seed"], **scores,
        "judge_f1_ratio_bootstrap": ratio_bootstrap(judged, judged_references, labels, seed=cfg["seed"],
                                                    goal=JUDGE_F1_RATIO_GOAL),
        "seconds": time.perf_counter() - started})
    print(f"{work.name} stream {stream}: ratio {scores['judge_f1_ratio']:.3f} "
          f"(first draw {scores['judge_f1_ratio_first_draw']:.3f})", flush=True)
