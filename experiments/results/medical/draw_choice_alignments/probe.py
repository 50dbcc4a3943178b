"""Probe: does the model's reader choose among its candidate draws as well when it reads each draw at one
code-grid alignment as at the config's 2 x 2 (`eval.read_phases`), for a quarter of the reading? Draws a
finished run's held-out report -> image evaluation once per stream (its `eval:` settings: 8 candidates from the
findings, guidance 3.0, temperature 0.7; `MedicalModel.candidate_draws`, whose reader reads at read_phases),
reads the same draws again at one alignment (the same backbone), and judges the draws each reading chooses.

    python experiments/results/medical/draw_choice_alignments/probe.py --config CONFIG --work WORK --streams 101

CONFIG and WORK: the run's config (with its seed) and --work folder of experiments/medical_cxr.py. The draws of
stream S are those of draw_sampling_noise/stream_S_*.json (same code path and generator seed), so the config's
choice here reproduces that ratio. Writes stream_<S>_<work folder name>.json next to this file.
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
from domains.medical.dataset import present_pathologies  # noqa: E402
from domains.medical.evaluate import stream_scores  # noqa: E402
from domains.medical.labeler import label_report  # noqa: E402
from domains.medical.metrics import paired_bootstrap  # noqa: E402
from domains.medical.model import MedicalModel, choose_draw  # noqa: E402
from experiments.medical_cxr import FinishedRun, stream_probe_arguments  # noqa: E402

args = stream_probe_arguments(__doc__)
run = FinishedRun.load(args.config, args.work)
cfg, e, test, judge, model, work = run.cfg, run.cfg["eval"], run.test, run.judge, run.model, Path(args.work)
if e["draw_from"] != "findings":
    raise SystemExit(f"{args.config}: the probe reads the draws for the reports' findings; eval.draw_from is {e['draw_from']!r}")
one = MedicalModel(model.model, model.tokenizers, model.max_report_tokens, read_phases=1, progress=True)  # same weights
reports = [s.report for s in test]
wanted = [present_pathologies(label_report(report)) for report in reports]  # what candidate_draws reads them for
labels, judged_references = run.labels(), run.judged_references()  # (N, F) bool each
for stream in args.streams:
    started = time.perf_counter()
    tries, likelihood = model.candidate_draws(reports, cfg_scale=e["cfg_scale"], temperature=e["temperature"],
                                              top_k=e["top_k"], generator=torch.Generator().manual_seed(stream),
                                              draw_from=e["draw_from"], candidates=e["draw_candidates"])
    drawn_seconds = time.perf_counter() - started  # K draws and the config's reading of them
    started = time.perf_counter()  # the first draws read again, at the config's alignments: a check and a time
    if not torch.allclose(model.findings_log_likelihood(tries[0], wanted), likelihood[0]):
        raise SystemExit("the config's reading of the first draws differs from candidate_draws' own")
    seconds = {"config": time.perf_counter() - started}
    started = time.perf_counter()
    read_once = torch.stack([one.findings_log_likelihood(images, wanted) for images in tries])  # (K, N)
    seconds["one_alignment"] = (time.perf_counter() - started) / len(tries)
    choices = {"config": likelihood, "one_alignment": read_once}
    judged = {name: judge.predict(choose_draw(tries, scores)) for name, scores in choices.items()}  # (N, F) bool
    judged_first = judge.predict(tries[0])
    scores = {name: stream_scores(judged[name], judged_first, judged_references, labels, stream) for name in judged}
    same = float((likelihood.argmax(0) == read_once.argmax(0)).float().mean())  # reports whose choice agrees
    write_json_atomic(HERE / f"stream_{stream}_{work.name}.json", {
        "provenance": provenance(), "config": args.config, "seed": cfg["seed"], "stream": stream,
        "read_phases": {"config": model.read_phases, "one_alignment": 1}, "choices": scores,
        "same_choice": same,
        # the judge's macro-F1 on the config's choices minus on the one-alignment choices, paired over studies
        "config_minus_one_alignment": paired_bootstrap(judged["config"], judged["one_alignment"], labels,
                                                       seed=cfg["seed"]),
        "seconds_per_draw_read": seconds, "seconds_draws_and_config_reading": drawn_seconds})
    print(f"{work.name} stream {stream}: ratio " + ", ".join(f"{name} {score['judge_f1_ratio']:.3f}"
                                                             for name, score in scores.items())
          + f"; same choice {same:.2f}; "
          f"seconds per draw read {seconds}", flush=True)
