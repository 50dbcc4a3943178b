"""The driving model: one backbone that plans the ego trajectory and predicts the front camera's future
(the sequences of `domains.driving.dataset`).

    model = DrivingModel.load("runs/driving/final")
    plan = model.plan(contexts)                        # (B, 6, 2) waypoints, ego frame, 0.5 ... 3.0 s
    plan, frames = model.predict(contexts)             # + (B, F, 3, S, S) future frames in [0, 1]

A `Context` is what the car knows at a key frame: command, ego status, ego history and the last camera
frames (from a nuScenes sample via `Context.from_sample`, or live from the closed-loop simulator).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.generation import SamplingConfig, generate
from core.tokenizers import Tokenizers

from .dataset import IMAGE, PLAN, context_segments, plan_from_residuals
from .loader import FUTURE_STEPS, DrivingSample, load_frames

__all__ = ["Context", "DrivingModel", "DECODE", "PLAN_SAMPLES"]

DECODE = ("mean", "mode")  # how a plan's waypoint tokens become metres (see `DrivingModel.plan`)
PLAN_SAMPLES = 16  # plans drawn per context where evaluation and closed loop take their median (README: driving)


@dataclass
class Context:
    """command int; status (3,); history (4, 2) with history_mask (4,); frames uint8 (P, H, W, 3), oldest first."""

    command: int
    status: np.ndarray
    history: np.ndarray
    history_mask: np.ndarray
    frames: np.ndarray

    @classmethod
    def from_sample(cls, sample: DrivingSample, image_size: int) -> "Context":
        return cls(sample.command, sample.status, sample.history, sample.history_mask,
                   load_frames(sample.frames, image_size))


class DrivingModel:
    """A fine-tuned backbone + its tokenizers (frame VQ, history/plan/status/command bins)."""

    def __init__(self, model, tokenizers: Tokenizers, past_frames: int = 2, future_frames: int = 2):
        self.model, self.tokenizers = model.eval(), tokenizers
        self.vocab = tokenizers.vocab
        self.vq = tokenizers.images[IMAGE]
        self.image_size = self.vq.config.image_size
        self.past_frames, self.future_frames = past_frames, future_frames

    @classmethod
    def load(cls, directory: str | Path, past_frames: int | None = None, future_frames: int | None = None
             ) -> "DrivingModel":
        """Load an exported model folder (`final/` of `uwm finetune driving`); the frame counts default to
        those of the sequences it was trained on (2 and 2 for a folder that does not record them)."""
        from core.pretrained import load_pretrained, training_data_meta

        model, tokenizers = load_pretrained(directory)
        if IMAGE not in tokenizers.images or "waypoint" not in tokenizers.bins:
            raise ValueError(f"{directory}: not a driving model (its tokenizers lack {IMAGE!r} frames or waypoint bins)")
        if PLAN not in tokenizers.bins:
            raise ValueError(f"{directory}: a driving model from before plans were residuals from constant velocity "
                             f"(its tokenizers lack {PLAN!r} bins); rebuild its data with `uwm data driving` and retrain")
        meta = training_data_meta(directory)
        return cls(model, tokenizers, meta.get("past_frames", 2) if past_frames is None else past_frames,
                   meta.get("future_frames", 2) if future_frames is None else future_frames)

    def prompt(self, context: Context, codes: torch.Tensor | None = None) -> torch.Tensor:
        """(T,) ids up to and including the plan's `<traj>`. codes: the frames' (P, N) local codes, if known."""
        if context.frames.shape[0] != self.past_frames and codes is None:
            raise ValueError(f"the model reads {self.past_frames} past frames, got {context.frames.shape[0]}")
        codes = self.vq.encode(context.frames) if codes is None else torch.as_tensor(codes)
        segments = context_segments(self.tokenizers, context.command, context.status, context.history,
                                    context.history_mask, self.vocab.to_global(IMAGE, codes))
        ids = [torch.tensor([self.vocab.special("<bos>")]), *[s.tokens for s in segments],
               torch.tensor([self.vocab.special("<traj>")])]
        return torch.cat(ids)

    def _layout(self, frames: bool) -> list[tuple[str, int]]:
        layout = [(PLAN, 2 * FUTURE_STEPS), ("</traj>", 1)]
        if frames:
            layout += [("<img>", 1), (IMAGE, self.vq.config.num_tokens), ("</img>", 1)] * self.future_frames
        return layout

    @torch.no_grad()
    def _generate(self, contexts: list[Context], frames: bool, temperature: float, decode: str, batch_size: int,
                  generator: torch.Generator | None, samples: int = 1):
        if decode not in DECODE:
            raise ValueError(f"decode must be one of {DECODE}, got {decode!r}")
        if samples > 1 and (frames or temperature == 0):
            raise ValueError(f"{samples} plans per context need temperature > 0 (got {temperature}) and no frames")
        bins = self.tokenizers.bins[PLAN]
        span = self.vocab[PLAN]
        layout = self._layout(frames)
        allowed, positions = [], {}
        for kind, count in layout:
            for _ in range(count):
                if kind.startswith("<"):
                    allowed.append((self.vocab.special(kind), self.vocab.special(kind) + 1))
                else:
                    positions.setdefault(kind, []).append(len(allowed))
                    allowed.append(self.vocab[kind])
        plans, images = [], []
        for start in range(0, len(contexts), batch_size):
            chunk = contexts[start : start + batch_size]
            prompts = [self.prompt(c) for c in chunk]
            tokens, logits = generate(self.model, prompts, len(allowed), pad_id=self.vocab.special("<pad>"),
                                      allowed=allowed, sampling=SamplingConfig(temperature=temperature),
                                      generator=generator, return_logits=True, samples=samples)
            if decode == "mean":  # each step's expected residual, given the tokens drawn before it
                probs = logits[:, positions[PLAN], span.start : span.stop].softmax(-1)
                residuals = bins.expected(probs.view(len(tokens), FUTURE_STEPS, 2, -1))
            else:
                residuals = self.tokenizers.decode_vector(PLAN, tokens[:, positions[PLAN]].view(-1, FUTURE_STEPS, 2))
            history, mask, status = (np.stack([getattr(c, key) for c in chunk]).repeat(samples, 0)
                                     for key in ("history", "history_mask", "status"))
            drawn = plan_from_residuals(residuals.numpy(), history, mask, status)
            plans.append(np.median(drawn.reshape(len(chunk), samples, FUTURE_STEPS, 2), axis=1))
            if frames:
                codes = tokens[:, positions[IMAGE]].reshape(len(prompts) * self.future_frames, -1)
                images.append(self.tokenizers.decode_image(IMAGE, codes).unflatten(0, (len(prompts), self.future_frames)))
        plan = np.concatenate(plans) if plans else np.zeros((0, FUTURE_STEPS, 2))
        return plan, (torch.cat(images) if images else None)

    def plan(self, contexts: list[Context], temperature: float | None = None, decode: str = "mean", samples: int = 1,
             batch_size: int = 32, generator: torch.Generator | None = None) -> np.ndarray:
        """Contexts -> planned waypoints (B, 6, 2), ego frame, at 0.5 ... 3.0 s.

        One plan is drawn greedily (temperature 0, the default for samples=1) or sampled; decode "mean" reads
        each step's residual from constant velocity as its bins' expected value under the model (given the
        steps drawn before it), "mode" as the drawn bin's centre. "mean" is the least-squares choice and finer
        than a bin. samples > 1 draws that many plans per context (temperature 1 unless given; one shared
        prompt pass) and returns their per-waypoint median, a consensus that a few stray samples do not move
        (`experiments/results/driving`: held-out L2 0.553 m greedy, 0.515 m as the median of 16).
        """
        if temperature is None:
            temperature = 0.0 if samples == 1 else 1.0
        return self._generate(contexts, False, temperature, decode, batch_size, generator, samples)[0]

    def predict(self, contexts: list[Context], temperature: float = 0.0, decode: str = "mean", batch_size: int = 16,
                generator: torch.Generator | None = None) -> tuple[np.ndarray, torch.Tensor]:
        """Contexts -> (plan (B, 6, 2), future frames (B, F, 3, S, S) in [0, 1]) generated jointly (as `plan`)."""
        return self._generate(contexts, True, temperature, decode, batch_size, generator)
