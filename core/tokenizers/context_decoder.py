"""Decoding future frames with a real context frame: anchored (training-free) and learned.

A VQ tokenizer rebuilds each frame from its codes alone, and loses the detail its coarse grid cannot
carry. The future frames of a video world model mostly show the scene of the last real frame, a little
moved: both decoders here put that frame's real detail back (iVideoGPT decodes future frames with the
context frames' features for the same reason).

- `anchored_decode`: every grid cell whose code equals the context frame's code at the same place gets
  the context's VQ residual back (real pixels minus the tokenizer's reconstruction); cells whose content
  changed show the plain decoding.
- `ContextDecoder`: a small U-Net learns the correction from the plain decoding (3 channels), the context
  frame (3), the context's residual (3) and the code-equality map (1); its last layer starts at zero, so
  untrained it decodes plainly. `fit` trains it on real frame sequences: a frame's own codes, and the real
  frame `gap` steps earlier (1..`max_gap`) as its context.

Frames are float (..., 3, h, w) in [0, 1] on output; contexts are uint8 (B, h, w, 3), as episodes store them,
or a `Context` prepared from them once (`prepare_context`) when many rollouts decode from the same frames.

    decoder, report = ContextDecoder.fit(vq, [episode.frames for episode in episodes], steps=800)
    frames = decoder.decode(codes, context)   # codes (B, H, N), context uint8 (B, h, w, 3) -> (B, H, 3, h, w)
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from .image import ImageTokenizer

__all__ = ["Context", "ContextDecoder", "ContextDecoderConfig", "anchored_decode", "context_inputs", "decodings",
           "prepare_context"]

_CONFIG, _WEIGHTS = "context_decoder.json", "context_decoder.safetensors"


def _uint8_frames(frames: np.ndarray, tokenizer: ImageTokenizer, name: str, rows: int | None = None) -> torch.Tensor:
    """uint8 (B, h, w, C) -> float (B, C, h, w) in [0, 1], checked against the tokenizer's image size (and B = rows)."""
    s, c = tokenizer.config.image_size, tokenizer.config.channels
    frames = np.asarray(frames)
    if frames.shape[1:] != (s, s, c) or frames.dtype != np.uint8 or rows not in (None, len(frames)):
        raise ValueError(f"{name} must be uint8 frames ({'B' if rows is None else rows}, {s}, {s}, {c}), "
                         f"got {frames.dtype} {frames.shape}")
    return torch.from_numpy(np.ascontiguousarray(frames)).movedim(-1, -3).float() / 255


def _fingerprint(tokenizer: ImageTokenizer) -> str:
    """A short hash of the tokenizer's codebook: which tokenizer a context decoder belongs to."""
    return hashlib.sha1(tokenizer.network.codebook.detach().cpu().float().numpy().tobytes()).hexdigest()[:16]


