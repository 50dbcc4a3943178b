"""Sequence datasets on disk (a folder of shards) and a resumable batch stream.

Folder layout written by `ShardWriter`::

    manifest.json          {"format": "uwm-sequences", "version": 1, "num_samples": N, "shards": [...], "meta": {...}}
    shard-00000.npz        tokens int32 (sum T_i,), modalities uint8, loss_mask uint8, offsets int64 (n + 1,),
                           groups int64 (n,): the source each sample comes from (an episode, a scene, a study), -1 for
                           none; folders written before groups existed lack it
    tokenizers/            the `Tokenizers` that produced the ids (vocabulary included)

The manifest is written last and atomically, so a folder with a manifest is complete.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from .sequence import Batch, Example, RowPacker, pack_batch, pad_batch
from .tokenizers.bundle import Tokenizers

__all__ = ["ShardWriter", "SequenceDataset", "BatchStream", "json_ready", "write_json_atomic", "write_text_atomic",
           "report_json"]

FORMAT = "uwm-sequences"
MANIFEST = "manifest.json"


def json_ready(value):
    """`value` with every NaN or infinite float (e.g. a metric over an empty subset) replaced by None, so that
    the JSON written is strict (other readers reject `NaN`)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def write_json_atomic(path: Path, data: dict) -> None:
    """Write `data` as strict JSON (`json_ready`) to a temporary file beside `path`, then rename it over `path`
    (creating its folder)."""
    write_text_atomic(path, _strict_json(data))


