"""Evaluation of the bidirectional model on held-out studies, next to simple baselines.

image -> report (each held-out study's reference image in, a report out):
    BLEU-1..4, ROUGE-L, clinical efficacy (labeler findings of generated vs reference report),
    embedding similarity; and the findings the model states before its report against the
    reference report's (`model_findings`, over the pathologies). The model's report is written from
    its stated findings (`model`: up to `report_candidates` tries, until the labeler reads those
    findings in one, else composed from the tries' sentences (`MedicalModel.write`);
    `model_uncomposed`: the same tries, never composed; `model_one_candidate`: the first, greedy try;
    `reports_off_stated_findings` counts, for each, the reports that say other pathologies than
    were stated); `model_report_from_image` writes it after the image and the findings instead (the
    read sequence), for comparison. Baselines:
    **retrieval** (the report of the training study whose image is nearest in the judge's feature
    space: a supervised findings classifier's features, a strong baseline), the same retrieval on the
    VQ encoder's unsupervised latents (what the model itself sees), and the **most common** training
    report. `model_vs_retrieval`: the model's clinical-efficacy macro-F1 minus retrieval's, with a paired
    bootstrap 95% interval over the held-out studies (`metrics.paired_bootstrap`).
report -> image (each held-out report in, an image out):
    the judge's findings on the image against the report's labels (macro-F1, next to the judge's F1
    on the reference images themselves: the ceiling; `judge_f1_ratio` of the two, with a bootstrap 95%
    interval over the held-out studies and the fraction of resamples at the 0.7 goal), FID on judge
    features against the reference images, SSIM to the reference image. The model draws from the report
    and its findings (`model`, the default `draw_from`) and from the findings alone
    (`model_draw_from_findings`), or the other way round when `draw_from` is "findings"; with
    `draw_candidates` > 1, `model` keeps the best of that many draws by the model's own reader and
    `model_first_draw` scores the first alone (the judge never chooses). Baseline: the **mean training
    image** of studies with the same findings (the global mean image where no training study has them).
    With `draw_streams` > 1 the `model` drawing is repeated from that many random streams (generator seeds
    seed, seed + 1, ...) and `draw_streams` gives each stream's judge scores and ratio, their mean, and the
    mean's interval over the held-out studies: one stream's ratio also owes much to the luck of the draws.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from core.metrics import ssim
from core.stages import Stages, weights_fingerprint

from .dataset import JUDGE_RENDER_SEED, imaged_studies, study_findings, study_images
from .findings import NORMAL_WITH, PATHOLOGIES, random_findings
from .judge import CONFIG_NAME, FindingsJudge, feature_fid
from .labeler import findings_vector
from .metrics import (DRAW_STREAMS, TUNE_STUDIES, load_embedder, multilabel_f1, paired_bootstrap, ratio_bootstrap,
                      report_findings, report_metrics, tune_thresholds)
from .model import DRAW_CANDIDATES, DRAW_FROM, READ_PHASES, REPORT_CANDIDATES, REPORT_CFG_SCALE, choose_draw
from .reports import Study

__all__ = ["JUDGE_F1_RATIO_GOAL", "EvalSettings", "evaluate_medical", "evaluated_thresholds", "findings_threshold",
           "fit_judge", "judge_redraw", "judge_targets", "load_or_fit_judge", "mean_image_baseline", "off_stated",
           "pathology_matrix", "stream_scores", "study_labels", "tune_findings_thresholds"]


JUDGE_F1_RATIO_GOAL = 0.7  # report -> image: the judge's macro-F1 on drawn images over its own on the references


def pathology_matrix(findings_sets, names: tuple[str, ...] = PATHOLOGIES) -> np.ndarray:
    """Finding-name tuples -> (N, P) bool, one column per pathology (`PATHOLOGIES` order; or per name of
    `names`, e.g. FINDINGS). The inverse of `findings.named` row by row."""
    return np.asarray([[name in set(present) for name in names] for present in findings_sets],
                      dtype=bool).reshape(-1, len(names))


def off_stated(reports: list[str], stated: list[tuple[str, ...]]) -> int:
    """How many reports the labeler reads other pathologies in than the findings they were written for."""
    return int((report_findings(reports)[:, 1:] != pathology_matrix(stated)).any(1).sum())


def study_labels(studies: list[Study]) -> np.ndarray:
    """Studies -> (N, F) bool: their findings in `FINDINGS` order as the labeler reads their reports (what the
    judge's findings on their images are scored against)."""
    return np.stack([findings_vector(s.labels) for s in studies]) > 0


def judge_targets(findings_sets) -> np.ndarray:
    """Finding-name tuples (pathologies present) -> (N, F) multi-hot in `FINDINGS` order: the pathologies,
    after `no_finding`, which is on when none but support devices is."""
    present = pathology_matrix(findings_sets)
    abnormal = present[:, [j for j, name in enumerate(PATHOLOGIES) if name not in NORMAL_WITH]].any(1)
    return np.concatenate([~abnormal[:, None], present], 1).astype(np.float32)


TUNING_VARIANT = 500  # rendered patient for threshold tuning: not in the paired (0, 1, ...) nor judge (1, 2) data


def tune_findings_thresholds(model, studies: list[Study], batch_size: int | None = None, min_f1: float = 0.0,
                             passes: int = 1) -> dict[str, float]:
    """Per-pathology thresholds for the findings `model` states, each with the best F1 on renders of
    new patients (`TUNING_VARIANT`) of `studies` (never stated where that F1 is below `min_f1`): pass
    training studies, so the held-out ones stay unseen. (A study's own image is the same for every
    variant: keep those out of the studies you pass.)

    passes: each pathology's probability is read after the earlier ones are decided; the first pass
    decides them at 0.5, each later pass at the thresholds the pass before tuned (as they will be
    decided when the thresholds are used)."""
    if passes < 1:
        raise ValueError(f"threshold tuning passes must be at least 1, got {passes}")
    images = study_images(studies, model.image_size, TUNING_VARIANT)
    reference, thresholds = pathology_matrix(map(study_findings, studies)), 0.5
    for _ in range(passes):
        probabilities = model.findings_probabilities(images, threshold=thresholds, batch_size=batch_size).numpy()
        thresholds = tune_thresholds(probabilities, reference, min_f1).tolist()
    return dict(zip(PATHOLOGIES, thresholds))


def _threshold_setting(setting) -> float | str:
    """A findings-threshold setting -> "tuned", or the number in [0, 1] it gives (a ValueError otherwise)."""
    if str(setting).strip().lower() == "tuned":
        return "tuned"
    try:
        value = -1.0 if isinstance(setting, bool) else float(setting)  # YAML reads yes/no as booleans
    except (TypeError, ValueError):
        value = -1.0
    if not 0 <= value <= 1:
        raise ValueError(f"findings_threshold: expected a number in [0, 1] or 'tuned', got {setting!r}")
    return value


def evaluated_thresholds(path: str | Path) -> tuple[float | dict[str, float], int]:
    """The findings thresholds an evaluation used (`uwm eval medical --out`, an experiment's evaluation.json):
    (one number, or {pathology: threshold} as tuned there; the read phases they were used at). Read with the
    same model and read phases, `MedicalModel.read_findings` states what the evaluation scored. (Results without
    read_phases predate them: one alignment.)"""
    try:
        reading = json.loads(Path(path).read_text())["image_to_report"]
        threshold, phases = reading["findings_threshold"], int(reading.get("read_phases", 1))
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{path}: expected the results JSON of an evaluation (`uwm eval medical --out`, an "
                         f"experiment's evaluation.json) with image_to_report.findings_threshold "
                         f"({type(error).__name__}: {error})") from None
    named = threshold if isinstance(threshold, dict) else {name: threshold for name in PATHOLOGIES}
    if set(named) != set(PATHOLOGIES) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1
                                                  for v in named.values()):
        raise ValueError(f"{path}: image_to_report.findings_threshold: expected a number in [0, 1] or one per "
                         f"pathology ({', '.join(PATHOLOGIES)}), got {threshold!r}")
    return threshold, phases


