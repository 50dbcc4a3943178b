"""What a result needs to be reproduced: the command, the git commit, the time and the machine."""

from __future__ import annotations

import datetime
import platform
import subprocess
import sys
from pathlib import Path

import torch

__all__ = ["git_commit", "provenance"]


def git_commit() -> str | None:
    """The checkout's HEAD commit, "-dirty" when tracked files changed; None outside git."""
    try:
        root = Path(__file__).resolve().parents[1]
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def provenance() -> dict:
    """{command, git_commit, utc, machine, torch, threads} for a results JSON."""
    return {
        "command": " ".join(["uwm" if Path(sys.argv[0]).name == "uwm" else sys.argv[0], *sys.argv[1:]]),
        "git_commit": git_commit(),
        "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {platform.processor() or 'cpu'}",
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
