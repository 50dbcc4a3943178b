"""Byte-level BPE text tokenizer, trained offline with `tokenizers`, exposed as `PreTrainedTokenizerFast`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

__all__ = ["TextTokenizer"]

_FILE = "tokenizer.json"


class TextTokenizer:
    """Byte-level BPE: any UTF-8 string encodes (the 256 byte symbols are always in the vocabulary).

    Ids are local, `[0, vocab_size)`; the unified `Vocab` offsets them. Special tokens live in the
    unified vocabulary, not here.
    """

    def __init__(self, hf_tokenizer: PreTrainedTokenizerFast | None = None):
        self.hf = hf_tokenizer

    def fit(self, texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> "TextTokenizer":
        """Train the BPE merges on `texts`. The result has at most `vocab_size` ids (fewer on small corpora)."""
        if vocab_size < 257:
            raise ValueError(f"text vocab_size must be > 256 (the byte alphabet), got {vocab_size}")
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        self.hf = PreTrainedTokenizerFast(tokenizer_object=tokenizer)
        return self

    @property
    def vocab_size(self) -> int:
        return len(self._fitted())

    def encode(self, text: str) -> list[int]:
        """Text -> local ids."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self._fitted().encode(text, add_special_tokens=False)

    def decode(self, ids: Iterable[int]) -> str:
        """Local ids -> text."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"text token id {bad[0]} out of range [0, {self.vocab_size})")
        return self._fitted().decode(ids, clean_up_tokenization_spaces=False)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._fitted().backend_tokenizer.save(str(directory / _FILE))

    @classmethod
    def load(cls, directory: str | Path) -> "TextTokenizer":
        path = Path(directory) / _FILE
        if not path.is_file():
            raise FileNotFoundError(f"text tokenizer file not found: {path}")
        return cls(PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_file(str(path))))

    def _fitted(self) -> PreTrainedTokenizerFast:
        if self.hf is None:
            raise RuntimeError("TextTokenizer is not fitted: call fit() or load() first")
        return self.hf
