import numpy as np
import pytest

from domains.medical.findings import FINDINGS
from domains.medical.metrics import (average_precision, bleu, clinical_efficacy, embedding_similarity, multilabel_f1,
                                     paired_bootstrap, ratio_bootstrap, report_findings, roc_auc, rouge_l, tune_thresholds, words)


def test_bleu_and_rouge_on_a_hand_computed_case():
    # R2Gen's tokens end each report with '.': 7 tokens each, sharing 6 unigrams, 4 of 6 bigrams, 2 of 5 trigrams,
    # 1 of 4 4-grams ('on the mat .'); equal lengths (no penalty)
    hypothesis, reference = "the cat sat on the mat", "The cat is on the mat."
    scores = bleu([hypothesis], [reference])
    assert scores["bleu_1"] == pytest.approx(6 / 7)
    assert scores["bleu_2"] == pytest.approx((6 / 7 * 4 / 6) ** 0.5)
    assert scores["bleu_3"] == pytest.approx((6 / 7 * 4 / 6 * 2 / 5) ** (1 / 3))
    assert scores["bleu_4"] == pytest.approx((6 / 7 * 4 / 6 * 2 / 5 * 1 / 4) ** (1 / 4))
    assert rouge_l([hypothesis], [reference]) == pytest.approx(6 / 7)  # LCS 6 of 7 tokens both ways
    assert bleu([reference], [reference])["bleu_4"] == pytest.approx(1.0)


def test_tokens_follow_r2gens_iu_xray_cleaning_and_lengths():
    assert words("1. Heart size: NORMAL. 2. No effusion..") == ["heart", "size", "normal", ".", "no", "effusion", "."]
    assert words('Chest X-ray: 2.5 cm "nodule" in R/L apex; T6-T7.') == [
        "chest", "x-ray", "25", "cm", "nodule", "in", "rl", "apex", "t6-t7", "."]  # R2Gen keeps '-' and digits
    long = " ".join(f"w{i}" for i in range(80))  # 81 tokens with the final '.'
    # R2Gen's max_seq_length 60: a generated report counts its first 60 tokens, a reference its first 59 (the
    # 60th id is its BOS), so a long report scored against itself matches 59 of 60 (1.0 uncut)
    assert bleu([long], [long])["bleu_1"] == pytest.approx(59 / 60)
    assert rouge_l([long], [long]) == pytest.approx((1 + 1.2**2) * (59 / 60) / (1 + 1.2**2 * 59 / 60))


def test_bleu_brevity_penalty_and_clipping():
    # 'the the the .' against 'the cat .': clipped unigram matches 2 of 4; shorter hypotheses are penalised
    assert bleu(["the the the"], ["the cat"])["bleu_1"] == pytest.approx(2 / 4)
    short = bleu(["heart"], ["heart is normal"])["bleu_1"]  # 2 tokens of 2 match, against 4
    assert short == pytest.approx(np.exp(1 - 4 / 2))
    assert words("Heart size: NORMAL.") == ["heart", "size", "normal", "."]
    with pytest.raises(ValueError, match="as many"):
        bleu(["a"], ["a", "b"])


