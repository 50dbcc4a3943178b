"""Image VQ tokenizer: it learns, round-trips through disk, and rejects bad input clearly."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from core.metrics import psnr
from core.tokenizers.image import CONFIG_NAME, WEIGHTS_NAME, ImageTokenizer, ImageTokenizerConfig

SIZE = 16


# flat colours with sharp edges: easy for a VQ tokenizer, far from the mean image
PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [240, 240, 240],
        [20, 20, 20],
    ],
    dtype=np.uint8,
)


def coloured_rectangles(n: int, seed: int, size: int = SIZE) -> np.ndarray:
    """n uint8 images (n, size, size, 3): a plain background with one or two rectangles, palette colours."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        images[i] = PALETTE[rng.integers(len(PALETTE))]
        for _ in range(rng.integers(1, 3)):
            top, left = rng.integers(0, size - 4, 2)
            height, width = rng.integers(4, size // 2 + 1, 2)
            images[i, top : top + height, left : left + width] = PALETTE[rng.integers(len(PALETTE))]
    return images


def to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, C) -> float (B, C, H, W) in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


@pytest.fixture(scope="module")
def config() -> ImageTokenizerConfig:
    return ImageTokenizerConfig.tiny(image_size=SIZE)


@pytest.fixture(scope="module")
def fitted(config):
    tokenizer = ImageTokenizer(config)
    metrics = tokenizer.fit(coloured_rectangles(320, seed=0), steps=120, batch_size=32, lr=2e-3, progress=False)
    return tokenizer, metrics


def test_config_grid_and_validation():
    default = ImageTokenizerConfig()
    assert (default.grid_size, default.num_tokens) == (16, 256)
    assert ImageTokenizerConfig(block_out_channels=(16, 32, 64, 64)).grid_size == 8
    with pytest.raises(ValueError, match="not divisible"):
        ImageTokenizerConfig(image_size=60, block_out_channels=(32, 64, 64, 64))
    with pytest.raises(ValueError, match="norm_num_groups"):
        ImageTokenizerConfig(norm_num_groups=5)
    with pytest.raises(ValueError, match="held_out"):
        ImageTokenizer(ImageTokenizerConfig.tiny()).fit(coloured_rectangles(4, seed=0), held_out=1.0)


def test_fit_beats_mean_image_and_untrained_tokenizer(fitted, config):
    tokenizer, metrics = fitted
    unseen = to_float(coloured_rectangles(64, seed=1))  # images never seen in training

    fitted_psnr = psnr(tokenizer.reconstruct(unseen), unseen).mean().item()
    untrained_psnr = psnr(ImageTokenizer(config).reconstruct(unseen), unseen).mean().item()
    train_mean = to_float(coloured_rectangles(320, seed=0)).mean(0, keepdim=True)
    mean_image_psnr = psnr(train_mean.expand_as(unseen), unseen).mean().item()

    assert fitted_psnr > mean_image_psnr + 5.0, (fitted_psnr, mean_image_psnr)
    assert fitted_psnr > untrained_psnr + 5.0, (fitted_psnr, untrained_psnr)
    # the reported held-out numbers describe the same behaviour
    assert metrics["psnr_held_out"] > metrics["psnr_mean_image_held_out"] + 5.0
    assert abs(metrics["psnr_held_out"] - fitted_psnr) < 3.0
    assert 0.0 < metrics["codebook_usage"] <= 1.0
    assert np.isfinite(metrics["train_loss"])
    assert metrics["num_held_out"] == 32 and metrics["num_train"] == 288


def test_encode_decode_shapes_and_ranges(fitted, config):
    tokenizer, _ = fitted
    images = to_float(coloured_rectangles(5, seed=2))
    codes = tokenizer.encode(images)
    assert codes.shape == (5, config.num_tokens) and codes.dtype == torch.long
    assert tokenizer.vocab_size == config.codebook_size
    assert 0 <= codes.min() and codes.max() < tokenizer.vocab_size

    decoded = tokenizer.decode(codes)
    assert decoded.shape == (5, 3, SIZE, SIZE) and decoded.dtype == torch.float32
    assert 0.0 <= decoded.min() and decoded.max() <= 1.0
    # any in-range codes decode, e.g. a grid of one code
    assert tokenizer.decode(torch.full((2, config.num_tokens), config.codebook_size - 1)).shape == (2, 3, SIZE, SIZE)


def test_fit_is_deterministic_given_seed(config):
    images = coloured_rectangles(64, seed=3)
    runs = []
    for _ in range(2):
        tokenizer = ImageTokenizer(config, seed=7)
        metrics = tokenizer.fit(images, steps=5, batch_size=16, seed=11, progress=False)
        runs.append((metrics["train_loss"], metrics["psnr_held_out"], tokenizer.encode(images)))
    assert runs[0][:2] == runs[1][:2]
    assert torch.equal(runs[0][2], runs[1][2])


def test_save_load_round_trip(fitted, tmp_path):
    tokenizer, _ = fitted
    tokenizer.save(tmp_path)
    assert (tmp_path / CONFIG_NAME).is_file() and (tmp_path / WEIGHTS_NAME).is_file()

    restored = ImageTokenizer.load(tmp_path)
    assert restored.config == tokenizer.config
    images = to_float(coloured_rectangles(8, seed=4))
    codes = tokenizer.encode(images)
    assert torch.equal(restored.encode(images), codes)
    assert torch.equal(restored.decode(codes), tokenizer.decode(codes))


