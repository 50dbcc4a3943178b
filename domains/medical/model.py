"""The bidirectional chest X-ray model: one backbone that draws an image for a report and writes a
report for an image (the sequences of `domains.medical.dataset`).

    model = MedicalModel.load("runs/medical/final")
    images = model.draw(["Moderate cardiomegaly. Small left pleural effusion."], cfg_scale=3.0)  # (1, 1, 64, 64)
    reports = model.read(images)                                                                # ['...']
"""

from __future__ import annotations

from pathlib import Path

import torch

from core.generation import SamplingConfig, generate
from core.tokenizers import Tokenizers

from .dataset import IMAGE, domain_tag, image_segment, report_segment

__all__ = ["MedicalModel"]


class MedicalModel:
    """A fine-tuned backbone + its tokenizers (report BPE, chest X-ray VQVAE)."""

    def __init__(self, model, tokenizers: Tokenizers, max_report_tokens: int = 128):
        self.model, self.tokenizers = model.eval(), tokenizers
        self.vocab = tokenizers.vocab
        self.max_report_tokens = max_report_tokens
        self.vq = tokenizers.images[IMAGE]
        self.image_size = self.vq.config.image_size

    @classmethod
    def load(cls, directory: str | Path, **kwargs) -> "MedicalModel":
        """Load an exported model folder (`final/` of `uwm finetune medical`)."""
        from core.pretrained import load_pretrained

        model, tokenizers = load_pretrained(directory)
        if IMAGE not in tokenizers.images or tokenizers.text is None:
            raise ValueError(f"{directory}: not a medical model (its tokenizers lack report text or {IMAGE!r} images)")
        return cls(model, tokenizers, **kwargs)

    def _ids(self, *segments) -> torch.Tensor:
        return torch.cat([torch.tensor([self.vocab.special("<bos>")]), *[s.tokens for s in segments]])

    # --- report -> image ----------------------------------------------------------------------
    def draw_prompt(self, report: str | None) -> torch.Tensor:
        """(T,) ids up to and including `<img>`; report None gives the unconditional prompt (`<null>`)."""
        opening = torch.tensor([self.vocab.special("<img>")])
        if report is None:  # what build_example(drop_conditions=True) leaves of the report segment
            condition = torch.tensor([self.vocab.special("<null>")])
        elif not report.strip():
            raise ValueError("draw: the report is empty")
        else:
            ids = self.tokenizers.encode_text(report)[: self.max_report_tokens]
            condition = report_segment(self.tokenizers, ids).tokens
        return torch.cat([self._ids(domain_tag(self.tokenizers)), condition, opening])

    @torch.no_grad()
    def draw(self, reports: list[str], cfg_scale: float = 3.0, temperature: float = 1.0, top_k: int = 0,
             batch_size: int = 32, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reports -> chest X-rays (B, 1, S, S) in [0, 1]; classifier-free guidance at `cfg_scale` (1 = none)."""
        n_codes = self.vq.config.num_tokens
        sampling = SamplingConfig(temperature=temperature, top_k=top_k)
        out = []
        for start in range(0, len(reports), batch_size):
            chunk = reports[start : start + batch_size]
            prompts = [self.draw_prompt(r) for r in chunk]
            uncond = [self.draw_prompt(None)] * len(chunk) if cfg_scale != 1.0 else None
            codes = generate(self.model, prompts, n_codes, pad_id=self.vocab.special("<pad>"), sampling=sampling,
                             allowed=self.vocab[IMAGE], cfg_scale=cfg_scale, uncond_prompts=uncond, generator=generator)
            out.append(self.tokenizers.decode_image(IMAGE, codes))
        return torch.cat(out) if out else torch.empty(0, 1, self.image_size, self.image_size)

    # --- image -> report ----------------------------------------------------------------------
    def read_prompt(self, codes: torch.Tensor) -> torch.Tensor:
        """(N,) global image ids -> (T,) ids up to and including `<report>`."""
        opening = torch.tensor([self.vocab.special("<report>")])
        return torch.cat([self._ids(domain_tag(self.tokenizers), image_segment(self.tokenizers, codes)), opening])

    @torch.no_grad()
    def read(self, images: torch.Tensor, temperature: float = 0.0, batch_size: int = 32,
             generator: torch.Generator | None = None) -> list[str]:
        """Chest X-rays (B, 1, S, S) in [0, 1] -> reports (greedy unless `temperature` > 0)."""
        if images.ndim != 4 or tuple(images.shape[1:]) != (1, self.image_size, self.image_size):
            raise ValueError(f"read: expected images (B, 1, {self.image_size}, {self.image_size}), got {tuple(images.shape)}")
        close = self.vocab.special("</report>")
        allowed = self.vocab.mask("text", "</report>")
        reports = []
        for chunk in images.split(batch_size):
            codes = self.tokenizers.encode_image(IMAGE, chunk)
            prompts = [self.read_prompt(c) for c in codes]
            room = self.model.config.max_seq_len - max(len(p) for p in prompts)  # the report ends within the context
            tokens = generate(self.model, prompts, min(self.max_report_tokens + 1, room),
                              pad_id=self.vocab.special("<pad>"), sampling=SamplingConfig(temperature=temperature),
                              allowed=allowed, eos_id=close, generator=generator)
            for row in tokens:
                ends = torch.nonzero(row == close).flatten()
                reports.append(self.tokenizers.decode_text(row[: int(ends[0])] if ends.numel() else row).strip())
        return reports