def findings_threshold(setting, model, train: list[Study], tune_studies: int | None = TUNE_STUDIES,
                       min_f1: float = 0.0, passes: int = 1) -> float | dict[str, float]:
    """A findings-threshold setting (a number in [0, 1], or "tuned") -> the threshold `MedicalModel.read_findings`
    takes; "tuned" runs `tune_findings_thresholds` (with `passes`) on the first `tune_studies` rendered training
    studies (None: all of them; a pathology read there below `min_f1` is never stated: the writer seldom
    words what the reader barely sees, and the reports it tries cost the other findings). Studies with a
    real image are left out: the model has seen that image, and a new patient cannot be rendered of it."""
    setting = _threshold_setting(setting)
    if setting != "tuned":
        return setting
    if tune_studies is not None and tune_studies < 1:
        raise ValueError(f"tune_studies must be >= 1 (None: every training study), got {tune_studies}")
    rendered = imaged_studies(train, TUNING_VARIANT)
    if not rendered:
        raise ValueError("findings threshold 'tuned' needs training studies without an image (rendered); "
                         "every one has a real image the model trained on: give a number instead")
    return tune_findings_thresholds(model, rendered[:tune_studies], min_f1=min_f1, passes=passes)


def fit_judge(train: list[Study], image_size: int = 64, variants: int = 2, random_sets: int | None = None,
              steps: int = 600, seed: int = 0, progress: bool = True) -> tuple[FindingsJudge, dict]:
    """Train the findings judge on renders of the training studies (`variants` patients each; a study's own
    image once, so that no copy of it lands in the judge's held-out images) plus `random_sets` renders of
    random finding sets (default: as many), which give rare findings (26 pneumothorax reports in Open-i)
    enough positives."""
    from .renderer import render_batch

    shown = [imaged_studies(train, v) for v in range(variants)]
    findings = [study_findings(s) for studies in shown for s in studies]
    images = [study_images(studies, image_size, 1 + v) for v, studies in enumerate(shown)]  # patients unseen by the eval (0)
    extra = len(findings) if random_sets is None else random_sets
    extra_sets = random_findings(extra, np.random.default_rng(seed))
    if extra:
        images.append(torch.from_numpy(render_batch(extra_sets, image_size, seed=seed + JUDGE_RENDER_SEED)))
    judge = FindingsJudge(image_size, seed=seed)
    report = judge.fit(torch.cat(images), judge_targets(findings + extra_sets), steps=steps, seed=seed,
                       progress=progress)
    return judge, report


