"""Metrics shared by every domain."""

from __future__ import annotations

import torch

__all__ = ["psnr"]


def psnr(prediction: torch.Tensor, target: torch.Tensor, max_value: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, one value per image.

    prediction, target: (B, ...) in [0, max_value]. Returns (B,). Identical images give +inf.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"psnr: prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    mse = (prediction.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(max_value**2 / mse)
