"""Load an exported model folder (`final/`): the backbone and the tokenizers it was trained with."""

from __future__ import annotations

from pathlib import Path

from .backbone import Backbone
from .tokenizers import Tokenizers

__all__ = ["load_pretrained"]


def load_pretrained(directory: str | Path, **overrides) -> tuple[Backbone, Tokenizers]:
    """(Backbone in eval mode, Tokenizers) from a `save_pretrained` folder; no network needed."""
    model = Backbone.from_pretrained(directory, **overrides).eval()
    return model, Tokenizers.load(Path(directory) / "tokenizers")