def _same_map(tokenizer: ImageTokenizer, codes: torch.Tensor, context_codes: torch.Tensor) -> torch.Tensor:
    """Codes (..., N) and context codes broadcastable to them -> float (..., 1, h, w): 1 in cells with equal codes."""
    grid, size = tokenizer.config.grid_size, tokenizer.config.image_size
    same = (codes == context_codes).unflatten(-1, (grid, grid)).float()
    return same.repeat_interleave(size // grid, -2).repeat_interleave(size // grid, -1).unsqueeze(-3)


@dataclass
class Context:
    """Real context frames prepared once (`prepare_context`) for decoding many rollouts from them: frames
    (B, C, h, w) in [0, 1], their codes (B, N) and VQ residuals (B, C, h, w), the frames minus the
    tokenizer's reconstruction of them."""

    frames: torch.Tensor
    codes: torch.Tensor
    residual: torch.Tensor


@torch.no_grad()
def prepare_context(tokenizer: ImageTokenizer, context: np.ndarray) -> Context:
    """uint8 context frames (B, h, w, C) -> `Context`: one encoding and decoding of the frames, which every
    later decoding from them reuses (a learned simulator decodes from the same first frames at every step)."""
    real = _uint8_frames(context, tokenizer, "context")
    codes = tokenizer.encode(context)
    return Context(real, codes, real - tokenizer.decode(codes))


def context_inputs(tokenizer: ImageTokenizer, codes: torch.Tensor, context: np.ndarray | Context) -> dict[str, torch.Tensor]:
    """What both decoders read, for codes (B, H, N) local ids and context uint8 (B, h, w, C) or prepared:

    "plain" (B, H, C, h, w) the tokenizer's decoding of the codes; "context" (B, C, h, w) the real context
    frame; "residual" (B, C, h, w) the context minus the tokenizer's reconstruction of it; "same"
    (B, H, 1, h, w) float, 1 where a pixel's grid cell has the context's code.
    """
    B, H, N = codes.shape
    if not isinstance(context, Context):
        _uint8_frames(context, tokenizer, "context", rows=B)
        context = prepare_context(tokenizer, context)
    elif len(context.codes) != B:
        raise ValueError(f"context must hold one frame per row: {B} rows, {len(context.codes)} context frames")
    return {"plain": tokenizer.decode(codes.flatten(0, 1)).unflatten(0, (B, H)), "context": context.frames,
            "residual": context.residual, "same": _same_map(tokenizer, codes, context.codes[:, None])}


@torch.no_grad()
def anchored_decode(tokenizer: ImageTokenizer, codes: torch.Tensor, context: np.ndarray | Context) -> torch.Tensor:
    """Codes (B, H, N) -> frames (B, H, C, h, w): the plain decoding plus the context's VQ residual in every
    cell whose code equals the context's (module docstring)."""
    return _anchored(context_inputs(tokenizer, codes, context))


def _anchored(x: dict[str, torch.Tensor]) -> torch.Tensor:
    return (x["plain"] + x["same"] * x["residual"][:, None]).clamp(0, 1)


@torch.no_grad()
def decodings(tokenizer: ImageTokenizer, codes: torch.Tensor, context: np.ndarray | Context,
              decoder: ContextDecoder | None = None) -> dict[str, torch.Tensor]:
    """Codes (B, H, N) decoded every way at once, from one pass of the tokenizer over codes and context:
    {"plain", "anchored"} and, given a `decoder`, "learned"; each (B, H, C, h, w) in [0, 1]."""
    x = context_inputs(tokenizer, codes, context)
    return {"plain": x["plain"], "anchored": _anchored(x), **({"learned": decoder._learned(x)} if decoder is not None else {})}


@dataclass(frozen=True)
class ContextDecoderConfig:
    """channels: width of the U-Net's first level (doubled at each of its two downsamplings);
    max_gap: training contexts lie 1..max_gap frames before their target (a world model's horizon)."""

    channels: int = 32
    max_gap: int = 8

    def __post_init__(self):
        if self.channels < 4 or self.channels % 4 or self.max_gap < 1:  # GroupNorm(4, ...) at every level
            raise ValueError(f"channels must be a positive multiple of 4 and max_gap >= 1, got {self.channels}, "
                             f"{self.max_gap}")


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(4, c_out), nn.SiLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(4, c_out), nn.SiLU())


