"""A CheXpert-style rule labeler: report text -> findings, each positive, negative or uncertain.

How a report is read (the CheXpert labeler's three stages, with regular expressions in place of its
dependency parse; no well-kept labeler ships offline, hence the hand-written rules):

1. **Mentions**: each finding has phrase patterns (`_MENTIONS`, plurals and inflections included),
   plus a few fixed-meaning phrases ("heart size is normal" is a negative cardiomegaly mention,
   "costophrenic angles are blunted" a positive effusion one).
2. **Classification** of each mention inside its sentence clause (clauses end at "but", "however",
   ";", ", there is" ...): a negation cue before it ("no", "without", "free of", ...) within
   `CUE_WINDOW` words, or after it ("is not seen", "has resolved"), makes it negative; an uncertainty
   cue ("possible", "may", "cannot be excluded", "versus", ...) makes it uncertain; the cue nearest
   the mention wins. Pseudo-negations ("no change in the effusion") are not negations.
3. **Aggregation** over the report: positive if any mention is positive, else uncertain if any is,
   else negative; findings never mentioned are absent. `no_finding` is positive when no finding other
   than support devices is positive or uncertain (CheXpert's convention), negative otherwise.

    labels = label_report("Possible left effusion. No pneumothorax.")
    # {'effusion': -1, 'pneumothorax': 0, 'no_finding': 0}
    present_findings(labels)   # ('effusion',): uncertain counts as present (the U-Ones policy)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from .findings import FINDINGS, is_normal

__all__ = [
    "MESH_TERMS",
    "NEGATIVE",
    "POSITIVE",
    "UNCERTAIN",
    "findings_vector",
    "label_report",
    "mesh_agreement",
    "mesh_findings",
    "present_findings",
    "split_sentences",
]

POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1
CUE_WINDOW = 10  # words between a pre-mention cue and the mention (NegEx uses 5-6; reports list findings)

_MENTIONS: dict[str, tuple[str, ...]] = {
    "cardiomegaly": (
        r"cardiomegaly",
        r"cardiac enlargement",
        r"enlarge\w* (?:of )?(?:the )?(?:heart|cardiac (?:silhouette|shadow))",
        r"(?:heart|cardiac (?:silhouette|shadow|size)|cardiomediastinal silhouette)(?: size)?"
        r" (?:is |are |appears |remains )?(?:\w+ )?(?:enlarged|large|prominent)",
    ),
    "effusion": (
        r"(?<!pericardial )effusions?",
        r"pleural fluid",
        r"hydropneumothora",
        r"(?:blunt\w*|obliterat\w*) (?:of )?(?:the )?(?:\w+ )?(?:costophrenic|cp) (?:angle|sulc)",
        r"(?:costophrenic|cp) (?:angles?|sulc\w*) (?:are |is )?(?:\w+ )?blunt\w*",
    ),
    "pneumothorax": (r"pneumothora(?:x|ces)",),
    "consolidation": (r"consolidat\w*", r"pneumonias?\b"),
    "atelectasis": (
        r"atelecta\w*",
        r"(?:lobar|lobe|lung|segmental) collapse",
        r"collapsed? (?:of )?(?:the )?(?:\w+ ){0,2}(?:lobe|lung)",
        r"volume loss",
    ),
    "edema": (
        r"edema\w*",
        r"(?:vascular|pulmonary|venous) congestion",
        r"congestive heart failure|heart failure|\bchf\b",
        r"kerley",
    ),
    "nodule_mass": (r"nodul\w*", r"\bmass(?:es)?\b", r"(?:lung|pulmonary) lesions?"),
    "opacity": (
        r"opacit(?:y|ies)",
        r"opacification",
        r"infiltrat\w*",
        r"air ?space (?:disease|densit\w*)",
        r"(?<!bone )densit(?:y|ies)",
        r"\bhaz(?:y|iness)\b",
    ),
    "support_devices": (
        r"catheters?",
        r"\b(?:picc|central|venous|subclavian|jugular|dialysis) lines?",
        r"port-?a-?cath|\bport\b",
        r"pacemaker|\bpacer\b|defibrillator|\ba?icd\b",
        r"(?:endotracheal|tracheostomy|nasogastric|orogastric|feeding|enteric|chest|\bng|\bet|\bog) tubes?",
        r"sternotomy",
        r"(?:sternal|surgical) (?:wires?|sutures?|clips?)",
        r"\bclips?\b",
        r"\bstents?\b",
        r"hardware",
        r"prosthe\w*",
        r"valve replacement",
    ),
    "fracture": (r"fractur\w*", r"\bfx\b"),
}

# Phrases whose meaning is fixed, whatever cue surrounds them.
_FIXED: dict[str, tuple[tuple[str, int], ...]] = {
    "cardiomegaly": (
        (r"(?:heart|cardiac)(?: \w+){0,6} (?:upper limits? of normal|borderline)", UNCERTAIN),
        (r"borderline (?:\w+ )?(?:heart|cardiac|cardiomegaly)", UNCERTAIN),
        (r"(?:heart|cardiac|cardiomediastinal)(?: \w+){0,6} (?:normal|within normal limits|unremarkable)", NEGATIVE),
        (r"normal (?:\w+ )?(?:heart|cardiac|cardiomediastinal)", NEGATIVE),
    ),
    "effusion": ((r"(?:costophrenic|cp) (?:angles?|sulc\w*) (?:are |is )?(?:\w+ )?(?:sharp|clear|preserved|normal)", NEGATIVE),),
}

_NEGATION_BEFORE = re.compile(
    r"\b(?:no|not|without|negative for|free of|clear of|absence of|absent|resolution of|resolved|removal of|nor|neither)\b"
)
_NEGATION_AFTER = re.compile(
    r"\b(?:(?:is|are|was|were|has been|have been) (?:not|no longer)\b|(?:has |have )?resolved|not (?:seen|present|identified|"
    r"visualized|demonstrated|evident|appreciated)|absent|removed|no longer)"
)
_UNCERTAINTY = re.compile(
    r"\b(?:possib\w*|probab\w*|may|might|could|questionabl\w*|question of|suspicious for|suspect\w*|concerning for|"
    r"(?<!to )suggest\w*|(?:cannot|can not|could not|not) (?:be )?(?:exclude\w*|ruled? out)|versus|vs|likely|equivocal|"
    r"indeterminate|borderline|differential|consider\w*|raises? the possibility|worrisome for)\b"
)
_PSEUDO_NEGATION = re.compile(
    r"\b(?:no (?:significant |interval |appreciable |substantial )?(?:change|increase|decrease|worsening|improvement)|"
    r"not (?:significantly )?(?:changed|increased|decreased)|not only)\b"
)
_CLAUSE_BREAK = re.compile(
    r"\b(?:but|however|although|though|except|aside from|apart from|other than|otherwise|whereas|which|"
    r"with the exception of)\b|[;:]|,? and there (?:is|are)\b|, (?:there|the|a|an)\b"
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_COMPILED = {
    name: [(re.compile(pattern), None) for pattern in patterns] + [(re.compile(p), s) for p, s in _FIXED.get(name, ())]
    for name, patterns in _MENTIONS.items()
}


def label_report(text: str) -> dict[str, int]:
    """Report text -> {finding: 1 positive | 0 negative | -1 uncertain}; unmentioned findings are absent.

    `no_finding` is always present (1 or 0). Raises ValueError on empty text.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("label_report: the report text is empty")
    statuses: dict[str, list[int]] = {}
    for sentence in split_sentences(text.lower()):
        for name, status in _sentence_mentions(sentence):
            statuses.setdefault(name, []).append(status)
    labels = {
        name: POSITIVE if POSITIVE in found else UNCERTAIN if UNCERTAIN in found else NEGATIVE
        for name in FINDINGS
        if (found := statuses.get(name))
    }
    asserted = [name for name in FINDINGS if labels.get(name) in (POSITIVE, UNCERTAIN)]
    labels["no_finding"] = POSITIVE if is_normal(asserted) else NEGATIVE
    return labels


