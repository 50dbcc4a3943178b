"""Image VQ tokenizer: images <-> grids of discrete codes, on diffusers' `VQModel` or MONAI's `VQVAE`.

`ImageTokenizerConfig.backend` picks the network: "diffusers" (`VQModel`, gradient-trained codebook;
the default, used for RGB simulator frames) or "monai" (`monai.networks.nets.VQVAE` with spatial_dims=2
and its EMA codebook; used for grayscale chest X-rays). Training, dead-code restarts, checks, metrics
and save/load are shared: the two networks differ only behind `_VQNetwork`.

Images are float tensors (B, C, H, W) in [0, 1]; uint8 arrays/tensors (B, H, W, C) are accepted and
converted. Codes are LOCAL ids in [0, codebook_size), shape (B, grid_size**2) in row-major order; the
caller offsets them into the global vocabulary.

    tokenizer = ImageTokenizer(ImageTokenizerConfig())          # 64x64 RGB -> 16x16 = 256 codes
    metrics = tokenizer.fit(frames, steps=400)                  # metrics["psnr_held_out"] in dB
    codes = tokenizer.encode(frames)                            # (B, 256) int64
    frames_hat = tokenizer.decode(codes)                        # (B, 3, 64, 64) in [0, 1]
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models import VQModel
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from core.metrics import psnr

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "ImageTokenizer", "ImageTokenizerConfig"]

CONFIG_NAME = "image_tokenizer.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class ImageTokenizerConfig:
    """Architecture of the VQ tokenizer (training hyper-parameters are `ImageTokenizer.fit` arguments).

    With backend "diffusers" the encoder downsamples by 2 between consecutive entries of
    `block_out_channels`, so grid_size = image_size / 2 ** (len(block_out_channels) - 1): the default
    (16, 32, 64) turns a 64x64 image into a 16x16 grid; add one more block, e.g. (16, 32, 64, 64), for an
    8x8 grid. With backend "monai" each entry is one strided level (VQVAE's `channels`), so
    grid_size = image_size / 2 ** len(block_out_channels), `layers_per_block` is its `num_res_layers`,
    and `norm_num_groups` is unused (VQVAE has no normalisation layers).
    The defaults are sized for CPU training: on 64x64 shapes, (32, 64, 64) with mid-block
    attention cost 2x the time per step and reached a lower PSNR after 400 steps.
    """

    image_size: int = 64
    channels: int = 3
    codebook_size: int = 512
    latent_channels: int = 16  # also the codebook vector dimension
    block_out_channels: tuple[int, ...] = (16, 32, 64)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    mid_block_attention: bool = False  # one self-attention layer at grid resolution in encoder and decoder
    backend: str = "diffusers"  # "diffusers" (VQModel) or "monai" (VQVAE, EMA codebook)

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)
        if self.backend not in BACKENDS:
            raise ValueError(f"ImageTokenizerConfig.backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.backend == "monai" and self.mid_block_attention:
            raise ValueError("ImageTokenizerConfig.mid_block_attention is not available with backend='monai' (VQVAE has none)")
        for name in (
            "image_size",
            "channels",
            "codebook_size",
            "latent_channels",
            "layers_per_block",
            "norm_num_groups",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ImageTokenizerConfig.{name} must be a positive int, got {value!r}")
        if self.codebook_size < 2:
            raise ValueError(f"ImageTokenizerConfig.codebook_size must be >= 2, got {self.codebook_size}")
        if not self.block_out_channels or min(self.block_out_channels) < 1:
            raise ValueError(
                f"ImageTokenizerConfig.block_out_channels must be non-empty positive ints, got {self.block_out_channels}"
            )
        factor = self.downsampling
        if self.image_size % factor != 0:
            raise ValueError(
                f"ImageTokenizerConfig.image_size={self.image_size} is not divisible by the downsampling factor {factor} "
                f"(backend {self.backend!r} with block_out_channels={self.block_out_channels})"
            )
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups != 0]
        if bad and self.backend == "diffusers":
            raise ValueError(
                f"ImageTokenizerConfig.norm_num_groups={self.norm_num_groups} must divide every entry of "
                f"block_out_channels={self.block_out_channels}"
            )

    @property
    def downsampling(self) -> int:
        """Image pixels per code, per side: VQModel halves between blocks, VQVAE at every level."""
        levels = len(self.block_out_channels) - 1 if self.backend == "diffusers" else len(self.block_out_channels)
        return 2**levels

    @property
    def grid_size(self) -> int:
        """Codes per side of the code grid."""
        return self.image_size // self.downsampling

    @property
    def num_tokens(self) -> int:
        """Codes per image (grid_size ** 2)."""
        return self.grid_size**2

    @classmethod
    def tiny(cls, image_size: int = 16, channels: int = 3) -> ImageTokenizerConfig:
        """A config that fits in a few seconds on a laptop CPU: image_size / 2 codes per side."""
        return cls(
            image_size=image_size,
            channels=channels,
            codebook_size=64,
            latent_channels=8,
            block_out_channels=(16, 32),
            norm_num_groups=8,
            mid_block_attention=False,
        )


class _VQNetwork:
    """What the tokenizer needs from a VQ network; images in [-1, 1], latents (B, D, g, g), ids (B, g*g)."""

    module: torch.nn.Module

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> continuous encoder output (B, D, g, g)."""
        raise NotImplementedError

    def quantize(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, D, g, g) -> (quantized (B, D, g, g) with straight-through gradient, quantizer loss, ids (B, g*g))."""
        raise NotImplementedError

    def nearest_ids(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, D, g, g) -> ids (B, g*g) of the nearest codebook rows; no side effects (no EMA update)."""
        raise NotImplementedError

    def lookup(self, ids: torch.Tensor, grid: int) -> torch.Tensor:
        """ids (B, g*g) -> codebook vectors (B, D, g, g)."""
        raise NotImplementedError

    def decode(self, quantized: torch.Tensor) -> torch.Tensor:
        """(B, D, g, g) -> (B, C, H, W) in [-1, 1] (unclamped)."""
        raise NotImplementedError

    @property
    def codebook(self) -> torch.Tensor:
        """(K, D) codebook rows, written in place by dead-code restarts."""
        raise NotImplementedError

    def restarted(self, dead: torch.Tensor) -> None:
        """Called after rows `dead` (K,) of `codebook` were overwritten."""


class _DiffusersVQ(_VQNetwork):
    def __init__(self, config: ImageTokenizerConfig) -> None:
        n_blocks = len(config.block_out_channels)
        self.module = VQModel(
            in_channels=config.channels,
            out_channels=config.channels,
            down_block_types=("DownEncoderBlock2D",) * n_blocks,
            up_block_types=("UpDecoderBlock2D",) * n_blocks,
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            latent_channels=config.latent_channels,
            sample_size=config.image_size,
            num_vq_embeddings=config.codebook_size,
            norm_num_groups=config.norm_num_groups,
            mid_block_add_attention=config.mid_block_attention,
        )
        # VectorQuantizer's default (legacy=True) puts beta on the codebook term instead of the
        # commitment term, a known upstream bug; legacy=False is its documented fix (VQ-VAE's loss).
        self.module.quantize.legacy = False

    def latents(self, x):
        return self.module.encode(x).latents

    def quantize(self, latents):
        quantized, loss, (_, _, ids) = self.module.quantize(latents)
        return quantized, loss, ids.view(latents.shape[0], -1)

    def nearest_ids(self, latents):
        return self.quantize(latents)[2]

    def lookup(self, ids, grid):
        shape = (ids.shape[0], grid, grid, self.module.quantize.vq_embed_dim)
        return self.module.quantize.get_codebook_entry(ids.reshape(-1), shape=shape)

    def decode(self, quantized):
        return self.module.decode(quantized, force_not_quantize=True).sample

    @property
    def codebook(self):
        return self.module.quantize.embedding.weight


class _MonaiVQ(_VQNetwork):
    def __init__(self, config: ImageTokenizerConfig) -> None:
        from monai.networks.nets import VQVAE  # MONAI is slow to import: only for this backend

        levels = len(config.block_out_channels)
        self.module = VQVAE(
            spatial_dims=2,
            in_channels=config.channels,
            out_channels=config.channels,
            channels=config.block_out_channels,
            num_res_layers=config.layers_per_block,
            num_res_channels=config.block_out_channels,
            downsample_parameters=((2, 4, 1, 1),) * levels,
            upsample_parameters=((2, 4, 1, 1, 0),) * levels,
            num_embeddings=config.codebook_size,
            embedding_dim=config.latent_channels,
            decay=0.99,  # the VQ-VAE paper's EMA decay (MONAI defaults to 0.5)
            ddp_sync=False,
        )
        self._ema = self.module.quantizer.quantizer

    def latents(self, x):
        return self.module.encode(x)

    def quantize(self, latents):
        quantized, loss, ids = self._ema(latents)  # EMA codebook update happens here in train mode
        return quantized, loss, ids.reshape(latents.shape[0], -1)

    def nearest_ids(self, latents):
        return self._ema.quantize(latents)[2].reshape(latents.shape[0], -1)

    def lookup(self, ids, grid):
        return self._ema.embed(ids.view(ids.shape[0], grid, grid))

    def decode(self, quantized):
        return self.module.decode(quantized)

    @property
    def codebook(self):
        return self._ema.embedding.weight

    @torch.no_grad()
    def restarted(self, dead):
        # keep the EMA statistics consistent with the new rows (weight = ema_w / cluster size)
        dead = dead.to(self._ema.ema_w.device)
        size = self._ema.ema_cluster_size
        size[dead] = size[~dead].mean() if (~dead).any() and size[~dead].sum() > 0 else 1.0
        self._ema.ema_w[dead] = self._ema.embedding.weight[dead] * size[dead, None]


_NETWORKS = {"diffusers": _DiffusersVQ, "monai": _MonaiVQ}
BACKENDS = tuple(_NETWORKS)


class ImageTokenizer:
    """VQ-VAE image tokenizer (diffusers `VQModel` or MONAI `VQVAE`) with input checks, training, and save/load.

    vocab_size == config.codebook_size; codes are local ids 0..vocab_size-1.
    """

    def __init__(self, config: ImageTokenizerConfig, seed: int = 0) -> None:
        """Build an untrained tokenizer; `seed` fixes the initial weights without touching the global RNG."""
        self.config = config
        self.vocab_size = config.codebook_size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.network = _NETWORKS[config.backend](config)
        self.model = self.network.module
        self.model.eval()
        self._codebook_from_data = False  # set by the first fit (and by load): see fit()

    # ----------------------------------------------------------------------------------- inputs
    @property
    def device(self) -> torch.device:
        """Device holding the VQ model's weights."""
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> ImageTokenizer:
        """Move the model to `device`; returns self."""
        self.model.to(device)
        return self

    def _expected_shape(self) -> str:
        c, s = self.config.channels, self.config.image_size
        return f"(B, {c}, {s}, {s}) in [0, 1] or uint8 (B, {s}, {s}, {c})"

    def _as_image_tensor(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Check images and return them as (B, C, H, W): uint8 stays uint8, floats become float32 in [0, 1]."""
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images))
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"expected images as a torch.Tensor or numpy array, got {type(images).__name__}")
        c, s = self.config.channels, self.config.image_size
        shape = tuple(images.shape)
        if images.dtype == torch.uint8:
            if images.ndim != 4 or shape[1:] != (s, s, c) or shape[0] == 0:
                raise ValueError(f"expected images of shape {self._expected_shape()}, got uint8 {shape}")
            return images.permute(0, 3, 1, 2).contiguous()
        if not images.is_floating_point():
            raise TypeError(f"expected float images in [0, 1] or uint8 images, got dtype {images.dtype}")
        if images.ndim != 4 or shape[1:] != (c, s, s) or shape[0] == 0:
            raise ValueError(f"expected images of shape {self._expected_shape()}, got {shape}")
        images = images.float()
        low, high = images.min().item(), images.max().item()
        if not (low >= 0.0 and high <= 1.0):  # also rejects NaN
            raise ValueError(f"expected float images in [0, 1], got values in [{low:.4g}, {high:.4g}]")
        return images

    def _to_unit(self, images: torch.Tensor) -> torch.Tensor:
        """Checked (B, C, H, W) uint8 or [0, 1] float -> float32 in [0, 1] on the model's device."""
        images = images.to(self.device)
        return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()

    def _to_model_input(self, images: torch.Tensor) -> torch.Tensor:
        """Checked (B, C, H, W) uint8 or [0, 1] float -> float32 in [-1, 1] (the VQModel's range)."""
        return self._to_unit(images) * 2.0 - 1.0

    def _check_codes(self, codes: torch.Tensor | np.ndarray) -> torch.Tensor:
        if isinstance(codes, np.ndarray):
            codes = torch.from_numpy(codes)
        n = self.config.num_tokens
        if (
            not isinstance(codes, torch.Tensor)
            or codes.is_floating_point()
            or codes.is_complex()
            or codes.dtype == torch.bool
        ):
            raise ValueError(
                f"expected integer codes of shape (B, {n}), got {getattr(codes, 'dtype', type(codes).__name__)}"
            )
        if codes.ndim != 2 or codes.shape[1] != n or codes.shape[0] == 0:
            raise ValueError(f"expected codes of shape (B, {n}), got {tuple(codes.shape)}")
        low, high = codes.min().item(), codes.max().item()
        if low < 0 or high >= self.vocab_size:
            raise ValueError(f"codes must be in [0, {self.vocab_size}), got values in [{low}, {high}]")
        return codes.long().to(self.device)

    # ------------------------------------------------------------------------------- model calls
    def _code_ids(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) in [-1, 1] -> nearest-codebook ids (B, g*g), row-major over the grid."""
        return self.network.nearest_ids(self.network.latents(x))

    def _decode_quantized(self, quantized: torch.Tensor) -> torch.Tensor:
        """quantized: (B, D, g, g) codebook vectors -> (B, C, H, W) in [-1, 1] (unclamped)."""
        return self.network.decode(quantized)

    def encode(self, images: torch.Tensor | np.ndarray, batch_size: int = 256) -> torch.Tensor:
        """images: (B, C, H, W) float in [0, 1] or uint8 (B, H, W, C) -> codes (B, grid_size**2) int64."""
        return self._encode_checked(self._as_image_tensor(images), batch_size)

    @torch.no_grad()
    def _encode_checked(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """images: already checked (B, C, H, W) uint8 or [0, 1] float -> codes (B, grid_size**2)."""
        self.model.eval()
        out = [self._code_ids(self._to_model_input(chunk)) for chunk in images.split(batch_size)]
        return torch.cat(out)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor | np.ndarray, batch_size: int = 256) -> torch.Tensor:
        """codes: (B, grid_size**2) ints in [0, codebook_size) -> images (B, C, H, W) float32 in [0, 1]."""
        codes = self._check_codes(codes)
        self.model.eval()
        out = [self._decode_quantized(self.network.lookup(chunk, self.config.grid_size)) for chunk in codes.split(batch_size)]
        return ((torch.cat(out) + 1.0) / 2.0).clamp(0.0, 1.0)

    @torch.no_grad()
    def latents(self, images: torch.Tensor | np.ndarray, batch_size: int = 256) -> torch.Tensor:
        """images as for `encode` -> the encoder's continuous output before quantization (B, D, g, g)."""
        images = self._as_image_tensor(images)
        self.model.eval()
        return torch.cat([self.network.latents(self._to_model_input(chunk)).cpu() for chunk in images.split(batch_size)])

    @property
    def codebook(self) -> torch.Tensor:
        """The code vectors (codebook_size, latent_channels), row k for local id k (a detached copy)."""
        return self.network.codebook.detach().float().cpu().clone()

    def reconstruct(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """images: (B, C, H, W) in [0, 1] or uint8 (B, H, W, C) -> decode(encode(images)): (B, C, H, W) in [0, 1]."""
        return self.decode(self.encode(images))

    # ---------------------------------------------------------------------------------- training
    def fit(
        self,
        images: torch.Tensor | np.ndarray,
        steps: int = 400,
        batch_size: int = 32,
        lr: float = 1e-3,
        held_out: float = 0.1,
        seed: int = 0,
        progress: bool = True,
        restart_dead_codes_every: int = 50,
    ) -> dict[str, float]:
        """Train the VQ-VAE on images (N, C, H, W) in [0, 1] or uint8 (N, H, W, C); returns metrics.

        Loss = MSE(reconstruction, image) in [-1, 1] + the quantizer's loss: VQModel's codebook and
        0.25 x commitment terms (as in VQ-VAE), or VQVAE's 0.25 x commitment term with its codebook
        following the encoder outputs by EMA. A random `held_out` fraction of the images is kept
        out of training and scores `psnr_held_out` (dB, mean over images), `codebook_usage`
        (fraction of codes used on it) and `psnr_mean_image_held_out` (predicting the training mean
        image, a floor). Codes unused for `restart_dead_codes_every` steps are re-initialised from
        current encoder outputs; the first fit of a new tokenizer so initialises the whole codebook
        from data at step 0 (the library's init is tiny uniform noise, which leaves most codes dead),
        later fits (and loaded tokenizers) restart only the codes their first batch leaves unused.
        Restarts stop for the last 20% of steps so the decoder settles on the final codebook; 0
        disables them.
        Training continues from the current weights with a fresh Adam; the result is deterministic
        given those weights and `seed`. `train_loss` is the mean loss over the last steps.
        """
        if steps < 1 or batch_size < 1 or lr <= 0:
            raise ValueError(f"fit needs steps >= 1, batch_size >= 1, lr > 0; got {steps}, {batch_size}, {lr}")
        if not 0.0 < held_out < 1.0:
            raise ValueError(f"held_out must be a fraction in (0, 1), got {held_out}")
        images = self._as_image_tensor(images)
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(images.shape[0], generator=generator)
        n_held = max(1, round(held_out * images.shape[0]))
        if images.shape[0] - n_held < 1:
            raise ValueError(f"fit needs at least one training image after holding out {n_held} of {images.shape[0]}")
        held, train = images[order[:n_held]], images[order[n_held:]]

        model = self.model
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        usage = torch.zeros(self.vocab_size, dtype=torch.long)
        restart_until = int(0.8 * steps)
        losses, started = [], time.perf_counter()
        model.train()
        epoch_order, cursor = torch.randperm(train.shape[0], generator=generator), 0
        bar = tqdm(range(steps), desc="fit image tokenizer", disable=not progress, leave=False)
        for step in bar:
            if cursor + batch_size > train.shape[0] and cursor > 0:  # new epoch; never a short final batch
                epoch_order, cursor = torch.randperm(train.shape[0], generator=generator), 0
            index = epoch_order[cursor : cursor + batch_size]
            cursor += batch_size
            x = self._to_model_input(train[index])

            latents = self.network.latents(x)
            if restart_dead_codes_every and step % restart_dead_codes_every == 0 and step < restart_until:
                # at step 0 of a first fit usage is all zero: every code is initialised from data
                if step == 0 and self._codebook_from_data:  # no history yet: judge codes on this batch
                    with torch.no_grad():
                        first_ids = self.network.nearest_ids(latents)
                    usage = torch.bincount(first_ids.flatten().cpu(), minlength=self.vocab_size)
                self._restart_dead_codes(latents.detach(), usage == 0, generator)
                self._codebook_from_data = True
                usage.zero_()
            quantized, commit_loss, ids = self.network.quantize(latents)
            reconstruction = self._decode_quantized(quantized)
            recon_loss = F.mse_loss(reconstruction, x)
            loss = recon_loss + commit_loss

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            usage += torch.bincount(ids.detach().flatten().cpu(), minlength=self.vocab_size)
            losses.append((loss.item(), recon_loss.item(), commit_loss.item()))
            if progress and step % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        bar.close()
        model.eval()
        seconds = time.perf_counter() - started

        tail = np.asarray(losses[-max(1, min(20, steps // 10)) :]).mean(axis=0)  # mean over the last steps
        metrics = {
            "train_loss": float(tail[0]),
            "train_recon_loss": float(tail[1]),
            "train_commit_loss": float(tail[2]),
            "seconds": seconds,
            "seconds_per_step": seconds / steps,
            "num_train": int(train.shape[0]),
            "num_held_out": int(held.shape[0]),
        }
        metrics.update(self._evaluate(held, train))
        return metrics

    @torch.no_grad()
    def _restart_dead_codes(self, latents: torch.Tensor, dead: torch.Tensor, generator: torch.Generator) -> None:
        """Replace dead codebook rows (mask (K,)) by randomly chosen encoder outputs latents (B, D, g, g)."""
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        candidates = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
        pick = torch.randint(candidates.shape[0], (n_dead,), generator=generator)
        # a little noise keeps codes drawn from the same latent apart
        noise = torch.randn(n_dead, candidates.shape[1], generator=generator) * 0.01 * candidates.std().item()
        weight = self.network.codebook
        weight[dead.to(weight.device)] = candidates[pick.to(candidates.device)] + noise.to(weight.device)
        self.network.restarted(dead)

    @torch.no_grad()
    def _evaluate(self, held: torch.Tensor, train: torch.Tensor) -> dict[str, float]:
        """PSNR (dB) on held-out and (up to 256) training images, held-out codebook usage, mean-image baseline."""
        held_codes = self._encode_checked(held)
        held_target = self._to_unit(held)
        held_psnr = psnr(self.decode(held_codes), held_target)
        train_sample = train[:256]
        train_psnr = psnr(self.decode(self._encode_checked(train_sample)), self._to_unit(train_sample))
        train_mean = sum(self._to_unit(chunk).sum(0) for chunk in train.split(256)) / train.shape[0]
        baseline = psnr(train_mean.expand_as(held_target), held_target)
        counts = torch.bincount(held_codes.flatten().cpu(), minlength=self.vocab_size).float()
        probs = counts / counts.sum()
        entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum().item()
        return {
            "psnr_held_out": _finite_mean(held_psnr),
            "psnr_train": _finite_mean(train_psnr),
            "psnr_mean_image_held_out": _finite_mean(baseline),
            "codebook_usage": float((counts > 0).float().mean()),
            "codebook_perplexity": math.exp(entropy),
        }

    # --------------------------------------------------------------------------------- save/load
    def save(self, directory: str | Path) -> Path:
        """Write `image_tokenizer.json` (config) and `model.safetensors` (weights) into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(dataclasses.asdict(self.config), indent=2) + "\n")
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME))
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> ImageTokenizer:
        """Restore a tokenizer written by `save` (no network access)."""
        directory = Path(directory)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"image tokenizer file not found: {directory / name}")
        fields = json.loads((directory / CONFIG_NAME).read_text())
        tokenizer = cls(ImageTokenizerConfig(**fields))
        tokenizer.model.load_state_dict(load_file(str(directory / WEIGHTS_NAME)), strict=True)
        tokenizer._codebook_from_data = True
        return tokenizer.to(device)


def _finite_mean(values: torch.Tensor) -> float:
    """Mean of per-image PSNRs; a perfect reconstruction (+inf) is capped at 100 dB so the mean stays finite."""
    return float(values.clamp(max=100.0).mean())
