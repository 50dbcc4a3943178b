"""The set of tokenizers a model was trained with, and the unified vocabulary they define."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .bins import BinTokenizer
from .text import TextTokenizer
from .vocab import SPECIAL_TOKENS, Vocab

__all__ = ["Tokenizers"]

_MANIFEST = "tokenizers.json"


class Tokenizers:
    """Text BPE + named image codebooks + named bin sets, laid out in one `Vocab`.

    Range order is text, then images, then bins, each in insertion order. Every `encode_*` returns
    global ids and every `decode_*` takes global ids, so callers never handle offsets.
    """

    def __init__(
        self,
        text: TextTokenizer | None = None,
        images: dict | None = None,
        bins: dict[str, BinTokenizer] | None = None,
        specials: tuple[str, ...] = SPECIAL_TOKENS,
    ):
        self.text = text
        self.images = dict(images or {})
        self.bins = dict(bins or {})
        sizes: dict[str, int] = {}
        if text is not None:
            sizes["text"] = text.vocab_size
        for name, tokenizer in [*self.images.items(), *self.bins.items()]:
            if name in sizes or name == "special":
                raise ValueError(f"tokenizer name {name!r} is used twice")
            sizes[name] = tokenizer.vocab_size
        self.vocab = Vocab.build(sizes, specials)

    # --- text -------------------------------------------------------------------------------
    def encode_text(self, text: str) -> torch.Tensor:
        """str -> (T,) global ids."""
        return self.vocab.to_global("text", torch.tensor(self._text().encode(text), dtype=torch.long))

    def decode_text(self, ids: torch.Tensor) -> str:
        """(T,) global ids -> str; ids outside the text range (e.g. tags) are skipped."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        ids = ids[self.vocab["text"].contains(ids)]
        return self._text().decode(self.vocab.to_local("text", ids).tolist())

    # --- images -----------------------------------------------------------------------------
    def encode_image(self, name: str, images) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] (or uint8 (B, H, W, C)) -> (B, N) global ids."""
        return self.vocab.to_global(name, self._get(self.images, name, "image").encode(images))

    def decode_image(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        """(B, N) global ids -> (B, C, H, W) in [0, 1]."""
        return self._get(self.images, name, "image").decode(self.vocab.to_local(name, ids))

    # --- continuous vectors -------------------------------------------------------------------
    def encode_vector(self, name: str, values: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(..., D) floats -> (..., D) global ids."""
        return self.vocab.to_global(name, self._get(self.bins, name, "bin").encode(values))

    def decode_vector(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        """(..., D) global ids -> (..., D) floats."""
        return self._get(self.bins, name, "bin").decode(self.vocab.to_local(name, ids))

    # --- persistence --------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write every tokenizer, the vocabulary and a manifest under `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.text is not None:
            self.text.save(directory / "text")
        for name, tokenizer in self.images.items():
            tokenizer.save(directory / f"image-{name}")
        for name, tokenizer in self.bins.items():
            tokenizer.save(directory / f"bins-{name}")
        self.vocab.save(directory / "vocab.json")
        manifest = {"text": self.text is not None, "images": list(self.images), "bins": list(self.bins)}
        (directory / _MANIFEST).write_text(json.dumps(manifest, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> "Tokenizers":
        """Load what `save` wrote; the rebuilt vocabulary must equal the saved one."""
        directory = Path(directory)
        manifest_path = directory / _MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"tokenizer manifest not found: {manifest_path}")
        manifest = json.loads(manifest_path.read_text())
        images = {}
        if manifest["images"]:
            from .image import ImageTokenizer  # diffusers is slow to import: only when needed

            images = {name: ImageTokenizer.load(directory / f"image-{name}") for name in manifest["images"]}
        bins = {name: BinTokenizer.load(directory / f"bins-{name}") for name in manifest["bins"]}
        text = TextTokenizer.load(directory / "text") if manifest["text"] else None
        saved = Vocab.load(directory / "vocab.json")
        tokenizers = cls(text, images, bins, saved.specials)
        if tokenizers.vocab != saved:
            raise ValueError(f"{directory / 'vocab.json'} does not match the tokenizers saved beside it")
        return tokenizers

    def _text(self) -> TextTokenizer:
        if self.text is None:
            raise RuntimeError("these tokenizers have no text tokenizer")
        return self.text

    @staticmethod
    def _get(table: dict, name: str, kind: str):
        try:
            return table[name]
        except KeyError:
            raise KeyError(f"no {kind} tokenizer named {name!r}; have {sorted(table)}") from None
