"""`uwm data|eval|generate medical` (training is the generic `uwm pretrain` and `uwm finetune medical`).

    uwm data medical --out D                        Open-i reports (the torchxrayvision wheel's archive),
                                                    rendered images, tokenizers, both directions
    uwm data medical --out P --tokenizers D --unpaired    pretraining data (reports alone, images alone)
    uwm pretrain --config medical --data P --out Q
    uwm finetune medical --config medical --data D --init Q/final --out R
    uwm eval medical --model R/final --data D       held-out studies: report and image metrics vs baselines
    uwm generate medical --model R/final --report "Cardiomegaly." -o x.png
    uwm generate medical --model R/final --findings cardiomegaly -o x.png   (an image for the findings)
    uwm generate medical --model R/final --image x.png       (prints the findings and the report)
    uwm generate medical --model R/final --image x.png --thresholds EVAL.json   (at the thresholds eval tuned)
    uwm generate medical --model R/final --findings cardiomegaly,effusion   (prints a report for them)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .evaluate import EvalSettings, evaluated_thresholds
from .model import DRAW_FROM
from .monitor import training_monitors

__all__ = ["add_arguments", "run", "training_monitors"]


def count(minimum: int = 1, zero: str = ""):
    """argparse type of a count: an integer >= `minimum` (`zero`: what 0 means, where it is allowed); argparse
    reports what was expected otherwise."""
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}{zero and f' ({zero})'}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its message for a non-integer
    return parse


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """The options of `uwm data|eval|generate medical` (`command`), added to its parser."""
    if command == "data":
        parser.add_argument("--out", required=True, help="sequence-shard folder to write")
        source = parser.add_argument_group("studies (default: the Open-i archive in the torchxrayvision wheel)")
        source.add_argument("--openi", help="NLMCXR_reports.tgz or a folder of its XML files")
        source.add_argument("--image-dir", help="Open-i images (e.g. the NLMCXR_png release); else images are rendered")
        source.add_argument("--mimic", help="a MIMIC-CXR-JPG folder (metadata CSV + files/) instead of Open-i")
        source.add_argument("--mimic-reports", help="folder of the MIMIC-CXR report .txt files (default: --mimic)")
        source.add_argument("--limit", type=int, help="use only the first N studies (quick runs)")
        parser.add_argument("--tokenizers", help="reuse the tokenizers of this sequence folder")
        parser.add_argument("--unpaired", action="store_true", help="pretraining data: reports alone and images alone")
        parser.add_argument("--image-size", type=int, default=64,
                            help="image side in pixels: --grid times a power of two (64, or 128 with --grid 32)")
        parser.add_argument("--grid", type=int, default=16, help="VQ codes per image side (16: 4 x 4-pixel codes of 64)")
        parser.add_argument("--renders", type=int, default=2, help="rendered patients per training report")
        parser.add_argument("--held-out", type=float, default=0.1, help="fraction of studies kept for evaluation")
        parser.add_argument("--split-seed", type=int, default=0)
        parser.add_argument("--vq-steps", type=int, default=1500, help="image tokenizer training steps")
        parser.add_argument("--text-vocab", type=int, default=1024, help="report BPE vocabulary size")
        parser.add_argument("--max-report-tokens", type=int, default=128)
        parser.add_argument("--cfg-dropout", type=float, default=0.1,
                            help="conditions -> <null> in this fraction of draws and findings draws")
        parser.add_argument("--writes", type=int, default=2, help="findings -> report sequences per render")
        parser.add_argument("--findings-draws", type=int, default=1, help="findings -> image sequences per render")
        parser.add_argument("--random-reads", type=int, default=0,
                            help="image -> findings sequences of renders of random finding sets, per training study "
                                 "(positives of the rare findings; rendered studies only)")
        parser.add_argument("--min-finding-writes", type=int, default=0,
                            help="more write sequences for studies with a rare finding, so that each pathology has "
                                 "at least this many")
        parser.add_argument("--random-draws", type=int, default=0,
                            help="findings -> image sequences of those renders, per training study (each finding "
                                 "drawn apart from the ones it co-occurs with in reports; rendered studies only)")
        parser.add_argument("--seed", type=int, default=0)
        return
    parser.add_argument("--model", required=True, help="an exported medical model folder (final/)")
    parser.add_argument("--settings", action=_ExperimentSettings, metavar="YAML",
                        help="take the options below from an experiment config's `eval:` block (e.g. "
                             "experiments/medical_cxr.yaml, the settings of the README's figures); options after it win")
    defaults = EvalSettings()  # `uwm eval medical`'s settings and the defaults of those `generate` shares
    parser.add_argument("--read-phases", type=count(), default=None if command == "generate" else defaults.read_phases,
                        help="image -> report: read each image at N x N alignments of the VQ code grid (shifts "
                             "within one code) and average the findings' log-odds (1 = the image as given; default "
                             f"{defaults.read_phases}, or for generate those of --thresholds EVAL.json)")
    # report -> image and findings -> report, as `eval` scores them and `generate` makes them
    parser.add_argument("--cfg-scale", type=float, default=defaults.cfg_scale,
                        help="classifier-free guidance of images (1 = none)")
    parser.add_argument("--temperature", type=float, default=defaults.temperature, help="image sampling temperature")
    parser.add_argument("--draw-candidates", type=count(), default=defaults.draw_candidates,
                        help="images drawn per report, keeping the one in which the model's own reader finds the "
                             "findings most likely (1 = the first; eval scores the first too when more)")
    parser.add_argument("--report-cfg-scale", type=float, default=defaults.report_cfg_scale,
                        help="guidance of a report written from findings, away from the normal chest's (1 = none)")
    parser.add_argument("--report-candidates", type=count(), default=defaults.report_candidates,
                        help="reports tried until the labeler reads the findings in one (1 = the greedy one; eval "
                             "scores it too when more)")
    parser.add_argument("--seed", type=int, default=0)
    if command == "eval":
        parser.add_argument("--data", required=True, help="the model's training data folder: its manifest says "
                            "where the studies come from and how they were split")
        parser.add_argument("--judge", help="findings judge folder (default: DATA/judge, trained there if missing)")
        parser.add_argument("--judge-steps", type=int, default=600, help="judge training steps (when trained)")
        parser.add_argument("--limit", type=int, help="evaluate only the first N held-out studies")
        parser.add_argument("--top-k", type=int, default=defaults.top_k, help="image sampling top-k (0: off)")
        parser.add_argument("--findings-threshold", type=_findings_threshold, default=defaults.findings_threshold,
                            help="image -> report: state a finding when its probability exceeds this; 'tuned': "
                                 "per pathology, tuned for F1 on new renders of --tune-studies training studies")
        parser.add_argument("--tune-studies", type=count(0, zero="0: all"), default=defaults.tune_studies,
                            help="with --findings-threshold tuned: the first N training studies (0: all of them)")
        parser.add_argument("--findings-min-f1", type=float, default=defaults.findings_min_f1,
                            help="with --findings-threshold tuned: never state a pathology whose tuned F1 is below this")
        parser.add_argument("--tune-passes", type=count(), default=defaults.tune_passes,
                            help="with --findings-threshold tuned: tuning passes, each deciding the earlier findings "
                                 "at the thresholds of the pass before (the first at 0.5)")
        parser.add_argument("--draw-from", choices=DRAW_FROM, default=defaults.draw_from,
                            help="draw each image from the report and its findings, or from the findings alone "
                                 "(the other is scored too, for comparison)")
        parser.add_argument("--draw-streams", type=count(), default=defaults.draw_streams,
                            help="score the report -> image drawing over N random streams (seeds --seed, --seed + 1, "
                                 "...): each stream's judge ratio, their mean and its interval (1 = one stream)")
        parser.add_argument("--stages", metavar="DIR",
                            help="keep each generation stage here as it finishes (thresholds, reads, reports, each "
                                 "pass of draws): the same command run again resumes after the last one")
        parser.add_argument("--samples", help="write a grid of generated images and example reports to this folder")
        parser.add_argument("--quote-reports", action="store_true",
                            help="quote the reference and retrieved reports in --samples (default: name their studies; "
                                 "Open-i and MIMIC-CXR reports may not be redistributed)")
        parser.add_argument("--out", help="write the metrics JSON here")
    if command == "generate":
        what = parser.add_mutually_exclusive_group()
        what.add_argument("--report", help="report text -> write a chest X-ray to --output")
        what.add_argument("--image", help="a chest X-ray (PNG/JPEG/DICOM) -> print its findings and report")
        parser.add_argument("--findings", help="comma-separated pathologies (e.g. cardiomegaly,effusion; 'none' for a "
                            "normal chest): with --report, the findings to draw instead of the labeler's reading; "
                            "alone, draw an image for them (with -o) or print the report the model writes for them")
        parser.add_argument("-o", "--output", help="PNG to write (with --report, or --findings alone)")
        parser.add_argument("--thresholds", type=_thresholds, metavar="P|EVAL.json",
                            help="with --image: state a finding when its probability exceeds P (default 0.5), or "
                                 "at the per-pathology thresholds an evaluation of this model tuned and scored "
                                 "(the JSON of `uwm eval medical --out`, an experiment's evaluation.json), read "
                                 "at its read phases")
        parser.add_argument("--draw-from", choices=DRAW_FROM,
                            help="draw from the report text and its findings (default with --report, unless "
                                 "--settings says findings, as the experiment's does) or from the findings alone "
                                 "(the report's as the labeler reads them, or --findings)")


def _findings_threshold(text: str) -> float | str:
    """argparse type of --findings-threshold: "tuned" or a number in [0, 1] (checked as `EvalSettings` checks it)."""
    try:
        return EvalSettings(findings_threshold=text).findings_threshold
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _thresholds(text: str) -> tuple[float | dict[str, float], int | None]:
    """argparse type of `--thresholds`: a number in [0, 1] -> (it, None); an evaluation's results JSON -> its
    thresholds and the read phases they were used at (`evaluate.evaluated_thresholds`)."""
    try:
        value = float(text)
    except ValueError:
        try:
            return evaluated_thresholds(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or an evaluation's results JSON, got {text}")
    return value, None


class _ExperimentSettings(argparse.Action):
    """`--settings experiments/medical_cxr.yaml`: its `eval:` block (`EvalSettings`: cfg_scale, temperature,
    findings_threshold, ...) sets the options of the same names, in place on the command line, so options given
    after it win. The block is checked whole, as the experiment reads it (unknown keys and bad values are an
    error); keys this command lacks (eval's tuning, for generate) are left out."""

    def __call__(self, parser, namespace, path, option_string=None):
        import yaml

        try:
            settings = (yaml.safe_load(Path(path).read_text()) or {}).get("eval")
        except (OSError, yaml.YAMLError, AttributeError) as error:
            parser.error(f"{option_string} {path}: expected a YAML experiment config with an `eval:` block ({error})")
        if not isinstance(settings, dict):
            parser.error(f"{option_string} {path}: no `eval:` block of settings")
        unknown = sorted(set(settings) - set(EvalSettings.keys()), key=str)
        if unknown:
            parser.error(f"{option_string} {path}: eval.{unknown[0]} is not a setting; "
                         f"expected {', '.join(EvalSettings.keys())}")
        try:
            EvalSettings(**settings)
        except ValueError as error:
            parser.error(f"{option_string} {path}: {error}")
        for key, value in settings.items():
            if hasattr(namespace, key):  # the command's options are there, at their defaults, before any is parsed
                setattr(namespace, key, value)


def run(command: str, args: argparse.Namespace) -> None:
    """Run `uwm data|eval|generate medical` with its parsed options."""
    {"data": _data, "eval": _eval, "generate": _generate}[command](args)


def _data(args) -> None:
    from .dataset import load_studies, write_medical_dataset

    studies = load_studies(args.openi, args.image_dir, args.mimic, args.mimic_reports)
    if args.limit:
        studies = studies[: args.limit]
    tokenizers, tokenizer_report = None, None
    if args.tokenizers:
        from core.data import SequenceDataset

        given = SequenceDataset(args.tokenizers)
        tokenizers, tokenizer_report = given.tokenizers(), given.meta.get("image_tokenizer")
    source = {key: str(value) for key, value in (("openi", args.openi), ("image_dir", args.image_dir),
                                                  ("mimic", args.mimic), ("mimic_reports", args.mimic_reports),
                                                  ("limit", args.limit)) if value is not None}
    path = write_medical_dataset(args.out, studies, args.image_size, args.grid, args.renders, args.held_out,
                                 args.split_seed, args.vq_steps, args.text_vocab, args.max_report_tokens,
                                 args.cfg_dropout, args.writes, args.findings_draws, args.random_reads,
                                 random_draws=args.random_draws, min_finding_writes=args.min_finding_writes,
                                 unpaired=args.unpaired, tokenizers=tokenizers,
                                 source=source, seed=args.seed, image_tokenizer_report=tokenizer_report)
    print(json.dumps(json.loads((Path(path) / "manifest.json").read_text())["meta"], indent=1))


def _eval(args) -> None:
    from core.data import SequenceDataset
    from core.pretrained import training_data_meta

    from .dataset import dataset_split
    from .evaluate import evaluate_medical, load_or_fit_judge
    from .model import MedicalModel

    meta = SequenceDataset(args.data).meta
    if meta.get("task") != "medical":
        raise ValueError(f"{args.data} holds {meta.get('task')!r} sequences, not medical ones")
    trained = training_data_meta(args.model)  # a model evaluated on studies it trained on would look better
    split_keys = ("held_out", "split_seed", "num_train_studies", "num_held_out_studies")
    if any(key in trained and trained[key] != meta.get(key) for key in split_keys):
        raise ValueError(f"{args.data} splits its studies otherwise than the data {args.model} was trained on "
                         f"({', '.join(f'{key} {meta.get(key)} vs {trained.get(key)}' for key in split_keys)}), so its "
                         f"held-out studies may be training ones: give the --data the model was trained on")
    settings = EvalSettings(**{key: getattr(args, key) for key in EvalSettings.keys()}
                            | {"limit": args.limit or None, "tune_studies": args.tune_studies or None})  # 0: all
    train, test = dataset_split(meta)
    model = MedicalModel.load(args.model, max_report_tokens=meta["max_report_tokens"], read_phases=settings.read_phases,
                              progress=True)
    judge_dir = Path(args.judge) if args.judge else Path(args.data) / "judge"
    judge, judge_report = load_or_fit_judge(judge_dir, train, model.image_size, args.judge_steps, args.seed)
    keep: dict = {}
    results = evaluate_medical(model, train, test, judge, settings, args.seed, keep, stages=args.stages)
    results.update(model_dir=str(args.model), data_dir=str(args.data), judge_dir=str(judge_dir),
                   judge_training=judge_report)
    if args.samples:
        from .plots import write_samples

        results["samples"] = write_samples(keep, args.samples, quote_reports=args.quote_reports)
    from core.data import report_json

    report_json(results, args.out)


def _generate(args) -> None:
    import torch

    from .model import MedicalModel

    if args.report is None and args.image is None and args.findings is None:
        raise ValueError("uwm generate medical: give --report (draw an image), --image (read it) or --findings alone "
                         "(draw an image with -o, else write a report)")
    if args.image is not None and args.findings is not None:
        raise ValueError("--findings goes with --report or alone, not with --image (the model states the image's findings)")
    if args.image is not None and args.output:
        raise ValueError("--image reads the image and prints its findings and report: not with -o/--output (which "
                         "draws one)")
    if args.report is not None and not args.output:
        raise ValueError("--report needs -o/--output, the PNG to write")
    defaults = EvalSettings()
    threshold, phases = args.thresholds or (defaults.findings_threshold, None)
    if args.thresholds is not None and args.image is None:
        raise ValueError("--thresholds goes with --image (the findings the model states when it reads an image)")
    if phases is not None and args.read_phases not in (None, phases):
        raise ValueError(f"--thresholds: the evaluation read at {phases} phases, --read-phases says {args.read_phases}: "
                         f"drop it or give {phases} to state what the evaluation scored")
    read_phases = args.read_phases or phases or defaults.read_phases
    model = MedicalModel.load(args.model, read_phases=read_phases, progress=True)
    findings = None
    if args.findings is not None:
        findings = [[] if args.findings.strip() == "none" else [f.strip() for f in args.findings.split(",")]]
    if args.report is not None or (findings is not None and args.output):
        generator = torch.Generator().manual_seed(args.seed)
        reports = [args.report] if args.report is not None else None
        image = model.draw(reports, cfg_scale=args.cfg_scale, temperature=args.temperature, generator=generator,
                           findings=findings, draw_from=args.draw_from, candidates=args.draw_candidates)
        from PIL import Image

        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image[0, 0].numpy() * 255 + 0.5).astype("uint8")).save(args.output)
        print(args.output)
    elif findings is not None:
        print(model.write(findings, cfg_scale=args.report_cfg_scale, candidates=args.report_candidates)[0])
    else:
        from .images import load_image

        findings, reports = model.read_findings(load_image(args.image, model.image_size)[None], threshold=threshold,
                                                cfg_scale=args.report_cfg_scale, candidates=args.report_candidates)
        print(f"findings: {', '.join(findings[0]) or 'none'}")
        print(reports[0])
