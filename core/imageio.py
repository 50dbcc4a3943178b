"""PNG reading and writing for (3, H, W) float images in [0, 1]; GIFs of frame sequences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["read_png", "write_png", "to_uint8", "write_gif"]


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
    Image.fromarray(to_uint8(image)).save(path)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) float in [0, 1] -> uint8 (..., H, W, 3)."""
    return (images.detach().clamp(0, 1).movedim(-3, -1).cpu().numpy() * 255).round().astype(np.uint8)


def write_gif(frames, path: str | Path, fps: float = 5.0, scale: int = 1) -> None:
    """uint8 frames (T, H, W, 3) -> an endlessly looping GIF, each pixel `scale` x `scale`."""
    from PIL import Image

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(np.asarray(f)).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST)
              for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
