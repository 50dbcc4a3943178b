"""Resumable long computations: each finished stage is kept on disk, so that a rerun starts after the last one.

An evaluation that generates for an hour should not lose that hour to a stopped process::

    stages = Stages(out / "stages", fingerprint={"model": weights_fingerprint(model), "settings": settings})
    threshold = stages("threshold", lambda: tune(model))
    images = stages("draw", lambda: model.draw(prompts, generator=generator), generator)

A stage's result is saved (atomically, `torch.save`, as `<name>.stage.pt`) when it finishes, and a later run with
the same fingerprint loads it instead of computing it again. Given a `torch.Generator`, its state after the stage
is saved with the result and restored when the result is loaded, so a resumed run draws what an uninterrupted one
would. The stages of another fingerprint (another model, other settings) found in the folder are dropped first.
The fingerprint does not cover the code: each stage records the git commit that computed it, and a run that loads
stages lists them (`loaded`); after changing the code that makes them, remove the folder (the experiments remove
theirs once their results are written).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, TypeVar

import torch

from .data import json_ready, write_json_atomic
from .provenance import git_commit

__all__ = ["Stages", "weights_fingerprint"]

log = logging.getLogger(__name__)
T = TypeVar("T")
FINGERPRINT = "fingerprint.json"
SUFFIX = ".stage.pt"


def weights_fingerprint(module: torch.nn.Module) -> str:
    """sha256 of a module's parameters and buffers (names, shapes, dtypes and values): equal for equal weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted({**dict(module.named_parameters()), **dict(module.named_buffers())}.items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Stages:
    """Run named stages, each result kept in `directory` (None: nothing kept, every stage computed).

    fingerprint: what the stages' results depend on (JSON-able: settings, seeds, a `weights_fingerprint`), or a
    function that returns it (called only with a folder); stages kept under another one are dropped, with a log
    line saying so. `scope(prefix)` names the stages of a part (e.g. each random stream of draws) apart. `loaded`:
    {stage: {"seconds": it took when computed, "commit": git commit that computed it}} of the stages this run
    loaded instead of computing (shared with its scopes), for the times and the provenance a resumed run reports.
    """

    def __init__(self, directory: str | Path | None, fingerprint: dict | Callable[[], dict] | None = None):
        self.directory = Path(directory) if directory is not None else None
        self.prefix = ""
        self.loaded: dict[str, dict] = {}
        if self.directory is None:
            return
        self.commit = git_commit()
        fingerprint = fingerprint() if callable(fingerprint) else fingerprint
        wanted = json.loads(json.dumps(json_ready(fingerprint or {})))  # as it reads back from disk
        path = self.directory / FINGERPRINT
        if path.is_file():
            try:
                found = json.loads(path.read_text())
            except json.JSONDecodeError:
                found = None
            if found != wanted:
                stale = sorted(self.directory.glob(f"*{SUFFIX}")) + sorted(self.directory.glob(f"*{SUFFIX}.tmp"))
                log.warning("%s holds the stages of another run (model or settings differ): %d stage(s) dropped",
                            self.directory, len(stale))
                for file in stale:
                    file.unlink()
        write_json_atomic(path, wanted)

    def scope(self, prefix: str) -> "Stages":
        """The same folder, its stage names prefixed `prefix/` (no second fingerprint check)."""
        scoped = copy.copy(self)
        scoped.prefix = f"{self.prefix}{prefix}/"
        return scoped

    def __call__(self, name: str, compute: Callable[[], T], generator: torch.Generator | None = None) -> T:
        """`compute()`, or the result a run with this fingerprint kept for stage `name` (and `generator` set to
        the state it had after that stage)."""
        if self.directory is None:
            return compute()
        path = self.directory / (f"{self.prefix}{name}".replace("/", "__") + SUFFIX)
        if path.is_file():
            try:
                saved = torch.load(path, weights_only=False)
            except Exception as error:  # a damaged file: the stage is computed again
                log.warning("cannot read stage %s (%s): computing it again", path, error)
            else:
                if generator is not None:
                    generator.set_state(saved["generator"])
                log.info("stage %s%s: loaded from %s", self.prefix, name, path)
                self.loaded[f"{self.prefix}{name}"] = {"seconds": saved["seconds"], "commit": saved["commit"]}
                return saved["result"]
        started = time.perf_counter()
        result = compute()
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"result": result, "generator": generator.get_state() if generator is not None else None,
                    "seconds": time.perf_counter() - started, "commit": self.commit}, tmp)
        os.replace(tmp, path)
        return result
