"""Pieces every experiment script shares: timed stages and resumable training runs."""

from __future__ import annotations

import time
from pathlib import Path

from core.cli import domain_monitors
from core.config import load_config
from core.data import SequenceDataset
from core.training import Trainer

__all__ = ["stage", "train"]


class stage:
    """`with stage("finetune", times):` prints the stage and records its wall time (s) in `times`."""

    def __init__(self, name: str, times: dict):
        self.name, self.times = name, times

    def __enter__(self):
        print(f"== {self.name}", flush=True)
        self.started = time.perf_counter()

    def __exit__(self, *exc):
        self.times[self.name] = round(time.perf_counter() - self.started, 1)
        print(f"== {self.name}: {self.times[self.name]} s", flush=True)


def train(name: str, cfg: dict, data: Path, out: Path, steps: int, init: Path | None = None,
          overrides: list[str] = ()) -> Path:
    """Train `cfg["model_preset"]` on `data` into `out` (fine-tuning all weights from `init` if given),
    with the experiment's `preset_overrides` and then `overrides` ("train.lr=1e-3", ...); returns
    `out/final`. A finished earlier run is reused; an interrupted one resumes from its checkpoint."""
    if (out / "final" / "config.json").exists():
        return out / "final"
    overrides = [f"data.path={data}", f"train.steps={steps}", f"train.seed={cfg['seed']}",
                 *cfg.get("preset_overrides", []), *overrides]
    if init is not None:
        overrides += [f"finetune.init={init}", "finetune.mode=full"]
    config = load_config(cfg["model_preset"], overrides)
    config.name, config.out_dir = name, str(out)
    dataset = SequenceDataset(data)
    Trainer(config, dataset, out, monitors=domain_monitors(dataset, config)).fit()
    return out / "final"
