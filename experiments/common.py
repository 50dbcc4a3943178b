"""Pieces every experiment script shares: its checked config, timed stages and resumable training runs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from core.cli import domain_monitors
from core.config import load_config
from core.data import SequenceDataset, write_json_atomic
from core.training import Trainer

__all__ = ["experiment_config", "saved_stage", "stage", "train"]


def experiment_config(path: str | Path, default: Path, free: tuple[str, ...] = ()) -> dict:
    """The experiment config at `path`, checked against the script's committed `default` config: the same keys
    at every level, so a misspelt or missing setting stops the run before its first stage (naming the file and
    the dotted key) instead of being ignored or failing hours in. Below the dotted keys in `free` (mappings whose
    keys are data, as robotics' `data.policies`, or settings checked where they are used, as its `planning.mpc`) any
    keys go; a mapping must stay a mapping and a value a value."""
    import yaml

    def load(file: Path) -> dict:
        try:
            cfg = yaml.safe_load(Path(file).read_text())
        except (OSError, yaml.YAMLError) as error:
            raise SystemExit(f"experiment config {file}: {error}")
        if not isinstance(cfg, dict):
            raise SystemExit(f"experiment config {file}: expected a mapping of settings like {default}'s")
        return cfg

    def check(cfg: dict, reference: dict, prefix: str = "") -> None:
        unknown, missing = sorted(set(cfg) - set(reference), key=str), sorted(set(reference) - set(cfg), key=str)
        if unknown or missing:
            what = f"unknown setting {prefix}{unknown[0]}" if unknown else f"missing setting {prefix}{missing[0]}"
            where = prefix.rstrip(".") or "the top level"
            raise SystemExit(f"experiment config {path}: {what}; {default.name} has {', '.join(map(str, reference))} "
                             f"at {where} (copy it and change the values)")
        for key, value in reference.items():
            if isinstance(value, dict) != isinstance(cfg[key], dict):
                raise SystemExit(f"experiment config {path}: {prefix}{key} should be "
                                 f"{'a mapping' if isinstance(value, dict) else 'a value, not a mapping'}, as in {default.name}")
            if isinstance(value, dict) and f"{prefix}{key}" not in free:
                check(cfg[key], value, f"{prefix}{key}.")

    cfg = load(path)
    check(cfg, load(default))
    return cfg


class stage:
    """`with stage("finetune", times, work / "finetune"):` prints the stage and records its wall time (s) in `times`.

    Given the folders the stage builds, the time recorded is the one of the run that built them (summed over the
    folders), so a resumed experiment, which finds the stage's work done, reports the same times as the run that
    did it: a folder the stage creates gets `seconds.json` when the stage finishes (`train` writes its own, and a
    training from before that record counts its trainer's `wall_s`). A folder without a record (an earlier run
    stopped in the stage) leaves this run's time.
    """

    def __init__(self, name: str, times: dict, *folders: Path):
        self.name, self.times, self.folders = name, times, folders

    def __enter__(self):
        print(f"== {self.name}", flush=True)
        self.fresh = [not folder.exists() for folder in self.folders]
        self.started = time.perf_counter()

    def __exit__(self, exc_type, *exc):
        seconds = round(time.perf_counter() - self.started, 1)
        self.times[self.name] = seconds
        if exc_type is None:
            for folder, fresh in zip(self.folders, self.fresh):
                if fresh and folder.is_dir() and not (folder / "seconds.json").exists():
                    write_json_atomic(folder / "seconds.json", {"seconds": seconds})
            recorded = [recorded_seconds(folder) for folder in self.folders]
            if recorded and None not in recorded:
                self.times[self.name] = round(sum(recorded), 1)
        print(f"== {self.name}: {seconds} s" + (f" (recorded by the run that did it: {self.times[self.name]} s)"
                                                 if self.times[self.name] != seconds else ""), flush=True)


def saved_stage(path: Path, label: str, times: dict, evaluate: Callable[[], dict], key: str = "seconds") -> dict:
    """The results JSON `path` an earlier run wrote, its stage time (under `key`; in a file from before `key`,
    `seconds`) back in `times[label]`; else `evaluate()` run as stage `label`, its time stored under `key`,
    and written to `path` atomically."""
    if path.exists():
        data = json.loads(path.read_text())
        times[label] = data.get(key, data.get("seconds"))
        return data
    with stage(label, times):
        data = evaluate()
    data[key] = times[label]
    write_json_atomic(path, data)
    return data


def recorded_seconds(folder: Path) -> float | None:
    """The wall time (s) recorded in a stage's `folder` by the run that built it (see `stage`), or None."""
    if (folder / "seconds.json").is_file():
        return json.loads((folder / "seconds.json").read_text())["seconds"]
    if (folder / "summary.json").is_file():  # a training finished before `train` recorded its time
        return json.loads((folder / "summary.json").read_text())["wall_s"]
    return None


def train(name: str, cfg: dict, data: Path, out: Path, steps: int, init: Path | None = None,
          overrides: list[str] = ()) -> Path:
    """Train `cfg["model_preset"]` on `data` into `out` (fine-tuning all weights from `init` if given),
    with the experiment's `preset_overrides` and then `overrides` ("train.lr=1e-3", ...); returns
    `out/final`. A finished earlier run is reused; an interrupted one resumes from its checkpoint. The run
    that finishes records its wall time (building, training, export) in `out/seconds.json`, with the earlier
    runs' training up to the checkpoint it resumed from (`Trainer.earlier_s`; `earlier_runs_s` null when that
    checkpoint predates the record, and the seconds are this run's alone)."""
    if (out / "final" / "config.json").exists():
        return out / "final"
    started = time.perf_counter()
    overrides = [f"data.path={data}", f"train.steps={steps}", f"train.seed={cfg['seed']}",
                 *cfg["preset_overrides"], *overrides]
    if init is not None:
        overrides += [f"finetune.init={init}", "finetune.mode=full"]
    config = load_config(cfg["model_preset"], overrides)
    config.name, config.out_dir = name, str(out)
    dataset = SequenceDataset(data)
    trainer = Trainer(config, dataset, out, monitors=domain_monitors(dataset, config))
    trainer.fit()
    earlier = trainer.earlier_s
    write_json_atomic(out / "seconds.json", {"seconds": round(time.perf_counter() - started + (earlier or 0.0), 1),
                                             **({"earlier_runs_s": earlier} if earlier != 0.0 else {})})
    return out / "final"
