"""Probe: which image tokenizer keeps the small findings (fracture, nodule/mass) readable?

For each tokenizer (image size, code grid, codebook size) the chest X-ray VQVAE is fitted as the experiment fits
it (`fit_medical_tokenizers`: the first 6,000 renders of the training studies, the given VQ steps), and a small
CNN is trained to read the judge's 11 findings off the VQ reconstructions of renders 0 and 1 of the 3,530
training studies; thresholds are tuned on render 500 of the first 800 and the CNN is scored on render 0 of the
397 held-out studies (the evaluation's reference images). `pixels` rows train the same CNN on the renders
themselves: what the image holds at that size. The reconstruction row of a tokenizer bounds what a model that
sees only its codes can read; a row that keeps fracture and nodule/mass near the pixels' says that tokenizer
would not lose them.

    python experiments/results/medical/probe_tokenizer_resolution/probe.py \
        --variants pixels:64 64:16:512 64:16:2048 64:32:512 128:32:512 pixels:128 --out results.json

The classifier is the one of `../probe_reading/probe_classifier.py` (4 conv blocks, 800 steps of 32), here in fp32.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from core.provenance import provenance  # noqa: E402
from domains.medical.dataset import IMAGE, fit_medical_tokenizers, study_findings, study_images  # noqa: E402
from domains.medical.evaluate import judge_targets  # noqa: E402
from domains.medical.metrics import multilabel_f1, tune_thresholds  # noqa: E402
from domains.medical.reports import find_openi_archive, read_openi, split_studies  # noqa: E402

TUNE_STUDIES, TUNE_VARIANT = 800, 500  # as the classifier probe of probe_reading/


class Reader(nn.Module):
    """(B, 1, S, S) images -> (B, 11) finding logits: four conv blocks, each halving the size, then a mean. Images
    larger than 64 first pass strided 4 x 4 convolutions down to 64 (learned, so nothing is averaged away), which
    keeps the CPU time of 128 x 128 near that of 64 x 64."""

    def __init__(self, image_size: int, findings: int = 11):
        super().__init__()
        layers, width = [], 1
        while image_size > 64:
            layers += [nn.Conv2d(width, 32, 4, stride=2, padding=1), nn.BatchNorm2d(32), nn.GELU()]
            width, image_size = 32, image_size // 2
        for out in (32, 64, 128, 192):
            layers += [nn.Conv2d(width, out, 3, padding=1), nn.BatchNorm2d(out), nn.GELU(),
                       nn.Conv2d(out, out, 3, padding=1), nn.BatchNorm2d(out), nn.GELU(), nn.MaxPool2d(2)]
            width = out
        self.features, self.head = nn.Sequential(*layers), nn.Linear(width, findings)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images).mean((2, 3)))


def read_scores(train: tuple, tune: tuple, test: tuple, steps: int, seed: int) -> dict:
    """Train a `Reader` on (images (N, 1, S, S), targets (N, 11)) and score it on `test` at thresholds tuned on
    `tune` -> macro-F1, per-finding F1, seconds."""
    torch.manual_seed(seed)
    reader = Reader(train[0].shape[-1])
    optimizer = torch.optim.AdamW(reader.parameters(), 1e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-3, total_steps=steps, pct_start=0.05)
    images, targets = train[0], torch.as_tensor(train[1])
    generator, started = torch.Generator().manual_seed(seed), time.perf_counter()
    reader.train()
    for _ in range(steps):
        batch = torch.randint(len(images), (32,), generator=generator)
        loss = nn.functional.binary_cross_entropy_with_logits(reader(images[batch]), targets[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    reader.eval()
    with torch.no_grad():
        probabilities = [torch.cat([torch.sigmoid(reader(x)) for x in part[0].split(256)]).numpy() for part in (tune, test)]
    thresholds = tune_thresholds(probabilities[0], tune[1].astype(bool))
    scores = multilabel_f1(probabilities[1] >= thresholds, test[1].astype(bool))
    return {"macro_f1": scores["macro_f1"], "per_finding": {k: round(v["f1"], 3) for k, v in scores["per_finding"].items()},
            "classifier_seconds": round(time.perf_counter() - started)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["pixels:64", "64:16:512"],
                        help="SIZE:GRID:CODEBOOK (a VQ fitted, the CNN reads its reconstructions) or pixels:SIZE")
    parser.add_argument("--vq-steps", type=int, default=1000, help="the experiment's data.vq_steps")
    parser.add_argument("--classifier-steps", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0, help="of the VQ fits")
    parser.add_argument("--classifier-seeds", type=int, nargs="+", default=[0],
                        help="train the CNN with each seed; with several, a row gives each one's scores (`classifiers`) "
                             "and their means")
    parser.add_argument("--out", required=True, help="JSON to write (rewritten after each variant)")
    args = parser.parse_args()
    train, test = split_studies(read_openi(find_openi_archive()), 0.1, 0)
    targets = {"train": judge_targets([study_findings(s) for s in train] * 2),
               "tune": judge_targets([study_findings(s) for s in train[:TUNE_STUDIES]]),
               "test": judge_targets([study_findings(s) for s in test])}
    renders: dict[int, dict] = {}
    results = {"provenance": provenance(), "args": vars(args), "variants": {}}
    for variant in args.variants:
        parts = variant.split(":")
        size = int(parts[-1] if parts[0] == "pixels" else parts[0])
        if size not in renders:
            started = time.perf_counter()
            renders[size] = {"train": torch.cat([study_images(train, size, v) for v in (0, 1)]),
                             "tune": study_images(train[:TUNE_STUDIES], size, TUNE_VARIANT),
                             "test": study_images(test, size, 0)}
            print(f"renders at {size}: {time.perf_counter() - started:.0f} s", flush=True)
        row: dict = {"image_size": size}
        images = renders[size]
        if parts[0] != "pixels":
            grid, codebook = int(parts[1]), int(parts[2])
            started = time.perf_counter()
            tokenizers, fit = fit_medical_tokenizers(train, size, grid, codebook, vq_steps=args.vq_steps, seed=args.seed,
                                                     progress=False)
            vq = tokenizers.images[IMAGE]
            with torch.no_grad():
                images = {key: vq.reconstruct(x) for key, x in images.items()}
            row |= {"grid": grid, "codebook": codebook, "codes_per_image": grid * grid,
                    "psnr_held_out": fit["psnr_held_out"], "codebook_usage": fit["codebook_usage"],
                    "vq_seconds": round(time.perf_counter() - started)}
        scores = [read_scores(*((images[key], targets[key]) for key in ("train", "tune", "test")), args.classifier_steps,
                              seed) | {"seed": seed} for seed in args.classifier_seeds]
        if len(scores) > 1:
            row |= {"macro_f1": float(np.mean([s["macro_f1"] for s in scores])),
                    "per_finding": {k: round(float(np.mean([s["per_finding"][k] for s in scores])), 3)
                                    for k in scores[0]["per_finding"]},
                    "classifiers": scores}
        else:
            row |= scores[0]
        results["variants"][variant] = row
        print(json.dumps({variant: row}), flush=True)
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
