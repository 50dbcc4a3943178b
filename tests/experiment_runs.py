"""An experiment script run end to end at toy scale: from an empty folder, then again to check it resumes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]


def run_from_scratch_and_resume(name: str, shrink: Callable[[dict], None], tmp_path: Path,
                                redone: tuple[str, ...] = ()) -> tuple[Path, dict]:
    """Run `experiments/{name}.py` with its own config shrunk in place by `shrink` (so the keys stay the
    script's), into empty --work/--results folders, then once more; the second run must redo nothing (change
    none of the work folder's files) and report the first run's stage times, but for the stages it does
    again (`redone`). Returns the results folder and the first run's summary.json."""
    cfg = yaml.safe_load((ROOT / "experiments" / f"{name}.yaml").read_text())
    shrink(cfg)
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump(cfg))
    results = tmp_path / "results"
    command = [sys.executable, str(ROOT / "experiments" / f"{name}.py"), "--config", str(config),
               "--work", str(tmp_path / "work"), "--results", str(results)]
    first = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads((results / "summary.json").read_text())
    written = _contents(tmp_path / "work")
    again = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    changed = sorted(str(path) for path, digest in _contents(tmp_path / "work").items() if written.get(path) != digest)
    assert not changed, f"the second run changed or added {changed}"
    resumed = json.loads((results / "summary.json").read_text())["stage_seconds"]
    kept = [{label: seconds for label, seconds in times.items() if label not in redone}
            for times in (summary["stage_seconds"], resumed)]
    assert kept[0] == kept[1], f"the resumed run reports other stage times than the run that did the stages: {kept}"
    return results, summary


def _contents(folder: Path) -> dict[Path, str]:
    return {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.rglob("*") if path.is_file()}
