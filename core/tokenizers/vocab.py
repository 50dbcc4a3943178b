"""One vocabulary for every modality: contiguous id ranges owned by the tokenizers.

Layout (ids grow left to right)::

    [ specials | text BPE | image codebook(s) | bin set(s) ]

Specials come first and include a block of reserved tags, so a domain can add its own tags later
without moving the ranges of an already trained model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["SPECIAL_TOKENS", "TokenRange", "Vocab"]

# Control tokens, then domain and modality tags. `<null>` stands in for a dropped condition
# (classifier-free guidance); `<reserved_i>` keep ids stable when new tags are introduced.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<pad>", "<bos>", "<eos>", "<null>", "<sep>",
    "<toy>", "<robotics>", "<driving>", "<medical>",
    "<text>", "</text>", "<img>", "</img>", "<act>", "</act>", "<traj>", "</traj>",
    "<state>", "</state>", "<report>", "</report>", "<reward>", "</reward>", "<cmd>", "</cmd>",
    "<findings>", "</findings>",
) + tuple(f"<reserved_{i}>" for i in range(37))  # 64 specials in all

SPECIAL_RANGE = "special"


@dataclass(frozen=True)
class TokenRange:
    """A contiguous block of global ids `[start, start + size)` owned by one tokenizer."""

    name: str
    start: int
    size: int

    @property
    def stop(self) -> int:
        return self.start + self.size

    def contains(self, ids: torch.Tensor) -> torch.Tensor:
        """Boolean mask of `ids` (any shape) that fall in this range."""
        return (ids >= self.start) & (ids < self.stop)


class Vocab:
    """Maps each modality's local token ids to contiguous global ids and back.

    `Vocab.build({"text": 4000, "image": 512, "action": 256})` lays out the specials first, then the
    named ranges in the given order. Modality ids are the index of a range (specials are 0).
    """

    def __init__(self, ranges: list[TokenRange], specials: tuple[str, ...] = SPECIAL_TOKENS):
        expected = 0
        for token_range in ranges:
            if token_range.start != expected:
                raise ValueError(f"vocab range {token_range.name!r} starts at {token_range.start}, expected {expected}")
            expected = token_range.stop
        if not ranges or ranges[0].name != SPECIAL_RANGE or ranges[0].size != len(specials):
            raise ValueError(f"the first vocab range must be {SPECIAL_RANGE!r} with {len(specials)} ids")
        self.ranges = ranges
        self.specials = specials
        self._by_name = {r.name: r for r in ranges}
        if len(self._by_name) != len(ranges):
            raise ValueError(f"duplicate vocab range names: {[r.name for r in ranges]}")
        self._special_ids = {token: i for i, token in enumerate(specials)}
        # Lookup table id -> modality index, used to tag every token of a sequence.
        self._modality_of_id = torch.cat(
            [torch.full((r.size,), i, dtype=torch.long) for i, r in enumerate(ranges)]
        )

    @classmethod
    def build(cls, sizes: dict[str, int], specials: tuple[str, ...] = SPECIAL_TOKENS) -> "Vocab":
        """Lay out `specials` then one range per `name -> size`, in order."""
        ranges = [TokenRange(SPECIAL_RANGE, 0, len(specials))]
        for name, size in sizes.items():
            if size <= 0:
                raise ValueError(f"vocab range {name!r} must have a positive size, got {size}")
            ranges.append(TokenRange(name, ranges[-1].stop, size))
        return cls(ranges, specials)

    @property
    def size(self) -> int:
        return self.ranges[-1].stop

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.ranges]

    def __getitem__(self, name: str) -> TokenRange:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no vocab range {name!r}; ranges are {self.names}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def special(self, token: str) -> int:
        """Global id of a special token such as `<img>`."""
        try:
            return self._special_ids[token]
        except KeyError:
            raise KeyError(f"unknown special token {token!r}") from None

    def modality_index(self, name: str) -> int:
        """Index of a range, the value used in modality ids."""
        return self.names.index(self[name].name)

    def to_global(self, name: str, local_ids: torch.Tensor) -> torch.Tensor:
        """Offset local ids (any shape, values in [0, size)) into the global range `name`."""
        token_range = self[name]
        local_ids = torch.as_tensor(local_ids, dtype=torch.long)
        if local_ids.numel() and (local_ids.min() < 0 or local_ids.max() >= token_range.size):
            raise ValueError(
                f"local token id out of range for {name!r}: got [{int(local_ids.min())}, {int(local_ids.max())}], "
                f"expected [0, {token_range.size})"
            )
        return local_ids + token_range.start

    def to_local(self, name: str, global_ids: torch.Tensor) -> torch.Tensor:
        """Inverse of `to_global`; ids outside the range raise a ValueError."""
        token_range = self[name]
        global_ids = torch.as_tensor(global_ids, dtype=torch.long)
        if global_ids.numel() and not bool(token_range.contains(global_ids).all()):
            bad = global_ids[~token_range.contains(global_ids)][0]
            raise ValueError(
                f"token id {int(bad)} is not in range {name!r} [{token_range.start}, {token_range.stop})"
            )
        return global_ids - token_range.start

    def modality_ids(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Modality index of every token: `token_ids` (...,) -> (...,) long, on their device."""
        self.check_ids(token_ids)
        return self._modality_of_id.to(token_ids.device)[token_ids]

    def check_ids(self, token_ids: torch.Tensor) -> None:
        """Raise a ValueError if any id is outside `[0, size)`."""
        if token_ids.numel() and (token_ids.min() < 0 or token_ids.max() >= self.size):
            raise ValueError(
                f"token id out of range: got [{int(token_ids.min())}, {int(token_ids.max())}], "
                f"vocabulary has {self.size} ids"
            )

    def mask(self, *items: str) -> torch.Tensor:
        """bool (size,) allowing whole ranges ("text") and single specials ("</text>")."""
        allowed = torch.zeros(self.size, dtype=torch.bool)
        for item in items:
            if item in self._by_name:
                allowed[self[item].start : self[item].stop] = True
            else:
                allowed[self.special(item)] = True
        return allowed

    def to_dict(self) -> dict:
        return {"specials": list(self.specials), "ranges": [[r.name, r.start, r.size] for r in self.ranges]}

    @classmethod
    def from_dict(cls, data: dict) -> "Vocab":
        return cls([TokenRange(n, s, z) for n, s, z in data["ranges"]], tuple(data["specials"]))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file not found: {path}")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not a valid vocabulary: {error}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        body = ", ".join(f"{r.name}=[{r.start},{r.stop})" for r in self.ranges)
        return f"Vocab(size={self.size}, {body})"
