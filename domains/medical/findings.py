"""The findings vocabulary shared by the report labeler, the chest X-ray renderer and the image judge.

CheXpert-style observations, named in snake_case. `no_finding` is positive exactly when no other
finding is positive (the labeler enforces it; the renderer draws a normal chest for it).
"""

from __future__ import annotations

__all__ = ["FINDINGS", "PATHOLOGIES", "check_findings"]

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


def check_findings(findings, where: str = "findings") -> tuple[str, ...]:
    """Validate an iterable of finding names; returns them as a tuple in `FINDINGS` order."""
    findings = set(findings)
    unknown = sorted(findings - set(FINDINGS))
    if unknown:
        raise ValueError(f"{where}: unknown finding(s) {unknown}; expected names from {list(FINDINGS)}")
    return tuple(name for name in FINDINGS if name in findings)