def _retrieve(query: torch.Tensor, keys: torch.Tensor, train: list[Study]) -> list[Study]:
    """The training study whose feature vector (keys (M, D)) is most cosine-similar to each query (N, D)."""
    similarity = torch.nn.functional.normalize(query, dim=1) @ torch.nn.functional.normalize(keys, dim=1).T
    return [train[int(i)] for i in similarity.argmax(1)]


def _ids_fingerprint(studies: list[Study]) -> str:
    """sha256 of the studies' ids, in order."""
    return hashlib.sha256("\n".join(s.study_id for s in studies).encode()).hexdigest()


def load_or_fit_judge(directory, train: list[Study], image_size: int = 64, steps: int = 600, seed: int = 0,
                      progress: bool = True) -> tuple[FindingsJudge, dict | None]:
    """The judge saved in `directory` with its training report, or a new one fitted on `train` (`fit_judge`)
    and saved there with `report.json`, which names the training studies by a hash of their ids: a saved
    judge trained on other studies (another split, whose held-out studies it may have seen), or with no
    such record, is refused."""
    from core.data import write_json_atomic

    directory = Path(directory)
    trained_on = _ids_fingerprint(sorted(train, key=lambda s: s.study_id))  # whatever their order
    if (directory / CONFIG_NAME).is_file():
        path = directory / "report.json"
        report = json.loads(path.read_text()) if path.is_file() else {}
        if "train_studies_sha256" not in report:
            raise ValueError(f"{path}: no record of the studies this judge was trained on (train_studies_sha256), so "
                             f"it may have seen held-out ones; give another --judge folder (a judge is trained there)")
        if report["train_studies_sha256"] != trained_on:
            raise ValueError(f"{path}: this judge was trained on other studies than this split's {len(train)} "
                             f"training studies (train_studies_sha256 differs); give another --judge folder")
        return FindingsJudge.load(directory), report
    judge, report = fit_judge(train, image_size, steps=steps, seed=seed, progress=progress)
    report["train_studies_sha256"] = trained_on
    judge.save(directory)
    write_json_atomic(directory / "report.json", report)
    return judge, report