def test_multilabel_f1_micro_macro_and_undefined_findings():
    names = ("a", "b", "c")
    reference = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0]], bool)
    predicted = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 1]], bool)
    scores = multilabel_f1(predicted, reference, names)
    assert scores["per_finding"]["a"]["f1"] == pytest.approx(2 / 3)  # tp 1, fn 1
    assert scores["per_finding"]["b"]["f1"] == 1.0
    assert scores["macro_findings"] == ["a", "b"]  # 'c' has no positive reference: left out of the macro mean
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)
    assert scores["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))  # tp 3, fp 1, fn 1


def test_tuned_thresholds_separate_the_classes_and_auc_by_ranks():
    # column 0: positives at 0.3 and 0.6, negatives at 0.08 -> any threshold in (0.08, 0.3] is perfect;
    # column 1: no positives -> 0.5
    probabilities = np.array([[0.3, 0.2], [0.6, 0.9], [0.08, 0.1], [0.08, 0.4]])
    reference = np.array([[1, 0], [1, 0], [0, 0], [0, 0]], bool)
    thresholds = tune_thresholds(probabilities, reference)
    assert 0.08 < thresholds[0] <= 0.3 and thresholds[1] == 0.5
    assert roc_auc(probabilities[:, 0], reference[:, 0]) == 1.0
    assert roc_auc(np.array([0.1, 0.2, 0.3]), np.array([False, True, False])) == 0.5
    assert roc_auc(probabilities[:, 1], reference[:, 1]) is None  # one class only: undefined


def test_thresholds_never_state_a_finding_read_below_min_f1():
    # column 1 (1 positive in 10) has its best F1 stated on 8 rows (a threshold in (0.2, 0.4]: F1 2/9)
    probabilities = np.zeros((10, 2))
    reference = np.zeros((10, 2), bool)
    probabilities[:2, 0], reference[:2, 0] = 0.9, True  # read perfectly
    probabilities[:, 1] = [0.2, 0.2, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]
    reference[9, 1] = True
    assert 0.2 < tune_thresholds(probabilities, reference)[1] <= 0.4
    floored = tune_thresholds(probabilities, reference, min_f1=0.3)
    assert floored[1] == 1.0 and floored[0] == tune_thresholds(probabilities, reference)[0]
    assert tune_thresholds(probabilities, reference, min_f1=2 / 9)[1] <= 0.4  # the floor itself is enough


def test_average_precision_by_hand():
    """Precision at each positive's threshold, weighted by the recall it adds; tied scores are one threshold."""
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.1]), np.array([True, False, True, False])) == pytest.approx(5 / 6)
    assert average_precision(np.array([0.5, 0.5]), np.array([True, False])) == 0.5
    assert average_precision(np.array([0.2, 0.9, 0.4]), np.array([False, True, True])) == 1.0
    assert average_precision(np.array([0.2, 0.9]), np.array([False, False])) is None


def test_clinical_efficacy_reads_findings_from_text():
    references = ["Large right pleural effusion.", "No acute disease."]
    same = clinical_efficacy(["Right effusion is present.", "Normal chest."], references)
    swapped = clinical_efficacy(["Normal chest.", "Right pleural effusion."], references)
    assert same["macro_f1"] == 1.0 and swapped["macro_f1"] == 0.0
    assert same["per_finding"]["effusion"]["support"] == 1 and len(same["per_finding"]) == len(FINDINGS)


def test_report_findings_are_the_labelers_and_an_empty_report_states_none():
    found = report_findings(["Possible right pleural effusion.", "  "])
    assert found.shape == (2, len(FINDINGS)) and found.dtype == bool
    assert found[0, FINDINGS.index("effusion")]  # uncertain counts as present
    u_zeros = report_findings(["Possible right pleural effusion."], uncertain_as_positive=False)
    assert u_zeros[0].tolist() == [name == "no_finding" for name in FINDINGS]  # uncertain-only is normal under U-Zeros
    assert found[1].tolist() == [name == "no_finding" for name in FINDINGS]


def test_paired_bootstrap_interval_of_the_macro_f1_difference():
    rng = np.random.default_rng(0)
    reference = rng.random((200, len(FINDINGS))) < 0.2
    noisy = reference ^ (rng.random(reference.shape) < 0.1)
    # its observed difference is multilabel_f1's macro-F1 difference (findings without positives left out)
    sparse = reference.copy()
    sparse[:, 3] = False
    tie = paired_bootstrap(noisy, noisy, sparse)
    assert tie["difference"] == 0.0 and tie["ci95"] == [0.0, 0.0] and tie["fraction_a_ahead"] == 0.0
    result = paired_bootstrap(reference, noisy, sparse, samples=500)
    expected = multilabel_f1(reference, sparse)["macro_f1"] - multilabel_f1(noisy, sparse)["macro_f1"]
    assert result["difference"] == pytest.approx(expected)
    low, high = result["ci95"]
    assert 0 < low < result["difference"] < high and result["fraction_a_ahead"] == 1.0
    # a one-study edge is no edge: a ahead on one positive of a rare finding only
    rare = np.zeros((400, len(FINDINGS)), dtype=bool)
    rare[:, 0], rare[0, 1] = rng.random(400) < 0.5, True
    a, b = rare.copy(), rare.copy()
    b[0, 1] = False
    close = paired_bootstrap(a, b, rare)
    assert close["difference"] == pytest.approx(0.5) and close["ci95"][0] == 0.0 < close["fraction_a_ahead"] < 1
    # runs on the same studies (e.g. training seeds): their differences averaged, the studies drawn once for all
    runs = paired_bootstrap(np.stack([reference, a[:200]]), np.stack([noisy, b[:200]]), sparse, samples=500)
    one_run = paired_bootstrap(a[:200], b[:200], sparse)
    assert runs["runs"] == 2 and runs["difference"] == pytest.approx((result["difference"] + one_run["difference"]) / 2)
    assert runs["ci95"][0] < runs["difference"] < runs["ci95"][1]
    with pytest.raises(ValueError, match="paired_bootstrap"):
        paired_bootstrap(reference, noisy[:10], reference)
    with pytest.raises(ValueError, match="paired_bootstrap"):
        paired_bootstrap(np.stack([reference] * 2), noisy, reference)


