"""The set of tokenizers a model was trained with, and the unified vocabulary they define."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from .bins import BinTokenizer
from .text import TextTokenizer
from .vocab import SPECIAL_TOKENS, Vocab

__all__ = ["Tokenizers", "check_same_tokenizers"]

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

    # --- identity -----------------------------------------------------------------------------
    def fingerprints(self) -> dict[str, str]:
        """{range name: sha256 of what its ids mean}: the BPE's merges and vocabulary, an image tokenizer's config
        and weights, a bin set's edges. The vocabulary (`Vocab`: names and sizes) cannot tell tokenizers refitted
        at the same sizes apart; these can."""
        from core.stages import weights_fingerprint

        def sha(text: str) -> str:
            return hashlib.sha256(text.encode()).hexdigest()

        out = {}
        if self.text is not None:
            out["text"] = sha(self._text()._fitted().backend_tokenizer.to_str())
        for name, tokenizer in self.images.items():
            config = json.dumps(dataclasses.asdict(tokenizer.config), sort_keys=True)
            out[name] = sha(config + weights_fingerprint(tokenizer.model))
        for name, tokenizer in self.bins.items():
            out[name] = sha(json.dumps([tokenizer.version, tokenizer.strategy, tokenizer._fitted().tolist()]))
        return out

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
        manifest = {"text": self.text is not None, "images": list(self.images), "bins": list(self.bins),
                    "fingerprints": self.fingerprints()}
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
        changed = _differing(manifest.get("fingerprints"), tokenizers.fingerprints())
        if changed:
            raise ValueError(f"{manifest_path}: the {', '.join(changed)} tokenizer files changed after it was written")
        return tokenizers

    @staticmethod
    def saved_fingerprints(directory: str | Path) -> dict[str, str] | None:
        """The `fingerprints` a `save` into `directory` recorded, read without loading the tokenizers (None for
        tokenizers saved before they were recorded)."""
        path = Path(directory) / _MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer manifest not found: {path}")
        return json.loads(path.read_text()).get("fingerprints")

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


def _differing(saved: dict | None, current: dict | None) -> list[str]:
    """Range names whose fingerprints differ (none when either side has no record: saved before they were)."""
    if saved is None or current is None:
        return []
    return sorted(name for name in saved.keys() | current.keys() if saved.get(name) != current.get(name))


def check_same_tokenizers(expected: str | Path, actual: str | Path, hint: str) -> None:
    """Raise ValueError when the tokenizers saved in folder `actual` are not those in `expected`: another
    vocabulary layout, or the same layout refitted (other merges, codebooks or bin edges; `Tokenizers.fingerprints`).
    hint: what to do about it, appended to the message."""
    same_layout = Vocab.load(Path(expected) / "vocab.json") == Vocab.load(Path(actual) / "vocab.json")
    changed = _differing(Tokenizers.saved_fingerprints(expected), Tokenizers.saved_fingerprints(actual))
    if not same_layout or changed:
        what = "another vocabulary layout" if not same_layout else f"other {', '.join(changed)} tokenizers"
        raise ValueError(f"{actual} holds {what} than {expected}: {hint}")