def mean_image_baseline(train_images: torch.Tensor, train_findings: list[tuple], wanted: list[tuple]) -> torch.Tensor:
    """For each wanted findings set, the mean of training images (N, 1, S, S) with exactly those findings
    (the mean of all where none has them) -> (len(wanted), 1, S, S)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, present in enumerate(train_findings):
        groups[tuple(present)].append(i)
    overall = train_images.mean(0)
    means = {key: train_images[index].mean(0) for key, index in groups.items()}
    return torch.stack([means.get(tuple(present), overall) for present in wanted])


def judge_redraw(model, reports: list[str], judge: FindingsJudge, stream: int, candidates: int = DRAW_CANDIDATES,
                 stages: Stages | None = None, **sampling) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw an image per report from generator seed `stream` (`MedicalModel.candidate_draws` with `candidates`,
    `stages` and `sampling`: cfg_scale, temperature, top_k, draw_from; the model's reader choosing) -> the
    judge's findings (N, F) bool on the chosen draws and on the first draws (None with one candidate)."""
    tries, likelihood = model.candidate_draws(reports, generator=torch.Generator().manual_seed(stream),
                                              candidates=candidates, stages=stages, **sampling)
    return judge.predict(choose_draw(tries, likelihood)), (judge.predict(tries[0]) if likelihood is not None else None)


def stream_scores(judged: np.ndarray, judged_first: np.ndarray | None, judged_reference: np.ndarray,
                  labels: np.ndarray, stream: int) -> dict:
    """The judge's findings (N, F) bool on one random stream's chosen draws, on its first draws (or None) and on
    the reference images, and the studies' labels (N, F) bool -> that stream's judge scores (`judge`: `model`,
    `model_first_draw`) and their macro-F1 over the references' (`judge_f1_ratio`, `..._first_draw`; None
    where the judge finds nothing on the references)."""
    ceiling = multilabel_f1(judged_reference, labels)["macro_f1"]
    scores = {"model": multilabel_f1(judged, labels),
              **({"model_first_draw": multilabel_f1(judged_first, labels)} if judged_first is not None else {})}
    return {"stream": stream, "judge": scores, "judge_macro_f1_reference": ceiling,
            **{f"judge_f1_ratio{name[len('model'):]}": score["macro_f1"] / ceiling if ceiling else None
               for name, score in scores.items()}}


