"""Token sequences built from segments, and their batching (padding or packing).

A sample is a list of `Segment`s. The loss mask comes from the segments' `is_target` flags, so the
same model learns report -> image and image -> report by reordering the segments of one study.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .tokenizers.vocab import Vocab

__all__ = ["Segment", "Example", "Batch", "RowPacker", "build_example", "pad_batch", "pack_batch"]


@dataclass
class Segment:
    """A run of global token ids of one modality.

    modality: the vocab range the content tokens belong to ("text", "image", "action", ...); tags
        such as `<img>` (specials) may wrap them.
    tokens: (T,) global ids.
    is_target: the model is trained to predict these tokens.
    is_condition: dropped (replaced by `<null>`) for classifier-free guidance training.
    """

    modality: str
    tokens: torch.Tensor
    is_target: bool = False
    is_condition: bool = False

    @classmethod
    def tagged(cls, vocab: Vocab, modality: str, tokens: torch.Tensor, tags: tuple[str, str], **flags) -> "Segment":
        """Wrap content ids (T,) in an opening and closing tag, e.g. `<img> ... </img>`."""
        opening, closing = (torch.tensor([vocab.special(t)]) for t in tags)
        return cls(modality, torch.cat([opening, torch.as_tensor(tokens, dtype=torch.long).reshape(-1), closing]), **flags)


@dataclass
class Example:
    """One sequence, all (T,): token ids, modality ids, positions and the loss mask.

    `loss_mask[t]` is True where token t is predicted (from tokens < t).
    """

    token_ids: torch.Tensor
    modality_ids: torch.Tensor
    positions: torch.Tensor
    loss_mask: torch.Tensor

    def __len__(self) -> int:
        return int(self.token_ids.shape[0])


@dataclass
class Batch:
    """A batch for the backbone, all (B, T).

    attention_mask: True for real tokens, False for padding.
    document_ids: set when samples are packed into one row; tokens attend only within their
        document. None for padded batches (right padding needs no extra mask under causality).
    """

    input_ids: torch.Tensor
    modality_ids: torch.Tensor
    positions: torch.Tensor
    loss_mask: torch.Tensor
    attention_mask: torch.Tensor
    document_ids: torch.Tensor | None = None

    @property
    def num_target_tokens(self) -> int:
        return int(self.loss_mask[:, 1:].sum())

    def to(self, device: torch.device | str) -> "Batch":
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Batch(**moved)


def build_example(
    segments: Sequence[Segment], vocab: Vocab, *, bos: bool = True, eos: bool = True, drop_conditions: bool = False
) -> Example:
    """Concatenate segments into one `Example`, framed by `<bos>` ... `<eos>`.

    `<eos>` is a target when the last segment is. With `drop_conditions`, each condition segment is
    replaced by a single `<null>` (the unconditional branch of classifier-free guidance).
    """
    if not segments:
        raise ValueError("a sample needs at least one segment")
    ids, targets = [], []
    if bos:
        ids.append(torch.tensor([vocab.special("<bos>")]))
        targets.append(torch.zeros(1, dtype=torch.bool))
    for i, segment in enumerate(segments):
        tokens = torch.as_tensor(segment.tokens, dtype=torch.long).reshape(-1)
        if segment.modality not in vocab:
            raise ValueError(f"segment {i} has unknown modality {segment.modality!r}; vocab has {vocab.names}")
        content = ~vocab["special"].contains(tokens)
        if not bool(vocab[segment.modality].contains(tokens[content]).all()):
            raise ValueError(f"segment {i} ({segment.modality!r}) holds token ids outside its vocab range")
        if drop_conditions and segment.is_condition:
            tokens = torch.tensor([vocab.special("<null>")])
        ids.append(tokens)
        targets.append(torch.full((tokens.numel(),), segment.is_target, dtype=torch.bool))
    if eos:
        ids.append(torch.tensor([vocab.special("<eos>")]))
        targets.append(torch.tensor([segments[-1].is_target]))
    token_ids = torch.cat(ids)
    return Example(
        token_ids=token_ids,
        modality_ids=vocab.modality_ids(token_ids),
        positions=torch.arange(token_ids.numel()),
        loss_mask=torch.cat(targets),
    )


def pad_batch(examples: Sequence[Example], pad_id: int, length: int | None = None) -> Batch:
    """Right-pad examples to `length` (default: the longest). Longer examples raise a ValueError."""
    longest = max(len(e) for e in examples)
    length = longest if length is None else length
    if longest > length:
        raise ValueError(f"an example has {longest} tokens, more than the sequence length {length}")
    batch = _empty(len(examples), length, pad_id)
    for row, example in enumerate(examples):
        _place(batch, row, 0, example, document=1)
    batch.document_ids = None
    return batch


class RowPacker:
    """First-fit placement of examples into rows of `length` tokens (at most `max_rows` rows)."""

    def __init__(self, length: int, max_rows: int | None = None):
        self.length, self.max_rows = length, max_rows
        self.used: list[int] = []

    def add(self, size: int) -> int | None:
        """Row index for an example of `size` tokens, or None when every allowed row is too full."""
        if size > self.length:
            raise ValueError(f"an example has {size} tokens, more than the sequence length {self.length}")
        for row, filled in enumerate(self.used):
            if filled + size <= self.length:
                self.used[row] += size
                return row
        if self.max_rows is not None and len(self.used) >= self.max_rows:
            return None
        self.used.append(size)
        return len(self.used) - 1


def pack_batch(examples: Sequence[Example], pad_id: int, length: int) -> Batch:
    """Pack examples first-fit, in order, into rows of `length` tokens (no splitting).

    Positions restart for each document, and `document_ids` keep attention within a document; no document's first
    token is a target (nothing in its own document precedes it).
    """
    packer = RowPacker(length)
    rows = [packer.add(len(example)) for example in examples]
    batch = _empty(len(packer.used), length, pad_id)
    offsets = [0] * len(packer.used)
    documents = [0] * len(packer.used)
    for row, example in zip(rows, examples):
        documents[row] += 1
        _place(batch, row, offsets[row], example, document=documents[row])
        offsets[row] += len(example)
    return batch


def _empty(rows: int, length: int, pad_id: int) -> Batch:
    return Batch(
        input_ids=torch.full((rows, length), pad_id, dtype=torch.long),
        modality_ids=torch.zeros(rows, length, dtype=torch.long),
        positions=torch.zeros(rows, length, dtype=torch.long),
        loss_mask=torch.zeros(rows, length, dtype=torch.bool),
        attention_mask=torch.zeros(rows, length, dtype=torch.bool),
        document_ids=torch.zeros(rows, length, dtype=torch.long),
    )


def _place(batch: Batch, row: int, offset: int, example: Example, document: int) -> None:
    span = slice(offset, offset + len(example))
    batch.input_ids[row, span] = example.token_ids
    batch.modality_ids[row, span] = example.modality_ids
    batch.positions[row, span] = example.positions
    batch.loss_mask[row, span] = example.loss_mask
    # A document's first token is never a target: packed, it would be predicted from the previous document's last
    # (padded, the loss skips position 0 anyway).
    batch.loss_mask[row, offset] = False
    batch.attention_mask[row, span] = True
    batch.document_ids[row, span] = document
