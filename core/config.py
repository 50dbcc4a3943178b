"""Run configuration: nested dataclasses, named YAML presets, dotted command-line overrides.

`load_config("small", ["model.num_experts=8", "train.steps=100"])` reads
`experiments/configs/small.yaml` (or any YAML path) and applies the overrides. Unknown keys and
values of the wrong type raise a `ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .backbone.model import ModelConfig

__all__ = ["ConfigError", "DataConfig", "TrainConfig", "FinetuneConfig", "RunConfig", "load_config", "CONFIG_DIR"]

CONFIG_DIR = Path(__file__).resolve().parents[1] / "experiments" / "configs"


class ConfigError(ValueError):
    """A config file or override names an unknown key or holds a value of the wrong type."""


@dataclass
class DataConfig:
    """path: a sequence-shard folder (`uwm data ...`); seq_len: tokens per row; packing: pack
    several samples per row instead of padding one; val_fraction: samples held out for validation (whole
    sources where the data names them: episodes, scenes, studies; `core.training.validation_split`);
    val_seed: draws them, apart from train.seed so that runs of different seeds validate on the same samples."""

    path: str = ""
    seq_len: int = 256
    packing: bool = False
    val_fraction: float = 0.05
    val_seed: int = 0

    def __post_init__(self):
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass
class TrainConfig:
    """Optimisation. One step = one optimizer update over `micro_batch * grad_accum` rows per process."""

    steps: int = 200
    micro_batch: int = 8
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    dtype: str = "fp32"
    zero_stage: int = 0
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0
    save_every: int = 100
    keep_checkpoints: int = 2
    # Weight of the target tokens of a vocabulary range in the loss, e.g. {plan: 10.0}; others weigh 1.
    loss_weights: dict[str, float] = field(default_factory=dict)
    # Ordered bin ranges trained on a Gaussian over neighbouring bins instead of one bin (HL-Gauss), e.g.
    # {plan: 2.0}: the target's standard deviation in bins. Neighbouring bins then share what they learn.
    bin_smoothing: dict[str, float] = field(default_factory=dict)
    # Ordered bin ranges whose embeddings start as smooth functions of the bin index (neighbouring bins alike),
    # e.g. [waypoint, status, plan]; applied after finetune.init, whose model may never have seen these ranges.
    ordinal_init: list[str] = field(default_factory=list)
    # Image ranges whose embeddings start from their VQ codebook (codes with alike vectors start alike), e.g.
    # [cxr]; only when training from scratch: a model from finetune.init keeps the embeddings it learned.
    codebook_init: list[str] = field(default_factory=list)

    def __post_init__(self):
        for key in ("ordinal_init", "codebook_init"):
            names = getattr(self, key)
            if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
                raise ConfigError(f"train.{key} must be a list of vocabulary names, got {names!r}")
        for key in ("loss_weights", "bin_smoothing"):
            value = getattr(self, key)
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                    for k, v in value.items()):
                raise ConfigError(f"train.{key} must map vocabulary names to positive numbers, got {value!r}")
        if self.dtype not in ("fp32", "bf16"):
            raise ConfigError(f"train.dtype must be 'fp32' or 'bf16', got {self.dtype!r}")
        if self.zero_stage not in (0, 1, 2):
            raise ConfigError(f"train.zero_stage must be 0, 1 or 2 (ZeRO-3 does not support MoE), got {self.zero_stage}")


@dataclass
class FinetuneConfig:
    """init: a pretrained export folder; mode: which parameters train.

    full: everything; experts: only the MoE experts and gates (shared attention frozen);
    head: only the embeddings and LM head (linear probe on the token space).
    """

    init: str = ""
    mode: str = "full"

    def __post_init__(self):
        if self.mode not in ("full", "experts", "head"):
            raise ConfigError(f"finetune.mode must be 'full', 'experts' or 'head', got {self.mode!r}")


@dataclass
class RunConfig:
    name: str = "custom"
    out_dir: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_config(name_or_path: str, overrides: typing.Sequence[str] = ()) -> RunConfig:
    """A named preset (`experiments/configs/NAME.yaml`) or a YAML path, plus `key.sub=value` overrides."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"config {name_or_path!r} not found (looked for {path}); presets: {available_configs()}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    data.setdefault("name", path.stem)
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {override!r} must look like section.key=value")
        _set_dotted(data, key.strip(), yaml.safe_load(raw) if raw.strip() else "")
    return _build(RunConfig, data, prefix="", source=str(path))


def _set_dotted(data: dict, key: str, value) -> None:
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
    node[leaf] = value


def _build(cls, data: dict, prefix: str, source: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown config key '{prefix}{key}'{hint}; known keys: {known}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            kwargs[key] = _build(kind, value, f"{prefix}{key}.", source)
        else:
            kwargs[key] = _coerce(value, kind, f"{prefix}{key}", source)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from None


def _coerce(value, kind, key: str, source: str):
    if kind is float and not isinstance(value, bool):
        if isinstance(value, int):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-2" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    if kind in (int, float, str, bool) and not (isinstance(value, kind) and not (kind is int and isinstance(value, bool))):
        raise ConfigError(f"{source}: {key} must be {kind.__name__}, got {value!r}")
    return value
