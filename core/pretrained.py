"""Load an exported model folder (`final/`): the backbone and the tokenizers it was trained with."""

from __future__ import annotations

import json
from pathlib import Path

from .backbone import Backbone
from .tokenizers import Tokenizers

__all__ = ["load_pretrained", "training_data_meta", "TRAINING_DATA_FILE"]

TRAINING_DATA_FILE = "training_data.json"  # written beside the weights by the trainer


def load_pretrained(directory: str | Path, **overrides) -> tuple[Backbone, Tokenizers]:
    """(Backbone in eval mode, Tokenizers) from a `save_pretrained` folder; no network needed."""
    model = Backbone.from_pretrained(directory, **overrides).eval()
    return model, Tokenizers.load(Path(directory) / "tokenizers")


def training_data_meta(directory: str | Path) -> dict:
    """The manifest meta of the sequences an exported model was trained on (e.g. a driving model's
    `past_frames`), or {} for a folder exported without it."""
    path = Path(directory) / TRAINING_DATA_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())["meta"]
    except (ValueError, KeyError) as error:
        raise ValueError(f"{path}: not a training-data record ({error})") from None
