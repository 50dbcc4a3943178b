"""The bidirectional chest X-ray model: one backbone that draws an image for a report and writes a
report for an image (the sequences of `domains.medical.dataset`).

    model = MedicalModel.load("runs/medical/final")
    images = model.draw(["Moderate cardiomegaly. Small left pleural effusion."], cfg_scale=3.0)  # (1, 1, 64, 64)
    images = model.draw(None, findings=[["cardiomegaly"]])  # from findings alone
    images = model.draw(None, findings=[["effusion"]], candidates=4)  # the best of 4 by the model's own reading
    tries, likelihood = model.candidate_draws(None, findings=[["effusion"]], candidates=4)  # all 4: (4, 1, 1, 64, 64), (4, 1)
    reports = model.read(images)                                                                # ['...']
    findings, reports = model.read_findings(images)         # [('cardiomegaly', 'effusion')], ['...']
    reports = model.write([["cardiomegaly"], []])          # a report for each findings list
    search = model.write_search([["cardiomegaly"]])        # its .first try, .best try and .composed report

Drawing, the labeler reads the report's findings and they join the condition (or pass `findings=`
to override them; `draw_from="findings"` draws from the findings alone, without the report text);
with `candidates` the model draws several images and keeps the one in which its own reader finds
those findings most likely (`findings_log_likelihood`: the reading direction checks the drawing one);
reading, the model decides each pathology's finding token first (present when its probability
exceeds `threshold`) and writes the report from them (`write`: findings -> report). It reads each
image at `read_phases` x `read_phases` shifts of the code grid and averages the findings' log-odds
over them: a VQ code covers a 4 x 4 pixel patch, so a small nodule or consolidation can fall apart
between codes at one alignment and show at another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from core.generation import SamplingConfig, generate
from core.stages import Stages
from core.tokenizers import Tokenizers

from .dataset import (FINDINGS_BINS, IMAGE, check_medical_tokenizers, domain_tag, findings_present, findings_segment,
                      image_segment, present_pathologies, report_segment)
from .findings import PATHOLOGIES, check_findings, named
from .labeler import NEGATIVE, label_report, split_sentences

__all__ = ["DRAW_CANDIDATES", "DRAW_FROM", "READ_PHASES", "REPORT_CANDIDATES", "REPORT_CFG_SCALE", "REPORT_FROM", "MedicalModel",
           "ReportSearch", "check_choice", "choose_draw", "compose_report", "phase_shifts", "shift_images"]

REPORT_CFG_SCALE = 2.0  # guidance of findings -> report away from the normal chest's report (see `write`)
REPORT_CANDIDATES = 32  # reports tried per findings set until the labeler reads those findings in one (see `write`)
READ_PHASES = 2  # code-grid alignments per axis an image is read at (see `MedicalModel.findings_probabilities`)
CANDIDATE_TEMPERATURE = 0.7  # sampling temperature of the candidates after the first
DRAW_FROM = ("findings", "report")  # what an image is drawn from (`MedicalModel.draw`)
DRAW_CANDIDATES = 1  # images drawn per report, the one the model's reader finds the findings in kept (`draw`)
REPORT_FROM = ("findings", "image")  # what a report is written from (`MedicalModel.read_findings`)
# Rows at once where a method's batch_size is None. Reading runs each image's prompt at every alignment in one
# forward pass, whose cost grows with the rows; drawing and writing generate token by token, each step's cost
# mostly fixed at these sizes, so fewer, bigger batches are faster (README, Benchmarks).
READ_BATCH = 32
DECODE_BATCH = 256


@dataclass(frozen=True)
class ReportSearch:
    """The reports `MedicalModel.write_search` found, one per findings list, at each stage of the search."""

    first: list[str]  # the first try (greedy unless sampled)
    best: list[str]  # the try the labeler reads the fewest disagreements with the findings in (earliest on ties)
    composed: list[str]  # `best`, or where it still disagrees, built from all tries' sentences when that disagrees less


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise a ValueError naming `name` unless `value` is one of `choices` (e.g. `DRAW_FROM`)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def phase_shifts(patch: int, phases: int) -> list[tuple[int, int]]:
    """(dy, dx) pixel shifts that put the code grid at `phases` evenly spaced alignments per axis within
    one `patch`-pixel code: phase_shifts(4, 2) -> [(0, 0), (0, 2), (2, 0), (2, 2)]; (0, 0) first."""
    if not 1 <= phases <= patch:
        raise ValueError(f"read_phases must lie in [1, {patch}] (the pixels per code side), got {phases}")
    offsets = [round(k * patch / phases) for k in range(phases)]
    return [(dy, dx) for dy in offsets for dx in offsets]


def shift_images(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Images (B, C, S, S) moved down by dy and right by dx pixels, the top and left edges repeated."""
    if dy == dx == 0:
        return images
    size = images.shape[-2:]
    padded = torch.nn.functional.pad(images, (dx, 0, dy, 0), mode="replicate")
    return padded[..., : size[0], : size[1]]


