"""PNG reading and writing for (3, H, W) float images in [0, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["read_png", "write_png"]


def read_png(path: str | Path, size: int | None = None) -> torch.Tensor:
    """RGB image file -> (3, H, W) float in [0, 1]; with `size`, anything but size x size raises."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        image = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path} is not a readable image: {error}") from None
    if size is not None and image.shape[:2] != (size, size):
        raise ValueError(f"{path}: expected a {size}x{size} image, got {image.shape[1]}x{image.shape[0]}")
    return torch.from_numpy(image).permute(2, 0, 1)


def write_png(image: torch.Tensor, path: str | Path) -> None:
    """(3, H, W) in [0, 1] -> PNG (parent folders created)."""
    from PIL import Image

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    array = (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    Image.fromarray(array).save(path)
