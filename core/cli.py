"""The `uwm` command line: data, pretrain, finetune, eval, generate, bench, demo.

Training commands take a config preset (`--config small`, from experiments/configs/) or a YAML
path, plus dotted overrides: `uwm pretrain --config small --data D --out R model.num_experts=8`.
Domains register their data builders, evaluations and generators in `DOMAINS`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

__all__ = ["DOMAINS", "domain_monitors", "main"]

# Domain name -> module with `add_arguments(command, parser)` and `run(command, args)` for the
# commands it supports (data / eval / generate). The domain issues add robotics, driving, medical.
DOMAINS = {"sequences": "core.sequences_cli", "toy": "core.toy_cli", "robotics": "domains.robotics.cli",
           "driving": "domains.driving.cli", "medical": "domains.medical.cli"}


def _quiet_libraries() -> None:
    # DeepSpeed logs every accelerator probe and process-group creation at INFO/WARNING.
    os.environ.setdefault("DS_ACCELERATOR", "cpu" if not _has_cuda() else "cuda")
    for name in ("DeepSpeed", "deepspeed", "torch.distributed"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def _domain_module(name: str):
    import importlib

    return importlib.import_module(DOMAINS[name])


def domain_monitors(dataset, config) -> list:
    """The training monitors of the dataset's domain (`training_monitors(dataset, validation indices)` in its CLI
    module, where it has one) on the validation split the trainer uses; [] for other data."""
    task = dataset.meta.get("task")
    hook = getattr(_domain_module(task), "training_monitors", None) if task in DOMAINS else None
    if hook is None:
        return []
    from .training import validation_split

    return list(hook(dataset, validation_split(len(dataset), config.data, dataset.groups())[0]))


RUN_FILES = ("checkpoints", "final", "summary.json", "metrics.jsonl", "tb", "config.json", "ds_config.json")


def _set_aside(out: Path) -> Path | None:
    """Move an earlier run's files in `out` (`RUN_FILES`) into `out/before-<utc>/`, out of a new run's way (its
    checkpoints would mix with the new ones, and its summary and export would stand for the new run until that
    one finishes); returns that folder, or None where there was none."""
    found = [out / name for name in RUN_FILES if (out / name).exists()]
    if not found:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    aside, n = out / f"before-{stamp}", 1
    while aside.exists():  # set aside twice in one second: -2, -3, ...
        n += 1
        aside = out / f"before-{stamp}-{n}"
    aside.mkdir()
    for path in found:
        path.rename(aside / path.name)
    return aside


def _add_train_arguments(parser: argparse.ArgumentParser, finetune: bool) -> None:
    parser.add_argument("--config", default="tiny", help="preset name in experiments/configs/ or a YAML path")
    parser.add_argument("--data", help="sequence-shard folder (overrides data.path)")
    parser.add_argument("--out", required=True, help="run folder: checkpoints, TensorBoard logs, final/ export")
    parser.add_argument("--no-resume", action="store_true",
                        help="train from the start: an earlier run's files in --out (checkpoints, final/, "
                        "summary.json, logs) are moved into --out/before-<utc>/")
    parser.add_argument("--no-progress", action="store_true")
    if finetune:
        parser.add_argument("--init", help="pretrained export folder (overrides finetune.init)")
        parser.add_argument("--mode", choices=["full", "experts", "head"], help="overrides finetune.mode")
    parser.add_argument("overrides", nargs="*", metavar="[DOMAIN] key.sub=value",
                        help="optional domain name (checks the data is that domain's), then dotted config overrides")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uwm", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="generate or convert a dataset into sequence shards")
    _add_domain_subcommands(data, "data")

    pretrain = commands.add_parser("pretrain", help="pretrain the backbone on a sequence-shard folder")
    _add_train_arguments(pretrain, finetune=False)
    finetune = commands.add_parser("finetune", help="fine-tune a pretrained backbone (full / experts / head)")
    _add_train_arguments(finetune, finetune=True)

    evaluate = commands.add_parser("eval", help="evaluate a trained model")
    _add_domain_subcommands(evaluate, "eval")
    generate = commands.add_parser("generate", help="sample from a trained model")
    _add_domain_subcommands(generate, "generate")

    bench = commands.add_parser("bench", help="measure training / generation speed and MFU")
    bench.add_argument("what", choices=["train", "generate"])
    bench.add_argument("--config", default="small")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--steps", type=int, default=None, help="timed steps (train) or repeats (generate)")
    bench.add_argument("--new-tokens", type=int, default=512, help="generate: tokens to generate")
    bench.add_argument("--compare-dense", action="store_true", help="train: also time the dense model of equal active parameters")
    bench.add_argument("overrides", nargs="*", metavar="key.sub=value")

    demo = commands.add_parser("demo", help="end-to-end demo at tiny scale on generated data")
    demo.add_argument("--out", default="runs/demo", help="output folder")
    demo.add_argument("--quick", action="store_true", help="fewer scenes and steps (about a minute)")
    return parser


def _add_domain_subcommands(parser: argparse.ArgumentParser, command: str) -> None:
    domains = parser.add_subparsers(dest="domain", required=True, metavar="DOMAIN")
    for name in DOMAINS:
        sub = domains.add_parser(name, help=f"{name} {command}")
        _domain_module(name).add_arguments(command, sub)


def _train(args, finetune: bool) -> None:
    from .config import load_config
    from .data import SequenceDataset
    from .training import Trainer

    overrides = list(args.overrides)
    domain = None
    if overrides and "=" not in overrides[0]:  # `uwm finetune robotics ...`: the data must be that domain's
        domain = overrides.pop(0)
        if domain not in DOMAINS:
            raise ValueError(f"unknown domain {domain!r}; domains are {', '.join(DOMAINS)}")
    if args.data:
        overrides.append(f"data.path={args.data}")
    if finetune and args.init:
        overrides.append(f"finetune.init={args.init}")
    if finetune and args.mode:
        overrides.append(f"finetune.mode={args.mode}")
    config = load_config(args.config, overrides)
    config.out_dir = args.out
    if not config.data.path:
        raise SystemExit("uwm: no data: pass --data DIR (a folder written by `uwm data ...`)")
    if finetune and not config.finetune.init:
        raise SystemExit("uwm finetune: pass --init DIR (the final/ folder of a pretraining run)")
    dataset = SequenceDataset(config.data.path)
    if domain and dataset.meta.get("task") != domain:
        raise ValueError(f"{config.data.path} holds {dataset.meta.get('task')!r} sequences, not {domain!r}")
    from .training.distributed import rank

    if args.no_resume and rank() == 0 and (aside := _set_aside(Path(args.out))):
        print(f"uwm: --no-resume: the earlier run's files are now in {aside}", file=sys.stderr)
    trainer = Trainer(config, dataset, args.out, progress=not args.no_progress, monitors=domain_monitors(dataset, config))
    summary = trainer.fit(resume=not args.no_resume)

    if rank() == 0:
        print(json.dumps(summary, indent=1))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `uwm` console script."""
    _quiet_libraries()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # overrides after options (`uwm finetune robotics --data D a.b=1`): argparse leaves them over
        if args.command not in ("pretrain", "finetune", "bench") or any(e.startswith("-") or "=" not in e for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides += extra
    from .config import ConfigError
    from .training import CheckpointError, TrainingDiverged

    try:
        if args.command in ("pretrain", "finetune"):
            _train(args, finetune=args.command == "finetune")
        elif args.command in ("data", "eval", "generate"):
            _domain_module(args.domain).run(args.command, args)
        elif args.command == "bench":
            from .bench import run_bench

            result = run_bench(args.what, args.config, args.overrides, steps=args.steps,
                               new_tokens=args.new_tokens, compare_dense=args.compare_dense)
            print(json.dumps(result, indent=None if args.json else 1))
        elif args.command == "demo":
            from .demo import run_demo

            run_demo(Path(args.out), quick=args.quick)
    except (ConfigError, CheckpointError, TrainingDiverged, FileNotFoundError, ValueError) as error:
        if os.environ.get("UWM_DEBUG"):
            raise
        print(f"uwm {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
