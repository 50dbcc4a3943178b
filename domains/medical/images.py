"""Chest X-ray files -> model-ready tensors with a MONAI dictionary pipeline (PNG, JPEG and DICOM).

    transform = image_transforms(image_size=64)
    sample = transform({"image": "study/view1_frontal.jpg"})   # sample["image"]: (1, 64, 64) float32 in [0, 1]

MONAI's readers index images (x, y), i.e. (C, W, H) for a PIL image and, with `swap_ij`, for a DICOM
too; the pipeline transposes once so every tensor leaves as (C, H, W) like the rest of the project.
Colour files are read as grayscale; MONOCHROME1 DICOMs (bright = air) are inverted so bone is bright.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import torch
from monai.data import PILReader, PydicomReader
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    Resized,
    ScaleIntensityd,
    Transposed,
)

__all__ = ["image_transforms", "load_image", "load_images"]

SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")
# MONAI logs a warning on every DICOM reader when the optional GPU codec (nvImageCodec) is absent
logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)


class _InvertMonochrome1d(MapTransform):
    """Invert images whose DICOM PhotometricInterpretation is MONOCHROME1 (so that dense = bright)."""

    def __call__(self, data):
        data = dict(data)
        for key in self.key_iterator(data):
            meta = getattr(data[key], "meta", {})
            if str(meta.get("00280004", {}).get("Value", [""])[0]).upper() == "MONOCHROME1":
                data[key] = data[key].max() - data[key]
        return data


@contextlib.contextmanager
def _quiet_readers():
    """Silence two reader warnings that do not apply: projection radiographs carry no 3D position (affine),
    and the GPU DICOM codec is optional."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(ImageOrientationPatient|nvImageCodec).*")
        yield


def _grey(image):
    """A PIL image -> one channel: 8-bit grey ("L"), or 32-bit float for 16/32-bit integer images (PIL's
    conversion of those to "L" clips every value above 255, which whites out a 16-bit radiograph)."""
    if image.mode.startswith("I"):  # I, I;16, I;16B, ...
        return image.convert("I").convert("F")
    return image if image.mode in ("L", "F") else image.convert("L")


def image_transforms(image_size: int = 64, key: str = "image") -> Compose:
    """MONAI pipeline: {key: path} -> {key: (1, image_size, image_size) float32 in [0, 1]}."""
    # prune_metadata=False keeps PhotometricInterpretation (MONOCHROME1 is inverted below)
    readers = [PILReader(converter=_grey), PydicomReader(prune_metadata=False)]
    return Compose(
        [
            LoadImaged(keys=key, reader=readers, image_only=True),
            _InvertMonochrome1d(keys=key),
            EnsureChannelFirstd(keys=key, channel_dim="no_channel"),
            Transposed(keys=key, indices=(0, 2, 1)),  # (C, W, H) from MONAI's readers -> (C, H, W)
            ScaleIntensityd(keys=key, minv=0.0, maxv=1.0),
            Resized(keys=key, spatial_size=(image_size, image_size), mode="area"),
            EnsureTyped(keys=key, dtype=torch.float32, track_meta=False),
        ]
    )


def load_image(path: str | Path, image_size: int = 64) -> torch.Tensor:
    """Read one PNG/JPEG/DICOM chest X-ray -> (1, image_size, image_size) float32 in [0, 1].

    Raises FileNotFoundError for a missing file and ValueError naming the file for an unsupported
    suffix, an unreadable/corrupt image, a DICOM without pixel data, or a constant (blank) image.
    """
    return load_images([path], image_size)[0]


def load_images(paths, image_size: int = 64) -> torch.Tensor:
    """Read several chest X-rays -> (N, 1, image_size, image_size) float32 in [0, 1] (see `load_image`)."""
    with _quiet_readers():
        transform = image_transforms(image_size)
    images = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"chest X-ray not found: {path}")
        if path.suffix.lower() not in SUFFIXES:
            raise ValueError(f"{path}: unsupported image type {path.suffix!r}; expected one of {SUFFIXES}")
        try:
            with _quiet_readers():
                image = transform({"image": str(path)})["image"]
        except Exception as error:  # MONAI wraps reader failures in RuntimeError chains; name the file once
            cause = error.__cause__ or error
            if "pixel_array" in str(cause) or "PixelData" in str(cause):
                raise ValueError(f"{path}: the DICOM file has no pixel data") from None
            first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            raise ValueError(f"{path}: cannot read the image, corrupt or not a {path.suffix} file ({first_line})") from None
        if float(image.max()) <= float(image.min()):
            raise ValueError(f"{path}: the image is blank (every pixel has the same value)")
        images.append(image)
    return torch.stack(images) if images else torch.empty(0, 1, image_size, image_size)