@dataclass(frozen=True)
class EvalSettings:
    """How `evaluate_medical` generates and scores, in one place: the options of `uwm eval medical` (same names,
    dashed; their defaults are these) and the keys of an experiment config's `eval:` block.

    limit: evaluate only the first N held-out studies (None: all); read_phases: code-grid alignments the model
    reads each image at (`MedicalModel.load`; the model passed must have them); findings_threshold: the
    probability above which the model states a finding before its report, a number or "tuned" (per pathology,
    `findings_threshold` with tune_studies, findings_min_f1 and tune_passes); report_cfg_scale and
    report_candidates: the report written from the stated findings (`MedicalModel.write`: up to that many tries
    until the labeler reads the findings in one); cfg_scale, temperature, top_k: the report -> image sampling;
    draw_from: "report" (its text and findings) or "findings" (alone); draw_candidates: images drawn per report,
    the model's own reader keeping one; draw_streams: random streams the drawing is scored over.
    """

    limit: int | None = None
    cfg_scale: float = 3.0
    temperature: float = 1.0
    top_k: int = 0
    findings_threshold: float | str = 0.5
    findings_min_f1: float = 0.0
    tune_studies: int | None = TUNE_STUDIES
    tune_passes: int = 1
    report_cfg_scale: float = REPORT_CFG_SCALE
    read_phases: int = READ_PHASES
    report_candidates: int = REPORT_CANDIDATES
    draw_from: str = "report"
    draw_candidates: int = DRAW_CANDIDATES
    draw_streams: int = DRAW_STREAMS

    def __post_init__(self):
        def check(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise ValueError(f"eval.{name}: expected {expected}, got {getattr(self, name)!r}")

        def integer(value) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        for name in ("read_phases", "report_candidates", "draw_candidates", "draw_streams", "tune_passes"):
            check(integer(getattr(self, name)) and getattr(self, name) >= 1, name, "an integer >= 1")
        for name in ("limit", "tune_studies"):
            value = getattr(self, name)
            check(value is None or integer(value) and value >= 1, name, "an integer >= 1, or null for all")
        check(integer(self.top_k) and self.top_k >= 0, "top_k", "an integer >= 0 (0: off)")
        for name in ("cfg_scale", "temperature", "report_cfg_scale", "findings_min_f1"):
            check(isinstance(getattr(self, name), (int, float)) and not isinstance(getattr(self, name), bool), name,
                  "a number")
        check(self.temperature >= 0, "temperature", "a number >= 0 (0: the most likely codes)")
        for name in ("draw_candidates", "draw_streams"):  # at temperature 0 every draw is the same image
            check(self.temperature > 0 or getattr(self, name) == 1, name, "1 at temperature 0 (every draw the same)")
        check(self.draw_from in DRAW_FROM, "draw_from", f"one of {', '.join(DRAW_FROM)}")
        object.__setattr__(self, "findings_threshold", _threshold_setting(self.findings_threshold))

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The settings' names (an `eval:` block's keys)."""
        return tuple(field.name for field in fields(cls))

    def evaluated(self, held_out: list[Study]) -> list[Study]:
        """The held-out studies evaluated: the first `limit` of them (all with no limit)."""
        return held_out[: self.limit] if self.limit else held_out

    def sampling(self) -> dict:
        """The report -> image sampling settings: cfg_scale, temperature, top_k."""
        return {"cfg_scale": self.cfg_scale, "temperature": self.temperature, "top_k": self.top_k}


@torch.no_grad()
def evaluate_medical(model, train: list[Study], test: list[Study], judge: FindingsJudge,
                     settings: EvalSettings = EvalSettings(), seed: int = 0, keep: dict | None = None,
                     stages: str | Path | None = None) -> dict:
    """All metrics of both directions on `test` (its first `settings.limit`), with baselines built from `train`
    (see module doc), generated as `settings` say (`EvalSettings`).

    model: a `MedicalModel` loaded with `settings.read_phases`; seed: of the draws (streams seed, seed + 1, ...)
    and the bootstrap intervals; keep: if given, filled with reference/generated images, generated reports and
    the reference and retrieved `Study`s (for `domains.medical.plots.write_samples`). With more than one
    report candidate, the same tries never composed are scored as `model_uncomposed` and the first try alone
    as `model_one_candidate`; the `model` images are drawn from `settings.draw_from` and the other choice is
    scored as `model_draw_from_<it>` (one draw); with more than one draw candidate the first alone is scored as
    `model_first_draw`. Each image set's `feature_spread` (RMS distance of its judge features from their mean)
    shows whether a choice narrows the images to typical ones, next to the reference images' spread; with
    more than one draw stream, `draw_streams` in the results scores each. The results name their `settings`;
    `seconds` is the time after the findings thresholds are tuned (`stages_loaded`: the stages a stopped run
    computed and this one loaded, with the seconds they took then and the commit that computed them).

    stages: a folder where each generation stage is kept as it finishes (thresholds, reads, reports, each pass of
    draws; `core.stages.Stages`), so that a stopped evaluation, run again with the same model, studies, settings
    and seed, resumes after the last one and gives the results an uninterrupted one would.
    """
    if model.read_phases != settings.read_phases:
        raise ValueError(f"evaluate_medical: the model reads at {model.read_phases} phases but the settings say "
                         f"{settings.read_phases}: load it with read_phases={settings.read_phases}")
    test = settings.evaluated(test)
    if not test or not train:
        raise ValueError(f"evaluate_medical: expected training and held-out studies, got {len(train)} and {len(test)}")
    run = Stages(stages, lambda: {"model": weights_fingerprint(model.model), "max_report_tokens": model.max_report_tokens,
                                  "settings": asdict(settings), "seed": seed, "train": _ids_fingerprint(train),
                                  "held_out": _ids_fingerprint(test)})
    threshold = run("threshold", lambda: findings_threshold(settings.findings_threshold, model, train,
                                                            settings.tune_studies, min_f1=settings.findings_min_f1,
                                                            passes=settings.tune_passes))
    size = model.image_size
    started = time.perf_counter()
    references = [s.report for s in test]
    reference_images = study_images(test, size, variant=0)
    train_images = study_images(train, size, variant=0)
    train_findings = [study_findings(s) for s in train]
    embedder = load_embedder()

    # image -> report
    # the findings are stated once; both reports follow them (read_findings' default path is this `write`)
    stated, generated_after_image = run("read", lambda: model.read_findings(reference_images, threshold=threshold,
                                                                            report_from="image"))
    search = run("write", lambda: model.write_search(stated, cfg_scale=settings.report_cfg_scale,
                                                     candidates=settings.report_candidates))
    generated = search.composed
    searched = settings.report_candidates > 1
    uncomposed, first_tries = (search.best, search.first) if searched else (None, None)
    retrieved = _retrieve(judge.features(reference_images), judge.features(train_images), train)
    retrieved_reports = [s.report for s in retrieved]
    vq = model.vq
    retrieved_vq = _retrieve(vq.latents(reference_images).flatten(1), vq.latents(train_images).flatten(1), train)
    most_common, count = Counter(s.report for s in train).most_common(1)[0]
    read_seconds = time.perf_counter() - started
    image_to_report = {
        "model": report_metrics(generated, references, embedder),
        "model_findings": multilabel_f1(pathology_matrix(stated), pathology_matrix(map(study_findings, test)),
                                        PATHOLOGIES),
        "findings_threshold": threshold,
        "read_phases": model.read_phases,
        "report_cfg_scale": settings.report_cfg_scale,
        "report_candidates": settings.report_candidates,
        **({"model_uncomposed": report_metrics(uncomposed, references, embedder),
            "model_one_candidate": report_metrics(first_tries, references, embedder)} if searched else {}),
        # reports the labeler reads other pathologies in than the findings stated for them
        "reports_off_stated_findings": {name: off_stated(reports, stated) for name, reports in
                                        (("model", generated), ("model_uncomposed", uncomposed),
                                         ("model_one_candidate", first_tries)) if reports is not None},
        "model_report_from_image": report_metrics(generated_after_image, references, embedder),
        "retrieval": report_metrics(retrieved_reports, references, embedder),
        # is the model's clinical efficacy ahead of retrieval's beyond the luck of which studies were held out?
        "model_vs_retrieval": paired_bootstrap(report_findings(generated), report_findings(retrieved_reports),
                                               report_findings(references), seed=seed),
        "retrieval_vq_features": report_metrics([s.report for s in retrieved_vq], references, embedder),
        "most_common": report_metrics([most_common] * len(test), references, embedder),
        # by study, not quoted: Open-i and MIMIC-CXR reports may not be redistributed
        "most_common_report": {"study": next(s.study_id for s in train if s.report == most_common), "count": count},
    }

    # report -> image
    other = next(choice for choice in DRAW_FROM if choice != settings.draw_from)

    def draw(choice: str, candidates: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
        return model.candidate_draws(references, generator=torch.Generator().manual_seed(seed), draw_from=choice,
                                     candidates=candidates, stages=run.scope(f"draw_from_{choice}"),
                                     **settings.sampling())

    tries, likelihood = draw(settings.draw_from, settings.draw_candidates)  # (K, B, 1, S, S), (K, B) or None
    drawn_other = choose_draw(*draw(other))
    drawn, first_draws = choose_draw(tries, likelihood), (tries[0] if likelihood is not None else None)
    labels = study_labels(test)
    mean_images = mean_image_baseline(train_images, train_findings, [study_findings(s) for s in test])
    reconstructed = vq.reconstruct(reference_images)

    shown = {"model": drawn, f"model_draw_from_{other}": drawn_other,
             **({"model_first_draw": first_draws} if first_draws is not None else {}),
             "mean_image": mean_images, "vq_reconstruction": reconstructed, "reference": reference_images}
    judged = {name: judge.predict(images) for name, images in shown.items()}  # (N, F) bool each
    reference_features = judge.features(reference_images)

    def image_scores(name: str) -> dict:
        images = shown[name]
        features = reference_features if images is reference_images else judge.features(images)  # FID and spread
        return {"judge": multilabel_f1(judged[name], labels),
                "fid": feature_fid(features, reference_features) if images is not reference_images else 0.0,
                "ssim": float(ssim(images, reference_images).mean()),
                # how far the images spread in judge-feature space: RMS distance from their mean
                "feature_spread": float((features - features.mean(0)).pow(2).sum(1).mean().sqrt())}

    report_to_image = {**{name: image_scores(name) for name in shown}, "draw_candidates": settings.draw_candidates,
                       # how often the reader chose another draw than the first
                       **({"draws_not_first": int((likelihood.argmax(0) > 0).sum())} if likelihood is not None else {}),
                       "draw_from": settings.draw_from, **settings.sampling()}
    ceiling = report_to_image["reference"]["judge"]["macro_f1"]
    report_to_image["judge_f1_ratio"] = report_to_image["model"]["judge"]["macro_f1"] / ceiling if ceiling else None
    # how much the ratio owes to which studies were held out (a rare finding held out once moves it by 1/F)
    report_to_image["judge_f1_ratio_bootstrap"] = (ratio_bootstrap(judged["model"], judged["reference"], labels,
                                                                   seed=seed, goal=JUDGE_F1_RATIO_GOAL)
                                                   if ceiling else None)
    # the same drawing from the other random streams (none with one stream), scored alike
    streams = [(judged["model"], judged.get("model_first_draw"))]
    streams += [judge_redraw(model, references, judge, stream, settings.draw_candidates, run.scope(f"stream_{stream}"),
                             draw_from=settings.draw_from, **settings.sampling())
                for stream in range(seed + 1, seed + settings.draw_streams)]
    judged_streams = np.stack([chosen for chosen, _ in streams])  # (R, N, F): the kept draws' findings per stream
    if settings.draw_streams > 1:  # each stream's scores, their mean ratio and its interval
        scores = [stream_scores(*judged_stream, judged["reference"], labels, seed + i)
                  for i, judged_stream in enumerate(streams)]
        ratios = [score["judge_f1_ratio"] for score in scores]
        report_to_image["draw_streams"] = {
            "streams": scores, "judge_f1_ratio_mean": float(np.mean(ratios)) if ceiling else None,
            "judge_f1_ratio_bootstrap": (ratio_bootstrap(judged_streams, np.stack([judged["reference"]] * len(streams)),
                                                         labels, seed=seed, goal=JUDGE_F1_RATIO_GOAL)
                                         if ceiling else None)}
    if keep is not None:
        keep.update(reference_images=reference_images, drawn=drawn, mean_images=mean_images, generated=generated,
                    stated=stated, references=test, retrieved=retrieved, retrieved_vq=retrieved_vq,
                    judged=judged["model"], judged_reference=judged["reference"], judged_streams=judged_streams)
    return {"num_held_out": len(test), "num_train": len(train), "settings": asdict(settings),
            "image_to_report": image_to_report,
            "report_to_image": report_to_image, "seconds": time.perf_counter() - started,
            "read_seconds": read_seconds,
            # stages an earlier, stopped run computed ({stage: its seconds and commit}): not in this run's times
            "stages_loaded": run.loaded}