def test_fit_continues_from_trained_weights(fitted, tmp_path):
    tokenizer, metrics = fitted
    resumed = ImageTokenizer.load(tokenizer.save(tmp_path))
    again = resumed.fit(coloured_rectangles(320, seed=0), steps=2, lr=1e-6, progress=False)
    assert again["psnr_held_out"] > metrics["psnr_held_out"] - 1.0  # the trained codebook is kept


def test_load_missing_files_names_the_path(fitted, tmp_path):
    with pytest.raises(FileNotFoundError, match=CONFIG_NAME):
        ImageTokenizer.load(tmp_path)
    tokenizer, _ = fitted
    tokenizer.save(tmp_path)
    (tmp_path / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / WEIGHTS_NAME))):
        ImageTokenizer.load(tmp_path)


def test_uint8_hwc_input_gives_the_same_codes_as_float_chw(fitted):
    tokenizer, _ = fitted
    images = coloured_rectangles(6, seed=5)
    float_codes = tokenizer.encode(to_float(images))
    assert torch.equal(tokenizer.encode(images), float_codes)  # numpy uint8 (B, H, W, C)
    assert torch.equal(tokenizer.encode(torch.from_numpy(images)), float_codes)  # torch uint8
    assert torch.equal(tokenizer.encode(to_float(images).numpy()), float_codes)  # numpy float (B, C, H, W)


@pytest.mark.parametrize(
    "bad",
    [
        torch.rand(2, 1, SIZE, SIZE),  # wrong channels
        torch.rand(2, 3, 2 * SIZE, 2 * SIZE),  # wrong size
        torch.rand(3, SIZE, SIZE),  # missing batch axis
        torch.zeros(2, 3, SIZE, SIZE, dtype=torch.uint8),  # uint8 must be channels-last
    ],
)
def test_wrong_image_shape_names_the_expected_shape(fitted, bad):
    tokenizer, _ = fitted
    expected = f"expected images of shape (B, 3, {SIZE}, {SIZE}) in [0, 1] or uint8 (B, {SIZE}, {SIZE}, 3)"
    with pytest.raises(ValueError, match=re.escape(expected)) as error:
        tokenizer.encode(bad)
    assert str(tuple(bad.shape)) in str(error.value)  # and it says what it got


def test_float_images_outside_unit_range_raise(fitted):
    tokenizer, _ = fitted
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tokenizer.encode(torch.rand(2, 3, SIZE, SIZE) * 255.0)


def test_bad_codes_raise(fitted, config):
    tokenizer, _ = fitted
    n = config.num_tokens
    for value in (-1, config.codebook_size):
        codes = torch.zeros(2, n, dtype=torch.long)
        codes[1, 3] = value
        with pytest.raises(ValueError, match=rf"\[0, {config.codebook_size}\)"):
            tokenizer.decode(codes)
    with pytest.raises(ValueError, match=rf"\(B, {n}\)"):
        tokenizer.decode(torch.zeros(2, n + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="integer codes"):
        tokenizer.decode(torch.zeros(2, n))


# ------------------------------------------------------------------------------- MONAI VQVAE backend


def test_monai_backend_grid_and_validation():
    config = ImageTokenizerConfig(image_size=64, channels=1, block_out_channels=(32, 64), backend="monai")
    assert config.grid_size == 16  # one stride-2 level per entry (VQModel halves between entries)
    assert ImageTokenizerConfig(image_size=64, block_out_channels=(32, 64)).grid_size == 32
    with pytest.raises(ValueError, match="backend must be one of"):
        ImageTokenizerConfig(backend="taming")
    with pytest.raises(ValueError, match="mid_block_attention"):
        ImageTokenizerConfig(backend="monai", mid_block_attention=True)


def test_monai_backend_learns_and_round_trips(tmp_path):
    """Grayscale VQVAE: fit beats the mean image, codes survive save/load, the EMA codebook is used."""
    from monai.networks.nets import VQVAE

    config = ImageTokenizerConfig(
        image_size=SIZE, channels=1, codebook_size=32, latent_channels=8, block_out_channels=(16, 16), backend="monai"
    )
    images = to_float(coloured_rectangles(256, seed=3)).mean(dim=1, keepdim=True)  # (B, 1, 16, 16)
    tokenizer = ImageTokenizer(config)
    assert isinstance(tokenizer.model, VQVAE)
    metrics = tokenizer.fit(images, steps=80, batch_size=32, lr=3e-3, progress=False)
    assert metrics["psnr_held_out"] > metrics["psnr_mean_image_held_out"] + 3.0, metrics
    assert metrics["codebook_usage"] > 0.25, metrics
    codes = tokenizer.encode(images[:8])
    assert codes.shape == (8, config.grid_size**2) == (8, 16) and codes.dtype == torch.long
    assert tokenizer.decode(codes).shape == (8, 1, SIZE, SIZE)
    loaded = ImageTokenizer.load(tokenizer.save(tmp_path / "vq"))
    assert loaded.config.backend == "monai"
    assert torch.equal(loaded.encode(images[:8]), codes)
    assert torch.allclose(loaded.decode(codes), tokenizer.decode(codes))
