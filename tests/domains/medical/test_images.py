import numpy as np
import pytest
from PIL import Image

from domains.medical.images import load_image, load_images

from .conftest import test_image, write_dicom


def _check_orientation(image):
    """The band of `test_image` (rows 5-10 of 40, full width) and its grey right strip (cols 50+ of 60), at 32 px."""
    assert image.shape == (1, 32, 32) and image.dtype.is_floating_point
    assert float(image.min()) == 0.0 and float(image.max()) == 1.0
    assert image[0, 5, :20].mean() > 0.9  # band: horizontal, near the top (a transposed read makes it vertical)
    assert image[0, 20, :20].max() < 0.05
    assert abs(image[0, 20, 28].item() - 0.5) < 0.05


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_png_and_jpeg_load_as_channel_height_width(tmp_path, suffix):
    path = tmp_path / f"cxr{suffix}"
    Image.fromarray(np.stack([test_image()] * 3, axis=-1)).save(path, quality=95)  # RGB file -> grayscale
    _check_orientation(load_image(path, image_size=32))


def test_16_bit_png_keeps_its_range(tmp_path):
    path = tmp_path / "cxr16.png"
    Image.fromarray(test_image().astype(np.uint16) * 257).save(path)  # 0..65535, read back as I;16
    assert Image.open(path).mode.startswith("I")
    _check_orientation(load_image(path, image_size=32))  # not whited out above 255


def test_dicom_loads_and_monochrome1_is_inverted(tmp_path):
    _check_orientation(load_image(write_dicom(tmp_path / "a.dcm", test_image()), image_size=32))
    inverted = write_dicom(tmp_path / "b.dcm", 255 - test_image(), photometric="MONOCHROME1")
    _check_orientation(load_image(inverted, image_size=32))
    assert load_images([tmp_path / "a.dcm", inverted], image_size=32).shape == (2, 1, 32, 32)


def test_bad_images_give_clear_errors(tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="corrupt.png: cannot read the image"):
        load_image(corrupt)
    with pytest.raises(ValueError, match="nopixels.dcm: the DICOM file has no pixel data"):
        load_image(write_dicom(tmp_path / "nopixels.dcm", None))
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(blank)
    with pytest.raises(ValueError, match="blank.png: the image is blank"):
        load_image(blank)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="unsupported image type"):
        load_image(tmp_path / "notes.txt")
