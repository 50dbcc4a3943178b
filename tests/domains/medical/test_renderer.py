"""The procedural chest X-ray renderer: shapes, determinism, and each finding drawn where it belongs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from domains.medical.findings import PATHOLOGIES
from domains.medical.renderer import landmarks, render_batch, render_chest_xray, sample_anatomy

SIZE = 128
SEEDS = (0, 1, 2, 3)


def patient(seed: int, **changes):
    """A random patient, centred, unrotated and noise-free, so differences come only from findings."""
    anatomy = sample_anatomy(np.random.default_rng(seed))
    return dataclasses.replace(anatomy, rotation=0.0, shift_x=0.0, shift_y=0.0, noise=0.0, **changes)


def pair(finding: str, seed: int, size: int = SIZE):
    """(normal film, film with `finding`, anatomy): same patient, same random streams."""
    anatomy = patient(seed)
    normal = render_chest_xray((), size, rng=seed, anatomy=anatomy)
    sick = render_chest_xray((finding,), size, rng=seed, anatomy=anatomy)
    return normal, sick, anatomy


def window(image, x0, x1, y0, y1):
    """Pixels whose centres lie in the normalised box [x0, x1] x [y0, y1] (x right, y down)."""
    size = image.shape[-1]
    centres = (np.arange(size) + 0.5) * 2 / size - 1
    cols = (centres >= x0) & (centres <= x1)
    rows = (centres >= y0) & (centres <= y1)
    return image[np.ix_(rows, cols)]


def apex_zone(anatomy, side: int):
    """Upper-lateral quarter of one lung (side -1: patient right = image left)."""
    w = anatomy.thorax_half_width
    hilum_y = landmarks(anatomy)["right_hilum" if side < 0 else "left_hilum"][1]
    x0, x1 = sorted((side * 0.45 * w, side * 0.95 * w))
    return x0, x1, anatomy.apex_y, hilum_y


def base_zone(anatomy, side: int):
    """Lower-lateral part of one lung, from below the hilum to the costophrenic angle."""
    w = anatomy.thorax_half_width
    dome = anatomy.right_dome_y if side < 0 else anatomy.left_dome_y
    x0, x1 = sorted((side * 0.5 * w, side * 0.95 * w))
    return x0, x1, dome - 0.15, dome + anatomy.costophrenic_depth


# ----------------------------------------------------------------------------- shape and determinism


@pytest.mark.parametrize("size", [64, 128])
def test_film_shape_dtype_range_and_dark_air(size):
    image = render_chest_xray(("effusion", "support_devices"), size, rng=5)
    assert image.shape == (size, size) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert image.std() > 0.15  # a chest, not a flat field
    corner = size // 10
    assert image[:corner, :corner].mean() < 0.15 and image[:corner, -corner:].mean() < 0.15  # air


def test_batch_is_deterministic_per_item_and_seed_sensitive():
    sets = [(), ("edema",), ("fracture", "nodule_mass"), ("no_finding",)]
    batch = render_batch(sets, 64, seed=3)
    assert batch.shape == (4, 1, 64, 64) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch, render_batch(sets, 64, seed=3))
    assert np.abs(batch - render_batch(sets, 64, seed=4)).mean() > 0.01
    # Item i depends only on (seed, i), not on the other items or the batch length.
    np.testing.assert_array_equal(batch[:2], render_batch(sets[:2], 64, seed=3))
    single = render_chest_xray(sets[2], 64, rng=np.random.default_rng([3, 2]))
    np.testing.assert_array_equal(batch[2, 0], single)


def test_no_finding_draws_the_normal_chest():
    np.testing.assert_array_equal(render_chest_xray(("no_finding",), 64, rng=9), render_chest_xray((), 64, rng=9))


def test_features_scale_with_size():
    anatomy = patient(4)
    big = render_chest_xray(("nodule_mass", "effusion"), 128, rng=4, anatomy=anatomy)
    small = render_chest_xray(("nodule_mass", "effusion"), 64, rng=4, anatomy=anatomy)
    downsampled = big.reshape(64, 2, 64, 2).mean((1, 3))
    assert np.abs(downsampled - small).mean() < 0.03


def test_normal_anatomy_varies_and_keeps_heart_under_half_the_thorax():
    rng = np.random.default_rng(0)
    patients = [sample_anatomy(rng) for _ in range(200)]
    assert max(p.heart_ratio for p in patients) < 0.5
    assert all(p.right_dome_y < p.left_dome_y for p in patients)  # right hemidiaphragm higher
    assert np.std([p.contrast for p in patients]) > 0.05 and np.std([p.rotation for p in patients]) > 0.01


# ----------------------------------------------------------------------------- normal anatomy


def test_pa_orientation_heart_bulges_to_image_right_and_right_dome_is_higher():
    for seed in SEEDS:
        anatomy = patient(seed)
        image = render_chest_xray((), SIZE, rng=seed, anatomy=anatomy)
        w = anatomy.thorax_half_width
        # Above both domes, the image right (patient's left) has more bright heart than the image left.
        row = window(image, -w, w, anatomy.right_dome_y - 0.15, anatomy.right_dome_y - 0.1)
        lung_level = np.median(window(image, -0.8 * w, -0.6 * w, -0.3, -0.1))
        bright = row > lung_level + 0.2
        half = bright.shape[1] // 2
        assert bright[:, half:].sum() > 1.3 * bright[:, :half].sum()
        # Scanning down at 0.75 of the half-width, the image-left diaphragm is met first.
        def diaphragm_y(x):
            column = window(image, x - 0.01, x + 0.01, -0.2, 0.9).mean(1)
            return np.argmax(column > lung_level + 0.25)

        assert diaphragm_y(-0.75 * w) < diaphragm_y(0.75 * w)


# ----------------------------------------------------------------------------- findings, each where it belongs


def heart_width_ratio(image, anatomy):
    """Cardiothoracic ratio measured on the film just above the left dome."""
    y = anatomy.left_dome_y - 0.05
    row = window(image, -1, 1, y - 0.005, y + 0.02)[0]
    size = image.shape[-1]
    centre = int((landmarks(anatomy)["heart_center"][0] + 1) / 2 * size)
    lung = np.median(window(image, -0.75 * anatomy.thorax_half_width, -0.6 * anatomy.thorax_half_width, y, y + 0.02))
    bright = row > (lung + row[centre]) / 2
    left, right = centre, centre
    while left > 0 and bright[left - 1]:
        left -= 1
    while right < size - 1 and bright[right + 1]:
        right += 1
    return (right - left + 1) / (anatomy.thorax_half_width * size)


def test_cardiomegaly_widens_the_heart_past_half_the_thorax():
    for seed in SEEDS:
        normal, sick, anatomy = pair("cardiomegaly", seed)
        assert heart_width_ratio(normal, anatomy) < 0.48
        assert heart_width_ratio(sick, anatomy) > 0.52
        assert np.abs(window(sick - normal, -1, 1, -1, anatomy.apex_y + 0.3)).max() < 1e-6  # upper chest untouched


def test_effusion_blunts_a_costophrenic_angle_that_is_sharp_and_dark_when_normal():
    for seed in SEEDS:
        normal, sick, anatomy = pair("effusion", seed)
        w = anatomy.thorax_half_width
        lung = np.median(window(normal, -0.7 * w, -0.5 * w, -0.3, -0.1))
        abdomen = np.median(window(normal, -0.3, 0.3, 0.75, 0.85))
        blunted = 0
        for name, side in (("right", -1), ("left", 1)):
            x, y = landmarks(anatomy)[f"{name}_costophrenic"]
            corner = (*sorted((x - side * 0.07, x - side * 0.04)), y - 0.1, y - 0.07)  # just inside the vertex
            assert window(normal, *corner).mean() < lung + 0.3 * (abdomen - lung)  # dark lung reaches the angle
            filled = window(sick, *corner)
            blunted += filled.mean() > lung + 0.7 * (abdomen - lung)
        assert blunted >= 1
        diff = sick - normal
        assert np.abs(window(diff, -1, 1, -1, anatomy.apex_y + 0.3)).max() < 1e-6  # apices untouched


def test_pneumothorax_darkens_one_apex_and_draws_a_pleural_line():
    for seed in SEEDS:
        normal, sick, anatomy = pair("pneumothorax", seed)
        diff = sick - normal
        changes = [window(diff, *apex_zone(anatomy, side)) for side in (-1, 1)]
        darker = [c.mean() < -0.03 for c in changes]
        assert sum(darker) == 1
        sick_side = changes[darker.index(True)]
        other_side = changes[darker.index(False)]
        assert sick_side.max() > 0.05  # the bright visceral pleural line
        assert np.abs(other_side).max() < 1e-6


def test_consolidation_fills_airspace_in_one_lung():
    for seed in SEEDS:
        normal, sick, anatomy = pair("consolidation", seed)
        diff = sick - normal
        w = anatomy.thorax_half_width
        sides = [window(diff, -w, -0.1, -1, 1), window(diff, 0.1, w, -1, 1)]
        brighter = [(s > 0.15).mean() for s in sides]
        assert max(brighter) > 0.04 and min(brighter) == 0.0


def test_atelectasis_draws_a_band_at_a_lung_base():
    for seed in SEEDS:
        normal, sick, anatomy = pair("atelectasis", seed)
        diff = sick - normal
        rows, cols = np.nonzero(diff > 0.2)
        assert len(rows) > 0
        centres = (np.array([rows.mean(), cols.mean()]) + 0.5) * 2 / SIZE - 1
        hilum_y = max(landmarks(anatomy)["right_hilum"][1], landmarks(anatomy)["left_hilum"][1])
        assert centres[0] > hilum_y  # below the hila, toward the base
        assert (np.sign(cols - SIZE / 2 + 0.5) == np.sign(centres[1])).mean() > 0.9  # in one lung


def test_edema_hazes_both_perihilar_regions_more_than_the_periphery():
    for seed in SEEDS:
        normal, sick, anatomy = pair("edema", seed)
        diff = sick - normal
        marks = landmarks(anatomy)
        for name, side in (("right", -1), ("left", 1)):
            x, y = marks[f"{name}_hilum"]
            perihilar = window(diff, *sorted((x + side * 0.05, x + side * 0.2)), y - 0.1, y + 0.1).mean()
            periphery = window(diff, *apex_zone(anatomy, side)[:2], anatomy.apex_y, anatomy.apex_y + 0.15).mean()
            assert perihilar > 0.05 and perihilar > 2 * periphery


def test_nodules_are_small_round_bright_blobs():
    for seed in SEEDS:
        normal, sick, anatomy = pair("nodule_mass", seed)
        diff = sick - normal
        assert diff.max() > 0.2
        blobs, count = ndimage.label(diff > 0.1)
        assert 1 <= count <= 3 and (blobs > 0).mean() < 0.05
        for box in ndimage.find_objects(blobs):
            height, width = box[0].stop - box[0].start, box[1].stop - box[1].start
            assert 0.6 < height / width < 1.6


def test_opacity_is_a_hazy_change_confined_to_the_lungs():
    for seed in SEEDS:
        normal, sick, anatomy = pair("opacity", seed)
        diff = sick - normal
        assert (diff > 0.05).mean() > 0.01 and diff.min() > -1e-3
        w = anatomy.thorax_half_width
        assert np.abs(window(diff, -1, 1, anatomy.left_dome_y + anatomy.costophrenic_depth + 0.05, 1)).max() < 1e-6
        assert np.abs(window(diff, -1, -w - 0.03, -1, 1)).max() < 1e-6 and np.abs(window(diff, w + 0.03, 1, -1, 1)).max() < 1e-6


def test_support_devices_add_thin_metal_bright_pixels():
    for seed in SEEDS:
        normal, sick, _ = pair("support_devices", seed)
        metal = (sick > 0.97) & (normal < 0.97)
        assert (normal > 0.97).mean() < 1e-3 and metal.sum() > 20
        assert metal.mean() < 0.05  # thin lines and small boxes, not a white-out


def test_fracture_breaks_ribs_in_one_small_region():
    for seed in SEEDS:
        normal, sick, anatomy = pair("fracture", seed)
        rows, cols = np.nonzero(np.abs(sick - normal) > 0.03)
        assert len(rows) > 20
        x = (cols + 0.5) * 2 / SIZE - 1
        assert np.all(np.sign(x) == np.sign(x[0]))  # one side only
        assert np.ptp(x) < 0.8 * anatomy.thorax_half_width  # the broken stretch, not the whole cage
        assert np.all(np.abs(x) < anatomy.thorax_half_width + 0.08)  # on the rib cage


def test_every_pathology_changes_the_film():
    for name in PATHOLOGIES:
        normal, sick, _ = pair(name, 11, size=64)
        assert np.abs(sick - normal).max() > 0.1, name


# ----------------------------------------------------------------------------- bad input


def test_unknown_finding_is_rejected_by_name():
    with pytest.raises(ValueError, match="unknown finding.*pneumonia"):
        render_chest_xray(("pneumonia",), 64)


def test_no_finding_with_a_pathology_is_rejected_naming_both():
    with pytest.raises(ValueError, match="no_finding.*effusion"):
        render_chest_xray(("no_finding", "effusion"), 64)


@pytest.mark.parametrize("size", [16, 31, 64.0, True])
def test_bad_size_is_rejected(size):
    with pytest.raises(ValueError, match="size must be an int >= 32"):
        render_chest_xray((), size)
    with pytest.raises(ValueError, match="size must be an int >= 32"):
        render_batch([()], size)