def _strict_json(data) -> str:
    return json.dumps(json_ready(data), indent=1, allow_nan=False)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path` (creating its folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def report_json(results: dict, out: str | Path | None = None) -> str:
    """Print an evaluation's results as strict JSON and, given `out`, also write them there (atomically)."""
    text = _strict_json(results)
    if out:
        write_text_atomic(Path(out), text)
    print(text)
    return text


class ShardWriter:
    """Append `Example`s; every `samples_per_shard` they are flushed to one `.npz` shard."""

    def __init__(self, directory: str | Path, tokenizers: Tokenizers, samples_per_shard: int = 2048, meta: dict | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / MANIFEST).unlink(missing_ok=True)
        tokenizers.save(self.directory / "tokenizers")
        self.vocab_size = tokenizers.vocab.size
        self.samples_per_shard = samples_per_shard
        self.meta = meta or {}
        self.pending: list[Example] = []
        self.pending_groups: list[int] = []
        self.group_ids: dict = {}
        self.shards: list[dict] = []

    def add(self, example: Example, group=None) -> None:
        """Append `example`; `group` (any hashable: an episode, a scene, a study id) names the source it was made
        from, so that validation holds out whole sources (`SequenceDataset.groups`); None for a sample of its own."""
        if int(example.token_ids.max()) >= self.vocab_size:
            raise ValueError(f"example holds token id {int(example.token_ids.max())} >= vocab size {self.vocab_size}")
        self.pending.append(example)
        self.pending_groups.append(-1 if group is None else self.group_ids.setdefault(group, len(self.group_ids)))
        if len(self.pending) >= self.samples_per_shard:
            self._flush()

    def close(self) -> Path:
        """Flush the last shard and write the manifest; returns the folder."""
        self._flush()
        total = sum(s["num_samples"] for s in self.shards)
        manifest = {"format": FORMAT, "version": 1, "num_samples": total, "vocab_size": self.vocab_size,
                    "shards": self.shards, "meta": self.meta}
        write_json_atomic(self.directory / MANIFEST, manifest)
        return self.directory

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()

    def _flush(self) -> None:
        if not self.pending:
            return
        name = f"shard-{len(self.shards):05d}.npz"
        lengths = [len(e) for e in self.pending]
        arrays = {
            "tokens": torch.cat([e.token_ids for e in self.pending]).numpy().astype(np.int32),
            "modalities": torch.cat([e.modality_ids for e in self.pending]).numpy().astype(np.uint8),
            "loss_mask": torch.cat([e.loss_mask for e in self.pending]).numpy().astype(np.uint8),
            "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            "groups": np.asarray(self.pending_groups, dtype=np.int64),
        }
        tmp = self.directory / (name + ".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, self.directory / name)
        self.shards.append({"file": name, "num_samples": len(self.pending)})
        self.pending, self.pending_groups = [], []


class SequenceDataset(torch.utils.data.Dataset):
    """Random access to the `Example`s of a shard folder (shards are loaded on first use)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        manifest_path = self.directory / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(
                f"no sequence dataset at {self.directory}: {MANIFEST} is missing (write one with `uwm data`)"
            )
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{manifest_path} is not valid JSON: {error}") from None
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{manifest_path}: format is {self.manifest.get('format')!r}, expected {FORMAT!r}")
        counts = [s["num_samples"] for s in self.manifest["shards"]]
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._cache: dict[int, dict[str, np.ndarray]] = {}

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["vocab_size"])

    @property
    def meta(self) -> dict:
        return self.manifest.get("meta", {})

    def tokenizers(self) -> Tokenizers:
        return Tokenizers.load(self.directory / "tokenizers")

    def groups(self) -> np.ndarray | None:
        """(N,) int64: the source group of each sample (`ShardWriter.add`), a sample without one in a group of its
        own; None when no sample has a group (or the folder predates groups)."""
        parts = [self._read(index, "groups") for index in range(len(self.manifest["shards"]))]
        if any(part is None for part in parts):
            return None
        groups = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        if not (groups >= 0).any():
            return None
        solo = groups < 0
        groups[solo] = groups.max() + 1 + np.arange(int(solo.sum()))
        return groups

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> Example:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        shard_index = int(np.searchsorted(self._starts, index, side="right") - 1)
        shard = self._shard(shard_index)
        local = index - int(self._starts[shard_index])
        lo, hi = shard["offsets"][local], shard["offsets"][local + 1]
        token_ids = torch.from_numpy(shard["tokens"][lo:hi].astype(np.int64))
        return Example(
            token_ids=token_ids,
            modality_ids=torch.from_numpy(shard["modalities"][lo:hi].astype(np.int64)),
            positions=torch.arange(hi - lo),
            loss_mask=torch.from_numpy(shard["loss_mask"][lo:hi].astype(bool)),
        )

    def _shard(self, index: int) -> dict[str, np.ndarray]:
        if index not in self._cache:
            arrays = self._read(index)
            missing = [k for k in ("tokens", "modalities", "loss_mask", "offsets") if k not in arrays]
            if missing:
                raise ValueError(f"cannot read shard {self._path(index)}: it has no {', '.join(missing)} array")
            self._cache[index] = arrays
        return self._cache[index]

    def _read(self, index: int, key: str | None = None):
        """Shard `index`'s arrays {name: array}, or only its `key` array (None where it has none)."""
        if index in self._cache:
            return self._cache[index] if key is None else self._cache[index].get(key)
        path = self._path(index)
        try:
            with np.load(path) as data:
                if key is None:
                    return {k: data[k] for k in data.files}
                return data[key] if key in data.files else None
        except Exception as error:  # zipfile/pickle errors for damaged shards
            raise ValueError(f"cannot read shard {path}: {error}") from None

    def _path(self, index: int) -> Path:
        path = self.directory / self.manifest["shards"][index]["file"]
        if not path.is_file():
            raise FileNotFoundError(f"shard listed in {self.directory / MANIFEST} is missing: {path}")
        return path


class BatchStream:
    """An endless, seeded stream of batches over a subset of a dataset, with an exact resume state.

    Each epoch visits `indices` in a fresh permutation (seed + epoch); process `rank` of `world`
    takes every world-th sample. Padding puts one sample per row; packing fills `rows` rows first-fit.
    """

    def __init__(self, dataset, indices, rows: int, seq_len: int, pad_id: int, packing: bool = False,
                 seed: int = 0, rank: int = 0, world: int = 1):
        if len(indices) < world:
            raise ValueError(f"{len(indices)} samples cannot feed {world} processes")
        self.dataset, self.indices = dataset, np.asarray(indices)
        self.rows, self.seq_len, self.pad_id, self.packing = rows, seq_len, pad_id, packing
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch, self.cursor = 0, 0
        self._order = self._permutation()

    def _permutation(self) -> np.ndarray:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = self.indices[torch.randperm(len(self.indices), generator=generator).numpy()]
        return order[self.rank :: self.world]

    def _peek(self) -> Example:
        if self.cursor >= len(self._order):
            self.epoch, self.cursor = self.epoch + 1, 0
            self._order = self._permutation()
        return self.dataset[int(self._order[self.cursor])]

    def next(self) -> Batch:
        if not self.packing:
            examples = []
            for _ in range(self.rows):
                examples.append(self._peek())
                self.cursor += 1
            return pad_batch(examples, self.pad_id, self.seq_len)
        examples, packer = [], RowPacker(self.seq_len, self.rows)
        while True:
            example = self._peek()
            if packer.add(len(example)) is None:  # all rows full: this one opens the next batch
                return pack_batch(examples, self.pad_id, self.seq_len)
            examples.append(example)
            self.cursor += 1

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self.cursor = state["seed"], state["epoch"], state["cursor"]
        self._order = self._permutation()