def test_ratio_bootstrap_interval_of_a_macro_f1_ratio():
    rng = np.random.default_rng(1)
    reference = rng.random((300, len(FINDINGS))) < 0.2
    ceiling = reference ^ (rng.random(reference.shape) < 0.05)
    drawn = reference ^ (rng.random(reference.shape) < 0.2)
    result = ratio_bootstrap(drawn, ceiling, reference, goal=0.7, samples=500)
    expected = multilabel_f1(drawn, reference)["macro_f1"] / multilabel_f1(ceiling, reference)["macro_f1"]
    assert result["ratio"] == pytest.approx(expected) and 0.3 < expected < 0.9
    low, high = result["ci95"]
    assert low < result["ratio"] < high and 0 < result["fraction_at_goal"] < 1 and result["goal"] == 0.7
    assert result["samples"] == 500 and result["without_ratio"] == 0
    assert ratio_bootstrap(ceiling, ceiling, reference)["ci95"] == [1.0, 1.0]
    assert "fraction_at_goal" not in ratio_bootstrap(drawn, ceiling, reference, samples=50)
    # one held-out case of a rare finding, found by the ceiling and missed by the drawing: the interval
    # spans the resamples that hold it (ratio lowered by it) and those that do not (ratio 1)
    rare = np.zeros((200, len(FINDINGS)), dtype=bool)
    rare[:, 0], rare[0, 1] = rng.random(200) < 0.5, True
    missed = rare.copy()
    missed[0, 1] = False
    single = ratio_bootstrap(missed, rare, rare, goal=0.7)
    assert single["ratio"] == pytest.approx(0.5) and single["ci95"] == [0.5, 1.0]
    assert single["fraction_at_goal"] == pytest.approx(np.exp(-1), abs=0.05)  # the case left out of a resample
    # a resample without the one positive has no ratio: left out, and counted
    lone = np.zeros((50, len(FINDINGS)), dtype=bool)
    lone[0, 0] = True
    alone = ratio_bootstrap(lone, lone, lone, samples=1000)
    assert alone["ci95"] == [1.0, 1.0] and alone["samples"] == 1000
    assert alone["without_ratio"] == pytest.approx(1000 * 0.98 ** 50, abs=60)  # resamples that miss study 0
    # runs on the same studies: their ratios averaged
    runs = ratio_bootstrap(np.stack([drawn, ceiling]), np.stack([ceiling, ceiling]), reference, samples=200)
    assert runs["runs"] == 2 and runs["ratio"] == pytest.approx((expected + 1) / 2)
    # weighted: one model's stream against another model's two streams, each model counted once
    weighted = ratio_bootstrap(np.stack([drawn, ceiling, ceiling]), np.stack([ceiling] * 3), reference, samples=200,
                               weights=[1, 0.5, 0.5])
    assert weighted["runs"] == 3 and weighted["ratio"] == pytest.approx(runs["ratio"])
    assert weighted["ci95"] == pytest.approx(runs["ci95"])  # the same resamples, the same weighted means
    with pytest.raises(ValueError, match="run weights"):
        ratio_bootstrap(np.stack([drawn, ceiling]), np.stack([ceiling, ceiling]), reference, weights=[1])
    with pytest.raises(ValueError, match="ratio_bootstrap"):
        ratio_bootstrap(drawn, ceiling[:10], reference)
    with pytest.raises(ValueError, match="a ceiling finds no positive"):
        ratio_bootstrap(lone, np.zeros_like(lone), lone, samples=20)


def test_embedding_similarity_ranks_paraphrases_above_contradictions():
    references = ["There is a large right pleural effusion."] * 2
    paraphrase = embedding_similarity(["A big pleural effusion on the right side."] * 2, references)
    unrelated = embedding_similarity(["The heart size is normal and the lungs are clear."] * 2, references)
    assert 0.5 < paraphrase <= 1.0 and unrelated < paraphrase
