"""Atomic, verifiable DeepSpeed checkpoints.

DeepSpeed writes `<root>/<tag>/` in place. We let it write into `<root>/.tmp-<tag>/`, add a
`manifest.json` with every file's size and SHA-256, rename the folder to `<root>/<tag>/`, and only
then point `<root>/latest` at it (atomic rename). A crash mid-save leaves the previous checkpoint
as `latest`; a damaged file is caught by the manifest before DeepSpeed reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

__all__ = ["CheckpointError", "finalize_checkpoint", "latest_tag", "verify_checkpoint", "prune_checkpoints", "replace_folder",
           "tmp_tag"]

MANIFEST = "manifest.json"
LATEST = "latest"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or corrupt."""


def tmp_tag(tag: str) -> str:
    return f".tmp-{tag}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def finalize_checkpoint(root: Path, tag: str, info: dict) -> Path:
    """Seal `<root>/.tmp-<tag>` (manifest), move it to `<root>/<tag>` and update `latest`."""
    staging, final = root / tmp_tag(tag), root / tag
    files = {
        str(p.relative_to(staging)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(staging.rglob("*"))
        if p.is_file()
    }
    (staging / MANIFEST).write_text(json.dumps({"tag": tag, "info": info, "files": files}, indent=1))
    replace_folder(staging, final)
    pointer = root / (LATEST + ".tmp")
    pointer.write_text(tag)
    os.replace(pointer, root / LATEST)
    return final


def replace_folder(staging: Path, final: Path) -> None:
    """Move the completed folder `staging` to `final`, replacing what was there."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)


def latest_tag(root: Path) -> str | None:
    """The tag `latest` points at, or None when there is no checkpoint under `root`."""
    pointer = Path(root) / LATEST
    return pointer.read_text().strip() if pointer.is_file() else None


def verify_checkpoint(root: Path, tag: str) -> dict:
    """Check every file listed in the manifest; returns the manifest's `info`."""
    folder = Path(root) / tag
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"checkpoint {folder} is incomplete: {MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"checkpoint manifest {manifest_path} is corrupt: {error}") from None
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint file missing: {path}")
        if path.stat().st_size != expected["bytes"] or _sha256(path) != expected["sha256"]:
            raise CheckpointError(f"checkpoint file corrupt (size or SHA-256 differs from {MANIFEST}): {path}")
    return manifest["info"]


def prune_checkpoints(root: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints (never the one `latest` names) and stale staging folders."""
    root = Path(root)
    current = latest_tag(root)
    tags = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / MANIFEST).is_file())
    for tag in tags[: max(0, len(tags) - keep)]:
        if tag != current:
            shutil.rmtree(root / tag)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
