"""Per-dimension bins for continuous vectors (actions, waypoints, ego status)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

__all__ = ["BinTokenizer"]

_FILE = "bins.json"
# Version 2: a value equal to several edges (it fills whole quantiles) takes the zero-width bin between them and
# decodes to itself; version 1 (files without a version) put it in the bin above. Loaded files keep their rule,
# so a model trained on version-1 ids reads the same ids.
VERSION = 2


class BinTokenizer:
    """Quantise each dimension of a D-dimensional vector into `num_bins` bins.

    `strategy="uniform"` spaces the edges evenly between each dimension's min and max;
    `"quantile"` puts equally many fitted values in each bin (finer where data are dense).
    A value decodes to the centre of its bin, so inside the fitted range the round-trip error is at
    most half a bin width; a value that fills whole quantiles (a repeated 0, say) has zero-width bins and
    round-trips exactly. Values outside the range are clamped to the first/last bin; NaN and inf are refused.
    All dimensions share one id range `[0, num_bins)`; the position in the sequence says which dimension.
    """

    def __init__(self, num_bins: int = 256, strategy: str = "uniform"):
        if num_bins < 2:
            raise ValueError(f"num_bins must be >= 2, got {num_bins}")
        if strategy not in ("uniform", "quantile"):
            raise ValueError(f"bin strategy must be 'uniform' or 'quantile', got {strategy!r}")
        self.num_bins = num_bins
        self.strategy = strategy
        self.edges: torch.Tensor | None = None  # (D, num_bins + 1), float64
        self.version = VERSION

    @property
    def vocab_size(self) -> int:
        return self.num_bins

    @property
    def dims(self) -> int:
        return self._fitted().shape[0]

    def fit(self, data: torch.Tensor | np.ndarray) -> "BinTokenizer":
        """Fit edges on `data` (N, D)."""
        data = torch.as_tensor(np.asarray(data), dtype=torch.float64)
        if data.ndim != 2 or data.shape[0] < 2:
            raise ValueError(f"bin fit expects data of shape (N >= 2, D), got {tuple(data.shape)}")
        if not torch.isfinite(data).all():
            raise ValueError("bin fit data contains NaN or inf")
        if self.strategy == "uniform":
            low, high = data.min(0).values, data.max(0).values
            high = torch.where(high > low, high, low + 1e-6)
            fractions = torch.linspace(0, 1, self.num_bins + 1, dtype=torch.float64)
            self.edges = low[:, None] + (high - low)[:, None] * fractions[None, :]
        else:
            quantiles = torch.linspace(0, 1, self.num_bins + 1, dtype=torch.float64)
            self.edges = torch.quantile(data, quantiles, dim=0).T.contiguous()
        return self

    def encode(self, values: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(..., D) floats -> (..., D) local bin ids in [0, num_bins)."""
        edges = self._fitted()
        values = torch.as_tensor(np.asarray(values), dtype=torch.float64)
        if values.ndim == 0 or values.shape[-1] != edges.shape[0]:
            raise ValueError(f"expected vectors of shape (..., {edges.shape[0]}), got {tuple(values.shape)}")
        if not torch.isfinite(values).all():
            raise ValueError(f"bin encode: values contain NaN or inf (at {_first_bad(values)}); "
                             "bins encode finite values only")
        flat = values.reshape(-1, edges.shape[0]).T.contiguous()  # (D, N)
        # One batched search over the D dimensions. #edges <= value, less one, is the bin [e_i, e_i+1) holding it.
        above = torch.searchsorted(edges, flat, right=True)
        ids = (above - 1).clamp(0, self.num_bins - 1)
        if self.version >= 2:
            # A value equal to edges e_L .. e_R-1 (R - L >= 2) lies in the zero-width bins L .. R-2: take bin L.
            below = torch.searchsorted(edges, flat, right=False)
            ids = torch.where(above - below >= 2, below, ids)
        return ids.T.reshape(values.shape)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """(..., D) local bin ids -> (..., D) float32 bin centres."""
        edges = self._fitted()
        ids = torch.as_tensor(ids, dtype=torch.long)
        if ids.ndim == 0 or ids.shape[-1] != edges.shape[0]:
            raise ValueError(f"expected bin ids of shape (..., {edges.shape[0]}), got {tuple(ids.shape)}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.num_bins):
            raise ValueError(f"bin id out of range [0, {self.num_bins}): got [{int(ids.min())}, {int(ids.max())}]")
        flat = ids.reshape(-1, edges.shape[0])
        out = torch.gather(self.bin_centres(), 1, flat.T).T
        return out.reshape(ids.shape).float()

    def expected(self, probs: torch.Tensor) -> torch.Tensor:
        """(..., D, num_bins) probabilities over each dimension's bins -> (..., D) float32 expected values (the
        probability-weighted bin centres: the least-squares estimate, finer than the single most likely bin)."""
        edges = self._fitted()
        probs = torch.as_tensor(probs)
        if probs.ndim < 2 or tuple(probs.shape[-2:]) != (edges.shape[0], self.num_bins):
            raise ValueError(f"expected probabilities of shape (..., {edges.shape[0]}, {self.num_bins}), "
                             f"got {tuple(probs.shape)}")
        return (probs.double() * self.bin_centres()).sum(-1).float()

    def bin_centres(self) -> torch.Tensor:
        """(D, num_bins) float64 centre of every bin (what a bin id decodes to)."""
        edges = self._fitted()
        return (edges[:, :-1] + edges[:, 1:]) / 2

    def bin_widths(self) -> torch.Tensor:
        """(D, num_bins) widths of every bin."""
        edges = self._fitted()
        return edges[:, 1:] - edges[:, :-1]

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {"version": self.version, "num_bins": self.num_bins, "strategy": self.strategy,
                 "edges": self._fitted().tolist()}
        (directory / _FILE).write_text(json.dumps(state))

    @classmethod
    def load(cls, directory: str | Path) -> "BinTokenizer":
        path = Path(directory) / _FILE
        if not path.is_file():
            raise FileNotFoundError(f"bin tokenizer file not found: {path}")
        state = json.loads(path.read_text())
        tokenizer = cls(state["num_bins"], state["strategy"])
        tokenizer.edges = torch.tensor(state["edges"], dtype=torch.float64)
        tokenizer.version = state.get("version", 1)
        if tokenizer.version > VERSION:
            raise ValueError(f"{path}: bin tokenizer version {tokenizer.version} is newer than this code's "
                             f"({VERSION}); update the code")
        return tokenizer

    def _fitted(self) -> torch.Tensor:
        if self.edges is None:
            raise RuntimeError("BinTokenizer is not fitted: call fit() or load() first")
        return self.edges


def _first_bad(values: torch.Tensor) -> tuple[int, ...]:
    """Index of the first non-finite entry of `values`."""
    return tuple(int(i) for i in torch.nonzero(~torch.isfinite(values))[0])