def split_sentences(text: str) -> list[str]:
    """Report text -> its sentences as the labeler reads them (split after . ! ? and at line breaks),
    blank ones dropped: a report's labels aggregate its sentences' (`label_report`)."""
    return [sentence for sentence in _SENTENCE.split(text) if sentence.strip()]


def _sentence_mentions(sentence: str) -> list[tuple[str, int]]:
    breaks = [match.end() for match in _CLAUSE_BREAK.finditer(sentence)]
    mentions = []
    for name, patterns in _COMPILED.items():
        taken: list[tuple[int, int]] = []
        for pattern, fixed in sorted(patterns, key=lambda item: item[1] is None):  # fixed phrases claim their span first
            for match in pattern.finditer(sentence):
                if any(match.start() < end and start < match.end() for start, end in taken):
                    continue  # one mention per span ("airspace opacity" is one opacity)
                taken.append(match.span())
                start = max([b for b in breaks if b <= match.start()], default=0)
                stop = min([b for b in breaks if b > match.end()], default=len(sentence))
                status = fixed if fixed is not None else _classify(sentence[start : match.start()], sentence[match.end() : stop])
                mentions.append((name, status))
    return mentions


def _classify(before: str, after: str) -> int:
    """Status of a mention from its clause: the text before it and the text after it."""
    before = " ".join(before.split()[-CUE_WINDOW:])
    before = _PSEUDO_NEGATION.sub(lambda m: " " * len(m.group()), before)
    uncertain = [m.end() for m in _UNCERTAINTY.finditer(before)]
    masked = _UNCERTAINTY.sub(lambda m: " " * len(m.group()), before)  # "can not exclude" is not a negation
    negated = [m.end() for m in _NEGATION_BEFORE.finditer(masked)]
    if uncertain or negated:
        return UNCERTAIN if max(uncertain, default=-1) > max(negated, default=-1) else NEGATIVE
    after = _PSEUDO_NEGATION.sub(" ", after)
    if _UNCERTAINTY.search(after):
        return UNCERTAIN
    if _NEGATION_AFTER.search(after):
        return NEGATIVE
    return POSITIVE


