"""The findings judge: a MONAI `DenseNet121` (spatial_dims=2) multi-label classifier of chest X-rays.

It scores generated images the way UniXGen does, with a chest X-ray network instead of Inception:
findings agreement (its predictions against the report's labels) and FID on its penultimate
(1024-d) features through `monai.metrics.FIDMetric`.

    judge = FindingsJudge(image_size=64)
    report = judge.fit(images, targets, steps=600)     # images (N, 1, 64, 64), targets (N, 11) multi-hot
    present = judge.predict(images)                    # (N, 11) bool, per-finding tuned thresholds
    features = judge.features(images)                  # (N, 1024)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from core.precision import resolve_dtype

from .findings import FINDINGS
from .metrics import multilabel_f1, roc_auc, tune_thresholds

__all__ = ["FindingsJudge", "feature_fid", "judge_fid"]

CONFIG_NAME, WEIGHTS_NAME = "judge.json", "judge.safetensors"


class FindingsJudge:
    """DenseNet121 over (N, 1, S, S) images in [0, 1] -> one logit per finding in `FINDINGS`."""

    def __init__(self, image_size: int = 64, seed: int = 0):
        from monai.networks.nets import DenseNet121

        self.image_size = image_size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=len(FINDINGS))
        self.net.eval()
        self.thresholds = np.full(len(FINDINGS), 0.5, dtype=np.float32)

    @property
    def device(self) -> torch.device:
        """Where the network's weights are."""
        return next(self.net.parameters()).device

    def to(self, device: str | torch.device) -> "FindingsJudge":
        """Move the network to `device`; inputs follow it, outputs come back on the CPU."""
        self.net.to(device)
        return self

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        shape = (1, self.image_size, self.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != shape:
            raise ValueError(f"judge: expected images (N, {', '.join(map(str, shape))}), got {tuple(images.shape)}")
        return images.float().to(self.device) * 2.0 - 1.0

    @torch.no_grad()
    def logits(self, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        """(N, 1, S, S) in [0, 1] -> (N, F) logits."""
        self.net.eval()
        return torch.cat([self.net(self._check(chunk)).cpu() for chunk in images.split(batch_size)])

    def predict(self, images: torch.Tensor) -> np.ndarray:
        """(N, 1, S, S) -> (N, F) bool, each finding above its threshold tuned on the judge's held-out images."""
        return torch.sigmoid(self.logits(images)).numpy() > self.thresholds

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        """(N, 1, S, S) -> (N, 1024) penultimate features (after global average pooling)."""
        self.net.eval()
        head = self.net.class_layers[:-1]  # relu, pool, flatten (the last layer is the classifier)
        return torch.cat([head(self.net.features(self._check(chunk))).cpu() for chunk in images.split(batch_size)])

    def fit(self, images: torch.Tensor, targets: np.ndarray, steps: int = 600, batch_size: int = 32,
            lr: float = 1e-3, held_out: float = 0.15, seed: int = 0, bf16: bool = True, progress: bool = True) -> dict:
        """Train on images (N, 1, S, S) with multi-hot targets (N, F); tune per-finding thresholds for F1
        on a held-out fraction and report its per-finding F1 and AUC.

        bf16: mixed precision for the training steps (2x faster on a CPU with bf16 units, fp32 where the
        device has none: `core.precision`; the thresholds, predictions and features are computed in fp32)."""
        targets = torch.as_tensor(np.asarray(targets, np.float32))
        if targets.shape != (images.shape[0], len(FINDINGS)):
            raise ValueError(f"judge.fit: targets must be (N={images.shape[0]}, {len(FINDINGS)}), got {tuple(targets.shape)}")
        self._check(images[:1])
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(images.shape[0], generator=generator)
        n_held = max(1, int(held_out * images.shape[0]))
        held, train = order[:n_held], order[n_held:]
        # rare findings weigh more: positive weight = negatives / positives, capped
        positives = targets[train].sum(0).clamp(min=1)
        pos_weight = ((len(train) - positives) / positives).clamp(max=20.0)
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=lr, weight_decay=1e-4)
        warmup = max(1, steps // 10)  # linear warm-up, then cosine decay to zero
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min((step + 1) / warmup, 0.5 * (
            1 + np.cos(np.pi * min(1.0, max(0, step - warmup) / max(1, steps - warmup))))))
        bf16 = resolve_dtype("bf16" if bf16 else "fp32", self.device, "judge.fit bf16") == "bf16"
        started, losses = time.perf_counter(), []
        self.net.train()
        for step in tqdm(range(steps), desc="fit findings judge", disable=not progress, leave=False):
            index = train[torch.randint(len(train), (batch_size,), generator=generator)]
            batch = images[index]
            if torch.rand((), generator=generator) < 0.5:  # small shifts: robustness to generated images' jitter
                batch = torch.roll(batch, shifts=tuple(torch.randint(-2, 3, (2,), generator=generator).tolist()), dims=(2, 3))
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = self.net(self._check(batch)).float()
            loss = F.binary_cross_entropy_with_logits(logits, targets[index].to(logits.device),
                                                      pos_weight=pos_weight.to(logits.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        self.net.eval()
        probabilities = torch.sigmoid(self.logits(images[held])).numpy()
        reference = targets[held].numpy() > 0.5
        self.thresholds = tune_thresholds(probabilities, reference)
        scores = multilabel_f1(probabilities > self.thresholds, reference)
        return {"steps": steps, "seconds": time.perf_counter() - started, "train_loss": float(np.mean(losses[-20:])),
                "num_train": len(train), "num_held_out": n_held, "held_out_macro_f1": scores["macro_f1"],
                "held_out_auc": {name: roc_auc(probabilities[:, j], reference[:, j]) for j, name in enumerate(FINDINGS)},
                "held_out_f1": {name: v["f1"] for name, v in scores["per_finding"].items()},
                "thresholds": dict(zip(FINDINGS, self.thresholds.tolist()))}

    def save(self, directory: str | Path) -> Path:
        """Write `judge.json` (image size, thresholds, findings) and `judge.safetensors`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(directory / WEIGHTS_NAME))
        config = {"image_size": self.image_size, "findings": list(FINDINGS), "thresholds": self.thresholds.tolist()}
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "FindingsJudge":
        """The judge `save` wrote to `directory`; a missing file or key, or other findings, is an error naming it."""
        directory = Path(directory)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"findings judge file not found: {directory / name}")
        config = json.loads((directory / CONFIG_NAME).read_text())
        missing = sorted({"image_size", "findings", "thresholds"} - set(config))
        if missing:
            raise ValueError(f"{directory / CONFIG_NAME}: lacks {', '.join(missing)}")
        if config["findings"] != list(FINDINGS):
            raise ValueError(f"{directory / CONFIG_NAME}: judge trained on findings {config['findings']}, "
                             f"expected {list(FINDINGS)}")
        if len(config["thresholds"]) != len(FINDINGS):
            raise ValueError(f"{directory / CONFIG_NAME}: {len(config['thresholds'])} thresholds, expected one per "
                             f"finding ({len(FINDINGS)})")
        judge = cls(config["image_size"])
        judge.net.load_state_dict(load_file(str(directory / WEIGHTS_NAME)))
        judge.thresholds = np.asarray(config["thresholds"], np.float32)
        return judge


def judge_fid(judge: FindingsJudge, generated: torch.Tensor, reference: torch.Tensor) -> float:
    """FID between two image sets (N, 1, S, S) on the judge's 1024-d features (`monai.metrics.FIDMetric`)."""
    return feature_fid(judge.features(generated), judge.features(reference))


def feature_fid(generated: torch.Tensor, reference: torch.Tensor) -> float:
    """FID between two feature sets (N, D) and (M, D) (`monai.metrics.FIDMetric`; `judge_fid` on features
    already computed)."""
    import warnings

    from monai.metrics import FIDMetric

    a, b = generated.double(), reference.double()
    with warnings.catch_warnings():
        # with fewer images than 1024 the covariances are singular; sqrtm still gives the usual estimate
        warnings.filterwarnings("ignore", message="Matrix is singular")
        try:
            return float(FIDMetric()(a, b))
        except ValueError as error:  # "Imaginary component ... too high": sqrtm of a near-singular product
            if "Imaginary" not in str(error):
                raise
    return _fid_with_ridge(a.numpy(), b.numpy())


def _fid_with_ridge(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """FID of features (N, D) and (M, D) with eps * I added to both covariances (as pytorch-fid does
    when the product of few-sample covariances is too singular for sqrtm)."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    ridge = eps * np.eye(a.shape[1])
    cov_a, cov_b = np.cov(a, rowvar=False) + ridge, np.cov(b, rowvar=False) + ridge
    covmean = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))
