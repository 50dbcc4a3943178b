"""Training on the DeepSpeed engine: config, loop, atomic checkpoints, exact resume, export."""

from .checkpoint import CheckpointError
from .engine import Monitor, Trainer, TrainingDiverged, build_engine, deepspeed_config, validation_split
from .export import export_pretrained, load_pretrained_into

__all__ = ["CheckpointError", "Monitor", "Trainer", "TrainingDiverged", "build_engine", "deepspeed_config",
           "export_pretrained", "load_pretrained_into", "validation_split"]
