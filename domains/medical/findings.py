"""The findings vocabulary shared by the report labeler, the chest X-ray renderer and the image judge.

CheXpert-style observations, named in snake_case. `no_finding` is positive exactly when no other
finding is positive (the labeler enforces it; the renderer draws a normal chest for it).
"""

from __future__ import annotations

import numpy as np

__all__ = ["FINDINGS", "NORMAL_WITH", "PATHOLOGIES", "RANDOM_FINDING_RATE", "check_findings", "is_normal",
           "named", "random_findings"]

FINDINGS: tuple[str, ...] = (
    "no_finding",
    "cardiomegaly",
    "effusion",
    "pneumothorax",
    "consolidation",
    "atelectasis",
    "edema",
    "nodule_mass",
    "opacity",
    "support_devices",
    "fracture",
)
PATHOLOGIES: tuple[str, ...] = FINDINGS[1:]  # every finding except `no_finding`
NORMAL_WITH = frozenset({"no_finding", "support_devices"})  # present on a chest that is still `no_finding`
RANDOM_FINDING_RATE = 0.2  # of each pathology in `random_findings`: 26 pneumothorax reports in Open-i's 3,955


def is_normal(present) -> bool:
    """Whether `no_finding` holds for these present finding names: none is present but `NORMAL_WITH`'s."""
    return not set(present) - NORMAL_WITH


def named(present, names: tuple[str, ...] = FINDINGS) -> tuple[str, ...]:
    """A (F,) bool vector (or list) over `names` (FINDINGS, or PATHOLOGIES for F = 10) -> the present names."""
    present = list(present)
    if len(present) != len(names):
        raise ValueError(f"expected {len(names)} values, one per finding of {list(names)}, got {len(present)}")
    return tuple(name for name, on in zip(names, present) if on)


def check_findings(findings, where: str = "findings") -> tuple[str, ...]:
    """Validate an iterable of finding names; returns them as a tuple in `FINDINGS` order."""
    findings = set(findings)
    unknown = sorted(findings - set(FINDINGS))
    if unknown:
        raise ValueError(f"{where}: unknown finding(s) {unknown}; expected names from {list(FINDINGS)}")
    return tuple(name for name in FINDINGS if name in findings)


def random_findings(count: int, rng: np.random.Generator, rate: float = RANDOM_FINDING_RATE) -> list[tuple[str, ...]]:
    """`count` pathology sets, each pathology present independently with probability `rate` (`PATHOLOGIES`
    order): renders of them give the rare findings enough positives to learn from."""
    return [tuple(name for name in PATHOLOGIES if rng.random() < rate) for _ in range(count)]