def present_findings(labels: dict[str, int], uncertain_as_positive: bool = True) -> tuple[str, ...]:
    """Findings a report asserts (positive, and uncertain unless told otherwise), in `FINDINGS` order.

    `no_finding` is present exactly when no finding other than support devices is.
    """
    keep = (POSITIVE, UNCERTAIN) if uncertain_as_positive else (POSITIVE,)
    present = {name for name, status in labels.items() if status in keep and name != "no_finding"}
    if is_normal(present):  # recomputed: under U-Zeros an uncertain-only report is normal
        present.add("no_finding")
    return tuple(name for name in FINDINGS if name in present)


def findings_vector(labels: dict[str, int], uncertain_as_positive: bool = True) -> np.ndarray:
    """Labels -> (len(FINDINGS),) float32 multi-hot of `present_findings`."""
    present = set(present_findings(labels, uncertain_as_positive))
    return np.array([name in present for name in FINDINGS], dtype=np.float32)


# ----------------------------------------------------------------------------------- MeSH validation

# Open-i's manual MeSH "major" terms (the heading before the first '/') that name each finding.
MESH_TERMS: dict[str, tuple[str, ...]] = {
    "no_finding": ("normal",),
    "cardiomegaly": ("cardiomegaly",),
    "effusion": ("pleural effusion", "hydropneumothorax"),
    "pneumothorax": ("pneumothorax", "hydropneumothorax"),
    "consolidation": ("consolidation", "pneumonia"),
    "atelectasis": ("pulmonary atelectasis", "atelectasis"),
    "edema": ("pulmonary edema", "pulmonary congestion", "heart failure"),
    "nodule_mass": ("nodule", "mass"),
    "opacity": ("opacity", "airspace disease", "infiltrate", "density"),
    "support_devices": (
        "catheters, indwelling",
        "implanted medical device",
        "tube, inserted",
        "medical device",
        "stents",
        "surgical instruments",
    ),
    "fracture": ("fractures, bone", "fracture"),
}


def mesh_findings(mesh_terms: Iterable[str]) -> set[str]:
    """Open-i MeSH major terms (e.g. 'pleural effusion/left/small') -> the set of findings they name."""
    heads = {term.split("/")[0].strip().lower() for term in mesh_terms}
    found = {name for name, terms in MESH_TERMS.items() if heads & set(terms)}
    # "costophrenic angle/.../blunted" is how Open-i indexes a small effusion
    if any(term.lower().startswith("costophrenic angle") and "blunted" in term.lower() for term in mesh_terms):
        found.add("effusion")
    return found


def mesh_agreement(studies: Sequence, uncertain_as_positive: bool = True) -> dict[str, dict[str, float]]:
    """Per finding, the labeler (on each study's report) against Open-i's MeSH terms as reference.

    studies: objects with `.labels` (labeler output) and `.mesh` (MeSH major terms); studies without
    MeSH terms or indexed 'no indexing' are skipped. Returns {finding: {n_mesh, n_labeler, precision,
    recall, f1, kappa}} plus a 'macro' entry averaging precision/recall/f1/kappa over findings.
    """
    rows = [s for s in studies if s.mesh and not any(t.startswith("no indexing") for t in s.mesh)]
    if not rows:
        raise ValueError("mesh_agreement: no study carries MeSH terms (Open-i reports do)")
    from .metrics import multilabel_f1  # not at the top: metrics reads reports through this module

    reference = np.array([[name in mesh_findings(s.mesh) for name in FINDINGS] for s in rows])
    predicted = np.array([findings_vector(s.labels, uncertain_as_positive) > 0 for s in rows])
    scores, table = multilabel_f1(predicted, reference)["per_finding"], {}
    for column, name in enumerate(FINDINGS):
        ref, pred = reference[:, column], predicted[:, column]
        observed = float((ref == pred).mean())
        chance = float(ref.mean() * pred.mean() + (1 - ref.mean()) * (1 - pred.mean()))
        kappa = (observed - chance) / (1 - chance) if chance < 1 else 1.0
        table[name] = {"n_mesh": int(ref.sum()), "n_labeler": int(pred.sum()),
                       **{key: scores[name][key] for key in ("precision", "recall", "f1")}, "kappa": kappa}
    table["macro"] = {key: float(np.mean([table[n][key] for n in FINDINGS])) for key in ("precision", "recall", "f1", "kappa")}
    table["macro"]["n_studies"] = len(rows)
    return table