class _UNet(nn.Module):
    """(B, 3C + 1, h, w) -> (B, C, h, w) correction; h and w divisible by 4; zero at initialisation."""

    def __init__(self, channels: int, image_channels: int):
        super().__init__()
        c = channels
        self.down1, self.down2 = _block(3 * image_channels + 1, c), _block(c, 2 * c)
        self.middle = _block(2 * c, 4 * c)
        self.up2, self.up1 = _block(6 * c, 2 * c), _block(3 * c, c)
        self.out = nn.Conv2d(c, image_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool, up = nn.functional.avg_pool2d, nn.functional.interpolate
        a = self.down1(x)
        b = self.down2(pool(a, 2))
        m = self.middle(pool(b, 2))
        b = self.up2(torch.cat([b, up(m, scale_factor=2.0)], 1))
        return self.out(self.up1(torch.cat([a, up(b, scale_factor=2.0)], 1)))


class ContextDecoder:
    """The learned context-conditioned decoder of one `ImageTokenizer` (module docstring)."""

    def __init__(self, tokenizer: ImageTokenizer, config: ContextDecoderConfig | None = None, seed: int = 0):
        self.tokenizer, self.config = tokenizer, config or ContextDecoderConfig()
        if tokenizer.config.image_size % 4:
            raise ValueError(f"image size {tokenizer.config.image_size} must be divisible by 4")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = _UNet(self.config.channels, tokenizer.config.channels).eval()

    def _refine(self, plain: torch.Tensor, context: torch.Tensor, residual: torch.Tensor, same: torch.Tensor):
        """(n, C, h, w) x 3 and (n, 1, h, w) -> refined (n, C, h, w) in [0, 1]."""
        return (plain + self.net(torch.cat([plain, context, residual, same], 1))).clamp(0, 1)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, context: np.ndarray | Context, batch_size: int = 256) -> torch.Tensor:
        """Codes (B, H, N) local ids, context uint8 (B, h, w, C) real frames (or `prepare_context`'s) -> frames
        (B, H, C, h, w) in [0, 1]."""
        return self._learned(context_inputs(self.tokenizer, codes, context), batch_size)

    def _learned(self, x: dict[str, torch.Tensor], batch_size: int = 256) -> torch.Tensor:
        B, H = x["plain"].shape[:2]
        rows = [x["plain"].flatten(0, 1), x["context"].repeat_interleave(H, 0),
                x["residual"].repeat_interleave(H, 0), x["same"].flatten(0, 1)]
        out = [self._refine(*(t[lo:lo + batch_size] for t in rows)) for lo in range(0, B * H, batch_size)]
        return torch.cat(out).unflatten(0, (B, H))

    @classmethod
    def fit(cls, tokenizer: ImageTokenizer, sequences: list[np.ndarray], config: ContextDecoderConfig | None = None,
            steps: int = 800, batch_size: int = 16, lr: float = 2e-3, held_out: float = 0.1,
            seed: int = 0, progress: bool = True) -> tuple[ContextDecoder, dict]:
        """Train on real frame sequences (each uint8 (T_i, h, w, C), e.g. episodes' frames) -> (decoder, report).

        Each example: a frame's own codes decoded plainly, with the frame `gap` ~ U{1..max_gap} steps
        earlier as context; MSE to the real frame (whole frames: the U-Net's group norms see what they will
        see when decoding). A `held_out` fraction of the sequences scores the report: PSNR (dB, whole
        frames) per gap of the plain, anchored and learned decodings (`evaluate`).
        """
        decoder = cls(tokenizer, config, seed)
        gap = decoder.config.max_gap
        sequences = [np.asarray(s) for s in sequences if len(s) > 1]
        if len(sequences) < 2:
            raise ValueError(f"fit needs >= 2 sequences of >= 2 frames, got {len(sequences)}")
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(sequences))
        n_held = max(1, round(held_out * len(sequences)))
        held, train = [sequences[i] for i in order[:n_held]], [sequences[i] for i in order[n_held:]]
        started = time.perf_counter()
        # Every training frame once through the tokenizer: its codes and plain decoding (the slow part).
        frames = np.concatenate(train)
        starts = np.cumsum([0] + [len(s) for s in train])[:-1]
        _uint8_frames(frames[:1], tokenizer, "sequences")
        real = torch.from_numpy(frames).movedim(-1, -3)  # uint8 (F, C, h, w): floats per batch
        codes = tokenizer.encode(frames)  # (F, N)
        plain = tokenizer.decode(codes).half()  # (F, C, h, w), kept in fp16: 2 bytes a value, 5e-4 apart near 1
        # (target, context) index pairs: every frame with every admissible gap
        pairs = np.array([(s + t, s + t - g) for s, seq in zip(starts, train) for t in range(1, len(seq))
                          for g in range(1, min(gap, t) + 1)])
        optimizer = torch.optim.AdamW(decoder.net.parameters(), lr=lr, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.05)
        decoder.net.train()
        losses = []
        for _ in tqdm(range(steps), desc="fit context decoder", disable=not progress, leave=False):
            pick = pairs[rng.integers(len(pairs), size=batch_size)]
            target, context = torch.from_numpy(pick[:, 0]), torch.from_numpy(pick[:, 1])
            same = _same_map(tokenizer, codes[target], codes[context])
            context_frame, target_frame = real[context].float() / 255, real[target].float() / 255
            inputs = [plain[target].float(), context_frame, context_frame - plain[context].float(), same, target_frame]
            loss = nn.functional.mse_loss(decoder._refine(*inputs[:4]), inputs[4])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        decoder.net.eval()
        report = {"steps": steps, "train_loss": float(np.mean(losses[-max(1, steps // 10):])),
                  "train_frames": int(len(frames)), "held_out_sequences": len(held),
                  "seconds": round(time.perf_counter() - started, 1), **decoder.evaluate(held)}
        return decoder, report

    @torch.no_grad()
    def evaluate(self, sequences: list[np.ndarray], max_frames: int = 256) -> dict:
        """PSNR (dB) per gap 1..max_gap of the plain, anchored and learned decodings of sequences' frames from
        their own codes, the context `gap` frames earlier (the decodings' ceilings in a world model); at most
        `max_frames` frames per gap, evenly spread."""
        from core.metrics import psnr

        scores = {name: [] for name in ("plain", "anchored", "learned")}
        for g in range(1, self.config.max_gap + 1):
            rows = [(s, t) for s in sequences for t in range(g, len(s))]
            if not rows:
                break
            rows = [rows[i] for i in np.unique(np.linspace(0, len(rows) - 1, max_frames).round().astype(int))]
            truth = np.stack([s[t] for s, t in rows])
            codes = self.tokenizer.encode(truth)[:, None]  # (n, 1, N)
            context = np.stack([s[t - g] for s, t in rows])
            target = _uint8_frames(truth, self.tokenizer, "sequences")
            for name, frames in decodings(self.tokenizer, codes, context, self).items():
                scores[name].append(round(float(psnr(frames[:, 0], target).clamp(max=60).mean()), 3))
        return {f"psnr_{name}_by_gap": values for name, values in scores.items()}

    # --------------------------------------------------------------------------------- save/load
    def save(self, directory: str | Path) -> Path:
        """Write the config, the tokenizer's fingerprint and the weights into `directory` (not the tokenizer)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(directory / _WEIGHTS))
        record = {**asdict(self.config), "tokenizer": _fingerprint(self.tokenizer)}
        (directory / _CONFIG).write_text(json.dumps(record, indent=1) + "\n")  # last: marks it complete
        return directory

    @classmethod
    def load(cls, directory: str | Path, tokenizer: ImageTokenizer) -> ContextDecoder:
        """Restore what `save` wrote, for the tokenizer it was trained with (checked by its codebook)."""
        directory = Path(directory)
        for name in (_CONFIG, _WEIGHTS):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"context decoder file not found: {directory / name}")
        record = json.loads((directory / _CONFIG).read_text())
        if record.pop("tokenizer", None) != _fingerprint(tokenizer):
            raise ValueError(f"{directory}: this context decoder was fitted on another frame tokenizer (codebooks "
                             "differ); fit one for this model's tokenizer (`uwm data robotics` writes one)")
        decoder = cls(tokenizer, ContextDecoderConfig(**record))
        decoder.net.load_state_dict(load_file(str(directory / _WEIGHTS)), strict=True)
        return decoder