def _draw_from(draw_from: str | None, has_report: bool) -> str:
    """What an image is drawn from: as given, else "report" when there is one and "findings" without."""
    draw_from = draw_from or ("report" if has_report else "findings")
    check_choice("draw_from", draw_from, DRAW_FROM)
    return draw_from


class MedicalModel:
    """A fine-tuned backbone + its tokenizers (report BPE, chest X-ray VQVAE).

    read_phases: code-grid alignments per axis each image is read at (1: as given; `phase_shifts`); progress:
    show a progress bar over the batches of each call that has more than one (drawing, reading, the reader's
    likelihoods, writing), and one over `write_search`'s tries (up to `candidates`; it stops early once every
    report says its findings). Every method's batch_size: the images or reports processed at once, None for
    `READ_BATCH` images read and `DECODE_BATCH` rows drawn or written token by token (a guided draw's KV
    cache holds 2 x rows x layers x 2 x sequence length x d_model floats: lower it for large models)."""

    def __init__(self, model, tokenizers: Tokenizers, max_report_tokens: int = 128, read_phases: int = READ_PHASES,
                 progress: bool = False):
        self.model, self.tokenizers, self.progress = model.eval(), tokenizers, progress
        self.vocab = tokenizers.vocab
        self.max_report_tokens = max_report_tokens
        self.vq = tokenizers.images[IMAGE]
        self.image_size = self.vq.config.image_size
        self.read_phases, self.shifts = read_phases, phase_shifts(self.vq.config.downsampling, read_phases)

    @classmethod
    def load(cls, directory: str | Path, **kwargs) -> "MedicalModel":
        """Load an exported model folder (`final/` of `uwm finetune medical`); max_report_tokens defaults to its
        training data's."""
        from core.pretrained import load_pretrained, training_data_meta

        model, tokenizers = load_pretrained(directory)
        if "max_report_tokens" in (meta := training_data_meta(directory)):
            kwargs.setdefault("max_report_tokens", meta["max_report_tokens"])
        check_medical_tokenizers(tokenizers, str(directory))
        return cls(model, tokenizers, **kwargs)

    @staticmethod
    def _batch_size(batch_size: int | None, default: int) -> int:
        """`batch_size` where given (>= 1), else `default`."""
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (or None for the default), got {batch_size}")
        return default if batch_size is None else batch_size

    def _batches(self, batches, desc: str, total: int | None = None):
        """`batches` (a sized iterable, or one of `total` items), with a progress bar where `self.progress` is set
        and there is more than one."""
        total = len(batches) if total is None else total
        return tqdm(batches, desc=desc, total=total, disable=not self.progress or total <= 1, leave=False)

    def _ids(self, *segments) -> torch.Tensor:
        return torch.cat([torch.tensor([self.vocab.special("<bos>")]), *[s.tokens for s in segments]])

    # --- report -> image ----------------------------------------------------------------------
    def draw_prompt(self, report: str | None, findings=None, draw_from: str | None = None) -> torch.Tensor:
        """(T,) ids up to and including `<img>`: the draw's report and findings (draw_from "report",
        the default with a report) or the findings draw's `<findings> f </findings>` (draw_from
        "findings", the default without); report and findings None give the unconditional prompt
        (one `<null>` per condition segment).

        findings: pathology names; default: the labeler's reading of the report (uncertain = present)."""
        draw_from = _draw_from(draw_from, report is not None)
        opening = torch.tensor([self.vocab.special("<img>")])
        segments = 1 if draw_from == "findings" else 2
        if report is None and findings is None:  # what build_example(drop_conditions=True) leaves of them
            condition = torch.tensor([self.vocab.special("<null>")] * segments)
        else:
            if report is not None and not report.strip():
                raise ValueError("draw: the report is empty")
            if findings is None:
                findings = present_pathologies(label_report(report))
            condition = findings_segment(self.tokenizers, findings).tokens
            if draw_from == "report":
                if report is None:
                    raise ValueError("draw: draw_from='report' needs the report")
                ids = self.tokenizers.encode_text(report)[: self.max_report_tokens]
                condition = torch.cat([report_segment(self.tokenizers, ids).tokens, condition])
        return torch.cat([self._ids(domain_tag(self.tokenizers)), condition, opening])

    @torch.no_grad()
    def draw(self, reports: list[str] | None, cfg_scale: float = 3.0, temperature: float = 1.0, top_k: int = 0,
             batch_size: int | None = None, generator: torch.Generator | None = None, findings: list | None = None,
             draw_from: str | None = None, candidates: int = DRAW_CANDIDATES) -> torch.Tensor:
        """Reports -> chest X-rays (B, 1, S, S) in [0, 1]; classifier-free guidance at `cfg_scale` (1 = none).

        findings: one list of pathology names per report, instead of the labeler's reading of it
        (reports None: draw from these findings alone); draw_from: "report" (the default with
        reports) draws from the report and its findings (the draw sequence), "findings" (the
        default without) from the findings alone (the findings-draw sequence); candidates: images
        drawn per report, keeping the one in which the model's own reader finds the findings it was
        drawn for most likely (`candidate_draws`); the first is what `candidates=1` draws from the
        same generator."""
        tries, likelihood = self.candidate_draws(reports, cfg_scale, temperature, top_k, batch_size, generator, findings,
                                                 draw_from, candidates)
        return choose_draw(tries, likelihood)

    @torch.no_grad()
    def candidate_draws(self, reports: list[str] | None, cfg_scale: float = 3.0, temperature: float = 1.0,
                        top_k: int = 0, batch_size: int | None = None, generator: torch.Generator | None = None,
                        findings: list | None = None, draw_from: str | None = None,
                        candidates: int = DRAW_CANDIDATES,
                        stages: Stages | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Reports -> (K, B, 1, S, S) images, `candidates` = K per report drawn in K passes over them (arguments
        as `draw`), and (K, B) the log-likelihood of the findings each was drawn for under the model's own
        reader (`findings_log_likelihood`; None where K = 1, which needs no choice). stages: keeps each pass
        and the likelihoods as they finish (`core.stages.Stages`), so that a stopped run resumes after them."""
        draw_from = _draw_from(draw_from, reports is not None)
        if reports is None and findings is None:
            raise ValueError("draw: give reports, findings or both")
        if reports is not None and findings is not None and len(findings) != len(reports):
            raise ValueError(f"draw: {len(findings)} findings lists for {len(reports)} reports")
        if candidates < 1:
            raise ValueError(f"draw: candidates must be >= 1, got {candidates}")
        count = len(reports if reports is not None else findings)
        reports = reports if reports is not None else [None] * count
        findings = findings if findings is not None else [None] * count
        prompts = [self.draw_prompt(r, f, draw_from) for r, f in zip(reports, findings)]
        if not prompts:
            return torch.empty(candidates, 0, 1, self.image_size, self.image_size), None
        sampling = SamplingConfig(temperature=temperature, top_k=top_k)
        null = self.draw_prompt(None, None, draw_from)
        run = stages if stages is not None else Stages(None)
        tries = torch.stack([run(f"pass_{k}", lambda: self._draw(prompts, null, cfg_scale, sampling, batch_size, generator),
                                 generator) for k in range(candidates)])
        if candidates == 1:
            return tries, None
        wanted = [f if f is not None else present_pathologies(label_report(r)) for r, f in zip(reports, findings)]
        return tries, run("likelihood", lambda: torch.stack([self.findings_log_likelihood(images, wanted, batch_size)
                                                             for images in tries]))

    def _draw(self, prompts: list[torch.Tensor], null: torch.Tensor, cfg_scale: float, sampling: SamplingConfig,
              batch_size: int | None, generator) -> torch.Tensor:
        """One image (B, 1, S, S) per draw prompt, in batches, guided against `null` (`draw` without candidates)."""
        out, batch_size = [], self._batch_size(batch_size, DECODE_BATCH)
        for start in self._batches(range(0, len(prompts), batch_size), "medical draw"):
            chunk = prompts[start : start + batch_size]
            uncond = [null] * len(chunk) if cfg_scale != 1.0 else None
            codes = generate(self.model, chunk, self.vq.config.num_tokens, pad_id=self.vocab.special("<pad>"),
                             sampling=sampling, allowed=self.vocab[IMAGE], cfg_scale=cfg_scale, uncond_prompts=uncond,
                             generator=generator)
            out.append(self.tokenizers.decode_image(IMAGE, codes))
        return torch.cat(out)

    # --- image -> report ----------------------------------------------------------------------
    def read_prompt(self, codes: torch.Tensor) -> torch.Tensor:
        """(N,) global image ids -> (T,) ids up to and including `<findings>`."""
        opening = torch.tensor([self.vocab.special("<findings>")])
        return torch.cat([self._ids(domain_tag(self.tokenizers), image_segment(self.tokenizers, codes)), opening])

    def _thresholds(self, threshold) -> torch.Tensor:
        """One number, one per pathology (`PATHOLOGIES` order) or {pathology: threshold} -> (P,)."""
        if isinstance(threshold, dict):
            missing = [name for name in PATHOLOGIES if name not in threshold]
            if missing:
                raise ValueError(f"findings thresholds lack {missing}")
            threshold = [threshold[name] for name in PATHOLOGIES]
        thresholds = torch.as_tensor(threshold, dtype=torch.float32).flatten()
        if thresholds.numel() not in (1, len(PATHOLOGIES)):
            raise ValueError(f"findings thresholds: expected one number or {len(PATHOLOGIES)}, one per pathology in "
                             f"the order {', '.join(PATHOLOGIES)}; got {thresholds.numel()}")
        thresholds = thresholds.expand(len(PATHOLOGIES))
        if not bool(((thresholds >= 0) & (thresholds <= 1)).all()):
            raise ValueError(f"findings threshold(s) must lie in [0, 1], got {threshold}")
        return thresholds

    def _read_prompts(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Images (B, 1, S, S) -> B * K read prompts (`read_prompt`), the K = len(self.shifts) alignments of
        each image in a row, the image as given first."""
        shifted = torch.stack([shift_images(images, dy, dx) for dy, dx in self.shifts], 1).flatten(0, 1)
        return [self.read_prompt(codes) for codes in self.tokenizers.encode_image(IMAGE, shifted)]

    def _findings_pass(self, prompts: list[torch.Tensor], present) -> tuple[torch.Tensor, torch.Tensor]:
        """Read the pathologies one token at a time from the B * K prompts of `_read_prompts`: `present(step,
        log_odds)` -> (B,) bool decides pathology `step` for all K alignments of each image from the log-odds
        of its `present` token (B,), averaged over them. (B * K, P) global ids and (B, P) the averaged
        log-odds (one prefill, then one cached step each)."""
        start, k = self.vocab[FINDINGS_BINS].start, len(self.shifts)
        pairs = [(start + 2 * j, start + 2 * j + 2) for j in range(len(PATHOLOGIES))]  # (absent, present) ids
        log_odds = []

        def decide(step: int, logits: torch.Tensor) -> torch.Tensor:
            absent = pairs[step][0]
            odds = (logits[:, absent + 1] - logits[:, absent]).float().view(-1, k).mean(1)  # (B,)
            log_odds.append(odds)
            return absent + present(step, odds).long().repeat_interleave(k)

        ids = generate(self.model, prompts, len(pairs), pad_id=self.vocab.special("<pad>"), allowed=pairs,
                       choose=decide)
        return ids, torch.stack(log_odds, 1)

    def _findings_tokens(self, prompts: list[torch.Tensor], thresholds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`_findings_pass` deciding each pathology present above its threshold (P,): (B * K, P) global ids and
        (B, P) probabilities of `present`."""
        ids, log_odds = self._findings_pass(prompts, lambda step, odds: torch.sigmoid(odds) > thresholds[step])
        return ids, torch.sigmoid(log_odds)

    @torch.no_grad()
    def findings_log_likelihood(self, images: torch.Tensor, findings: list, batch_size: int | None = None) -> torch.Tensor:
        """Chest X-rays (B, 1, S, S) in [0, 1] and one list of pathology names per image -> (B,) the log-probability
        the model's reader gives exactly those findings: each pathology present or absent as listed, read in
        `PATHOLOGIES` order after the earlier ones as listed, its log-odds averaged over the image's
        code-grid alignments (`read_phases`)."""
        self._check_images(images)
        if len(findings) != len(images):
            raise ValueError(f"findings_log_likelihood: {len(findings)} findings lists for {len(images)} images")
        wanted = torch.tensor([[name in check_findings(names, "findings_log_likelihood") for name in PATHOLOGIES]
                               for names in findings], dtype=torch.bool).view(-1, len(PATHOLOGIES))
        out, batch_size = [], self._batch_size(batch_size, READ_BATCH)
        chunks = images.split(batch_size)
        for chunk, rows in self._batches(zip(chunks, wanted.split(batch_size)), "medical reader likelihood", len(chunks)):
            _, log_odds = self._findings_pass(self._read_prompts(chunk), lambda step, odds: rows[:, step])
            out.append(torch.nn.functional.logsigmoid(torch.where(rows, log_odds, -log_odds)).sum(1))
        return torch.cat(out) if out else torch.empty(0)

    def _check_images(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or tuple(images.shape[1:]) != (1, self.image_size, self.image_size):
            raise ValueError(f"read: expected images (B, 1, {self.image_size}, {self.image_size}), got {tuple(images.shape)}")

    @torch.no_grad()
    def findings_probabilities(self, images: torch.Tensor, threshold=0.5, batch_size: int | None = None) -> torch.Tensor:
        """Chest X-rays (B, 1, S, S) in [0, 1] -> (B, P) probability of each pathology's `present` token
        (`PATHOLOGIES` order; each conditioned on the earlier ones, decided at `threshold`; log-odds
        averaged over the image's code-grid alignments, `read_phases`)."""
        self._check_images(images)
        thresholds, out = self._thresholds(threshold), []
        chunks = images.split(self._batch_size(batch_size, READ_BATCH))
        for chunk in self._batches(chunks, "medical findings probabilities"):
            out.append(self._findings_tokens(self._read_prompts(chunk), thresholds)[1])
        return torch.cat(out) if out else torch.empty(0, len(PATHOLOGIES))

    @torch.no_grad()
    def read_findings(self, images: torch.Tensor, threshold=0.5, temperature: float = 0.0,
                      cfg_scale: float = REPORT_CFG_SCALE, batch_size: int | None = None,
                      generator: torch.Generator | None = None, report_from: str = "findings",
                      candidates: int = REPORT_CANDIDATES) -> tuple[list[tuple[str, ...]], list[str]]:
        """Chest X-rays (B, 1, S, S) in [0, 1] -> (findings, reports): the pathologies the model states
        (present above `threshold`: one number, one per pathology or {pathology: threshold}) and the
        report it writes (greedy unless `temperature` > 0) from them: report_from "findings" writes from
        the stated findings alone (`write`, guided at `cfg_scale`, up to `candidates` tries), "image"
        after the image and the findings (the read sequence, unguided, one try)."""
        check_choice("report_from", report_from, REPORT_FROM)
        self._check_images(images)
        thresholds = self._thresholds(threshold)
        bridge = torch.tensor([self.vocab.special("</findings>"), self.vocab.special("<report>")])
        findings, read = [], []  # read: each image's sequence up to `<report>` (its codes, findings, bridge)
        for chunk in self._batches(images.split(self._batch_size(batch_size, READ_BATCH)), "medical read"):
            prompts = self._read_prompts(chunk)
            tokens, _ = self._findings_tokens(prompts, thresholds)
            prompts, tokens = prompts[:: len(self.shifts)], tokens[:: len(self.shifts)]  # the image as given
            present = findings_present(self.tokenizers, tokens)
            findings += [named(row, PATHOLOGIES) for row in present.tolist()]
            read += [torch.cat([p, t, bridge]) for p, t in zip(prompts, tokens)] if report_from == "image" else []
        if report_from == "findings":
            return findings, self.write(findings, temperature, cfg_scale, batch_size, generator, candidates)
        return findings, self._batched_reports(read, temperature, generator, batch_size)  # wider batches than read

    def read(self, images: torch.Tensor, **kwargs) -> list[str]:
        """Chest X-rays (B, 1, S, S) in [0, 1] -> reports (`read_findings` without the findings)."""
        return self.read_findings(images, **kwargs)[1]

    # --- findings -> report -------------------------------------------------------------------
    def write_prompt(self, findings) -> torch.Tensor:
        """Pathology names -> (T,) ids of the write sequence up to and including `<report>`."""
        return torch.cat([self._ids(domain_tag(self.tokenizers), findings_segment(self.tokenizers, findings)),
                          torch.tensor([self.vocab.special("<report>")])])

    @torch.no_grad()
    def write(self, findings: list, temperature: float = 0.0, cfg_scale: float = REPORT_CFG_SCALE,
              batch_size: int | None = None, generator: torch.Generator | None = None,
              candidates: int = REPORT_CANDIDATES, compose: bool = True) -> list[str]:
        """One list of pathology names per report (empty: a normal chest) -> the reports the model writes
        from them (greedy unless `temperature` > 0), guided at `cfg_scale` away from the normal chest's
        report (the unconditional branch is the prompt with no finding present; 1 = no guidance).

        Where the labeler reads other pathologies in a report than it was written for, up to
        `candidates` - 1 more are tried and the one with the fewest disagreements is kept, so the report
        says what was asked for (`write_search`); 1 = the first report only. Where no try says exactly
        the findings, `compose` (the default) builds the report from the tries' sentences instead when
        that disagrees less (`compose_report`): a rare finding the writer seldom saw next to the
        others is then said in a sentence of its own."""
        search = self.write_search(findings, temperature, cfg_scale, batch_size, generator, candidates)
        return search.composed if compose else search.best

    @torch.no_grad()
    def write_search(self, findings: list, temperature: float = 0.0, cfg_scale: float = REPORT_CFG_SCALE,
                     batch_size: int | None = None, generator: torch.Generator | None = None,
                     candidates: int = REPORT_CANDIDATES) -> ReportSearch:
        """`write`'s search, every stage of it kept: the first report per findings list; then, for those
        the labeler reads other pathologies in, up to `candidates` - 1 more sampled at
        `CANDIDATE_TEMPERATURE` (from `generator`, else from a fixed seed), only the ones still missed
        tried again, the fewest disagreements kept; then composed (`compose_report`) where none agrees."""
        if candidates < 1:
            raise ValueError(f"write: candidates must be >= 1, got {candidates}")
        sets = [tuple(name for name in check_findings(names, "write") if name in PATHOLOGIES) for names in findings]
        if temperature == 0:  # greedy: equal findings give equal reports, so each distinct set is written once
            distinct = list(dict.fromkeys(sets))
            written = dict(zip(distinct, self._write(distinct, temperature, cfg_scale, batch_size, generator)))
            first = [written[key] for key in sets]
        else:
            first = self._write(sets, temperature, cfg_scale, batch_size, generator)
        if candidates == 1:
            return ReportSearch(first, first, first)
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        best = list(first)
        misses = [_disagreements(report, wanted) for report, wanted in zip(first, sets)]
        others = [[] for _ in first]  # every try after the first, per report
        for _ in self._batches(range(candidates - 1), "medical report tries"):
            pending = [i for i, miss in enumerate(misses) if miss]
            if not pending:
                break
            tried = self._write([sets[i] for i in pending], CANDIDATE_TEMPERATURE, cfg_scale, batch_size, generator)
            for i, report in zip(pending, tried):
                others[i].append(report)
                miss = _disagreements(report, sets[i])
                if miss < misses[i]:
                    best[i], misses[i] = report, miss
        composed = [compose_report([report, *tries], wanted) if miss else report
                    for report, tries, wanted, miss in zip(best, others, sets, misses)]
        return ReportSearch(first, best, composed)

    def _write(self, findings: list, temperature: float, cfg_scale: float, batch_size: int | None,
               generator) -> list[str]:
        """One report per findings list, in batches (`write` without the candidate search)."""
        return self._batched_reports([self.write_prompt(names) for names in findings], temperature, generator,
                                     batch_size, cfg_scale, self.write_prompt(()))

    def _batched_reports(self, prompts: list[torch.Tensor], temperature: float, generator, batch_size: int | None,
                         cfg_scale: float = 1.0, uncond: torch.Tensor | None = None) -> list[str]:
        """`_reports` of the prompts in batches of `batch_size` (None: `DECODE_BATCH`), each guided against
        `uncond` (one prompt for all) at `cfg_scale`."""
        reports, batch_size = [], self._batch_size(batch_size, DECODE_BATCH)
        for start in self._batches(range(0, len(prompts), batch_size), "medical write"):
            chunk = prompts[start : start + batch_size]
            reports += self._reports(chunk, temperature, generator, cfg_scale,
                                     [uncond] * len(chunk) if uncond is not None else None)
        return reports

    def _reports(self, prompts: list[torch.Tensor], temperature: float, generator, cfg_scale: float = 1.0,
                 uncond: list[torch.Tensor] | None = None) -> list[str]:
        """Prompts ending in `<report>` -> the report texts generated up to `</report>` (guided against
        `uncond` prompts at `cfg_scale`)."""
        close = self.vocab.special("</report>")
        longest = max(len(p) for p in prompts + (uncond or []))
        room = self.model.config.max_seq_len - longest  # the report ends within the context
        tokens = generate(self.model, prompts, min(self.max_report_tokens + 1, room), pad_id=self.vocab.special("<pad>"),
                          sampling=SamplingConfig(temperature=temperature), allowed=self.vocab.mask("text", "</report>"),
                          eos_id=close, generator=generator, cfg_scale=cfg_scale,
                          uncond_prompts=uncond if cfg_scale != 1.0 else None)
        reports = []
        for row in tokens:
            ends = torch.nonzero(row == close).flatten()
            reports.append(self.tokenizers.decode_text(row[: int(ends[0])] if ends.numel() else row).strip())
        return reports


def choose_draw(tries: torch.Tensor, likelihood: torch.Tensor | None) -> torch.Tensor:
    """`candidate_draws`' (K, B, 1, S, S) images and (K, B) likelihoods -> (B, 1, S, S): per report, the most
    likely draw (the first where likelihood is None)."""
    if likelihood is None:
        return tries[0]
    return tries[likelihood.argmax(0), torch.arange(tries.shape[1])]


def _disagreements(report: str, findings: tuple[str, ...]) -> int:
    """How many pathologies the labeler reads differently in `report` than `findings` (present ones) say;
    an empty report (the model closed it at once) counts as worse than any written one."""
    if not report.strip():
        return len(PATHOLOGIES) + 1
    return len(set(present_pathologies(label_report(report))) ^ set(findings))


def compose_report(candidates: list[str], findings) -> str:
    """Reports written for `findings` (pathology names), the best first -> the first one, or the report
    made of their sentences where the labeler reads fewer disagreements with `findings` in that: the
    first report's sentences that assert nothing unwanted and deny nothing wanted, then, for each
    wanted pathology still unsaid, the first such sentence of the others that says it (in their order).

        compose_report(["The heart is enlarged. No pneumothorax.", "Small right pneumothorax."],
                       ["cardiomegaly", "pneumothorax"])  # 'The heart is enlarged. Small right pneumothorax.'
    """
    wanted = set(findings)

    def said(sentence: str) -> set[str] | None:
        """The wanted pathologies a sentence asserts; None if it asserts an unwanted one or denies a wanted one."""
        labels = label_report(sentence)
        asserted = set(present_pathologies(labels))
        denied = {name for name, status in labels.items() if status == NEGATIVE and name in wanted}
        return asserted if asserted <= wanted and not denied else None

    first, *others = candidates
    kept, covered = [], set()
    for sentence in split_sentences(first):
        if (asserted := said(sentence)) is not None:
            kept.append(sentence)
            covered |= asserted
    for sentence in (sentence for report in others for sentence in split_sentences(report)):
        if covered == wanted:
            break
        if (asserted := said(sentence)) is not None and asserted - covered:
            kept.append(sentence)
            covered |= asserted
    composed = " ".join(s.strip() if s.strip()[-1] in ".!?" else s.strip() + "." for s in kept)
    if composed and _disagreements(composed, tuple(findings)) < _disagreements(first, tuple(findings)):
        return composed
    return first
