"""Modality tokenizers (text BPE, image VQ, continuous bins) and the unified vocabulary.

`ImageTokenizer` is imported from `core.tokenizers.image` directly: diffusers is slow to import.
"""

from .bins import BinTokenizer
from .bundle import Tokenizers, check_same_tokenizers
from .text import TextTokenizer
from .vocab import SPECIAL_TOKENS, TokenRange, Vocab

__all__ = ["BinTokenizer", "SPECIAL_TOKENS", "TextTokenizer", "TokenRange", "Tokenizers", "Vocab", "check_same_tokenizers"]
