"""BLEU-1..4 and ROUGE-L of every committed medical evaluation with held-out reports (`examples.json`), scored
as R2Gen scores IU X-ray (`domains.medical.metrics.words`: its report cleaning with a '.' token per sentence,
generated reports cut to 60 tokens and references to 59), and as the evaluations computed them before
(lower-case words without punctuation, uncut); each run's `evaluation.json` must hold one of the two (a check that
the reports here are the ones it scored). The README's tables read the R2Gen figures from here: run this again
when a run is added.

    python experiments/results/medical/language_r2gen/recompute.py > experiments/results/medical/language_r2gen/results.json

Sources per run: the model's reports (`generated`), the retrieval baseline's and the VQ-feature retrieval's
training reports (`retrieved`, `retrieved_vq_latents`: study ids read from the Open-i archive), the most common
training report (its study id in `evaluation.json`). Seconds on 1 core.
"""
import json
import re
import sys
from pathlib import Path
from unittest import mock

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent
sys.path.insert(0, str(RESULTS.parents[2]))
from core.provenance import provenance  # noqa: E402
from domains.medical import metrics  # noqa: E402
from domains.medical.reports import find_openi_archive, read_openi, split_studies  # noqa: E402

LANGUAGE = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l")
STUDY = re.compile(r"study (\S+) ")


def first_tokens(hypotheses, references):
    """The tokens the evaluations used before R2Gen's: lower-case words without punctuation, uncut."""
    def tokens(text: str) -> list[str]:
        return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()

    return ((tokens(h), tokens(r)) for h, r in zip(hypotheses, references))


def language(hypotheses: list[str], references: list[str]) -> dict:
    """{metric: value} of LANGUAGE."""
    return {**metrics.bleu(hypotheses, references), "rouge_l": metrics.rouge_l(hypotheses, references)}


studies = {s.study_id: s for s in read_openi(find_openi_archive())}
_, test = split_studies(list(studies.values()), 0.1, 0)
references = [s.report for s in test]
rows = {}
for path in sorted(RESULTS.glob("**/examples.json")):
    folder = path.parent.relative_to(RESULTS).as_posix()
    examples = {e["study"]: e for e in json.loads(path.read_text())}
    if sorted(examples) != sorted(s.study_id for s in test):
        raise SystemExit(f"{folder}/examples.json does not hold the held-out split")
    evaluated = json.loads((path.parent / "evaluation.json").read_text())["image_to_report"]
    sources = {"model": [examples[s.study_id]["generated"] for s in test],
               "retrieval": [studies[STUDY.match(examples[s.study_id]["retrieved"]).group(1)].report for s in test],
               "most_common": [studies[evaluated["most_common_report"]["study"]].report] * len(test)}
    if "retrieved_vq_latents" in examples[test[0].study_id] and "retrieval_vq_features" in evaluated:
        sources["retrieval_vq_features"] = [
            studies[STUDY.match(examples[s.study_id]["retrieved_vq_latents"]).group(1)].report for s in test]
    row = {}
    for name, hypotheses in sources.items():
        with mock.patch.object(metrics, "_token_pairs", first_tokens):
            first = language(hypotheses, references)
        scores = {"r2gen": language(hypotheses, references), "as_first_computed": first}
        recorded = {k: evaluated[name][k] for k in LANGUAGE}
        scored_as = [way for way, values in scores.items() if max(abs(values[k] - recorded[k]) for k in LANGUAGE) < 1e-9]
        if not scored_as:
            raise SystemExit(f"{folder}: {name}'s reports do not reproduce its evaluation.json: {scores} vs {recorded}")
        row[name] = {**scores, "evaluation_json_scored_as": scored_as[-1]}
    rows[folder] = row

print(json.dumps({"provenance": provenance(), "held_out_studies": len(test),
                  "references_over_59_tokens": sum(len(metrics.words(r)) > 59 for r in references),
                  "runs": rows}, indent=1))
