"""The learned context decoder: it puts back the real detail a VQ tokenizer loses, round-trips through disk,
starts as the plain decoding, and rejects bad input clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.tokenizers.context_decoder import (ContextDecoder, ContextDecoderConfig, anchored_decode, context_inputs,
                                             prepare_context)
from core.tokenizers.image import ImageTokenizer, ImageTokenizerConfig

SIZE = 16


def moving_squares(sequences: int, frames: int, seed: int) -> list[np.ndarray]:
    """uint8 (frames, 16, 16, 3) sequences: a fixed random texture (each sequence its own, finer than the
    VQ's cells) under a square that moves one pixel per frame."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(sequences):
        texture = rng.integers(60, 200, (SIZE, SIZE, 3)).astype(np.uint8)
        top, left = rng.integers(0, SIZE - 5, 2)
        sequence = np.repeat(texture[None], frames, 0)
        for t in range(frames):
            x = (left + t) % (SIZE - 4)
            sequence[t, top:top + 4, x:x + 4] = (250, 20, 20)
        out.append(sequence)
    return out


@pytest.fixture(scope="module")
def vq() -> ImageTokenizer:
    tokenizer = ImageTokenizer(ImageTokenizerConfig.tiny(SIZE), seed=0)
    tokenizer.fit(np.concatenate(moving_squares(16, 6, seed=1)), steps=60, progress=False)
    return tokenizer


def test_the_learned_decoder_puts_back_the_detail_the_tokens_lose(vq, tmp_path):
    sequences = moving_squares(24, 8, seed=2)
    config = ContextDecoderConfig(channels=8, max_gap=3)
    untrained = ContextDecoder(vq, config)
    codes = vq.encode(sequences[0][3:6])[None]  # (1, 3, N)
    plain = vq.decode(codes[0])[None]
    assert torch.equal(untrained.decode(codes, sequences[0][:1]), plain)  # zero-initialised: the plain decoding

    decoder, report = ContextDecoder.fit(vq, sequences, config, steps=150, lr=3e-3, progress=False)
    learned, anchored, plain = (np.array(report[f"psnr_{name}_by_gap"]) for name in ("learned", "anchored", "plain"))
    assert learned.shape == plain.shape == (3,)  # held-out sequences, per gap 1..3
    assert (learned > plain + 2.0).all(), report  # the texture comes back from the context frame
    assert learned.mean() > anchored.mean(), report  # ... also where the square moved the codes

    decoder.save(tmp_path / "decoder")
    loaded = ContextDecoder.load(tmp_path / "decoder", vq)
    frames = decoder.decode(codes, sequences[0][:1])
    assert frames.shape == (1, 3, 3, SIZE, SIZE) and 0 <= frames.min() and frames.max() <= 1
    assert torch.equal(loaded.decode(codes, sequences[0][:1]), frames)
    prepared = prepare_context(vq, sequences[0][:1])  # the context's encoding done once, reused
    assert torch.equal(decoder.decode(codes, prepared), frames)
    assert torch.equal(anchored_decode(vq, codes, prepared), anchored_decode(vq, codes, sequences[0][:1]))
    with pytest.raises(ValueError, match="one frame per row: 2 rows, 1 context frames"):
        decoder.decode(torch.cat([codes, codes]), prepared)


def test_bad_context_and_missing_files_get_clear_errors(vq, tmp_path):
    codes = vq.encode(moving_squares(1, 2, seed=3)[0])[None]  # (1, 2, N)
    with pytest.raises(ValueError, match=r"context must be uint8 frames \(1, 16, 16, 3\)"):
        context_inputs(vq, codes, np.zeros((2, SIZE, SIZE, 3), np.uint8))  # two contexts for one row
    with pytest.raises(ValueError, match=r"context must be uint8 frames"):
        ContextDecoder(vq).decode(codes, np.zeros((1, SIZE, SIZE, 3), np.float32))
    with pytest.raises(FileNotFoundError, match="context_decoder.json"):
        ContextDecoder.load(tmp_path, vq)
    with pytest.raises(ValueError, match="channels must be a positive multiple of 4"):
        ContextDecoderConfig(channels=6)  # GroupNorm(4, 6) would fail inside torch
    ContextDecoder(vq).save(tmp_path / "decoder")
    with pytest.raises(ValueError, match="fitted on another frame tokenizer"):
        ContextDecoder.load(tmp_path / "decoder", ImageTokenizer(ImageTokenizerConfig.tiny(SIZE), seed=1))
    with pytest.raises(ValueError, match="max_gap"):
        ContextDecoderConfig(max_gap=0)
    with pytest.raises(ValueError, match=">= 2 sequences of >= 2 frames, got 1"):
        ContextDecoder.fit(vq, moving_squares(1, 8, seed=4) + moving_squares(1, 1, seed=5), steps=1)
