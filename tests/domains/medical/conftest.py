"""Fixtures for the medical tests: a small Open-i-layout archive and image files in every format."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

OPENI_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation>
   <meta type="rr"/>
   <uId id="CXR{number}"/>
   <IUXRId id="{number}"/>
   <MedlineCitation Owner="Indiana University" Status="supplied by publisher">
      <Article PubModel="Electronic">
         <Abstract>
            <AbstractText Label="COMPARISON">None.</AbstractText>
            <AbstractText Label="INDICATION">Cough</AbstractText>
            <AbstractText Label="FINDINGS">{findings}</AbstractText>
            <AbstractText Label="IMPRESSION">{impression}</AbstractText>
         </Abstract>
      </Article>
   </MedlineCitation>
   <MeSH>
{mesh}
   </MeSH>
   <parentImage id="CXR{number}_IM-0001-1001"><figureId>F1</figureId></parentImage>
   <parentImage id="CXR{number}_IM-0001-2001"><figureId>F2</figureId></parentImage>
</eCitation>
"""

OPENI_REPORTS = [
    (1, "The heart is normal in size. No pleural effusion or pneumothorax.", "Normal chest.", ["normal"]),
    (2, "Heart size is enlarged. Small bilateral pleural effusions.", "Cardiomegaly with effusions.",
     ["Cardiomegaly/mild", "Pleural Effusion/bilateral/small"]),
    (3, "", "", ["no indexing"]),  # no text: skipped by the loader
    (10, "", "Possible right lower lobe pneumonia.", ["Pneumonia/lung/lower lobe/right"]),
]


def write_openi_archive(path: Path, reports=OPENI_REPORTS) -> Path:
    """A .tgz laid out like NLMCXR_reports.tgz: ecgen-radiology/<n>.xml."""
    with tarfile.open(path, "w:gz") as archive:
        for number, findings, impression, mesh in reports:
            mesh_xml = "\n".join(f"      <major>{term}</major>" for term in mesh)
            payload = OPENI_XML.format(number=number, findings=findings, impression=impression, mesh=mesh_xml).encode()
            info = tarfile.TarInfo(f"ecgen-radiology/{number}.xml")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return path


@pytest.fixture
def openi_archive(tmp_path) -> Path:
    return write_openi_archive(tmp_path / "NLMCXR_reports.tgz")


def test_image(height: int = 40, width: int = 60) -> np.ndarray:
    """(H, W) uint8, non-square, with a bright horizontal band near the top and a grey right strip."""
    image = np.zeros((height, width), np.uint8)
    image[5:10, :] = 255
    image[:, 50:] = 128
    return image


test_image.__test__ = False  # a helper, not a test


def write_dicom(path: Path, pixels: np.ndarray | None, photometric: str = "MONOCHROME2") -> Path:
    """A minimal valid DX DICOM file; `pixels=None` writes one without PixelData."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    dataset.Modality, dataset.PatientID = "DX", "test"
    shape = pixels.shape if pixels is not None else (40, 60)
    dataset.Rows, dataset.Columns = shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, photometric
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 12, 11, 0
    if pixels is not None:
        dataset.PixelData = (pixels.astype(np.uint16) * 16).tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path


FINDING_SENTENCES = {
    "cardiomegaly": "The heart is enlarged.",
    "effusion": "Small left pleural effusion.",
    "pneumothorax": "Small right apical pneumothorax.",
    "consolidation": "Right lower lobe consolidation.",
    "nodule_mass": "A nodule in the left upper lobe.",
    "support_devices": "Sternotomy wires and a right PICC line.",
}
NORMAL_REPORT = "The heart is normal in size. The lungs are clear. No pleural effusion or pneumothorax."


def varied_reports(count: int) -> list[tuple[int, str, str, list[str]]]:
    """`count` Open-i-style reports cycling through normal and one or two findings (for write_openi_archive)."""
    names = list(FINDING_SENTENCES)
    reports = []
    for i in range(count):
        if i % 4 == 0:
            findings, impression = NORMAL_REPORT, "Normal chest."
        else:
            chosen = [names[i % len(names)]] + ([names[(i // 2) % len(names)]] if i % 3 == 0 else [])
            findings, impression = " ".join(FINDING_SENTENCES[n] for n in dict.fromkeys(chosen)), "Abnormal chest."
        reports.append((i + 1, findings, impression, ["normal"] if i % 4 == 0 else ["Cardiomegaly"]))
    return reports


@pytest.fixture(scope="session")
def tiny_medical_run(tmp_path_factory):
    """A tiny model trained on 48 templated reports and their 32 px renders: (data folder, model folder)."""
    from core.config import load_config
    from core.data import SequenceDataset
    from core.training import Trainer
    from domains.medical.dataset import load_studies, write_medical_dataset

    root = tmp_path_factory.mktemp("medical")
    archive = write_openi_archive(root / "reports.tgz", varied_reports(48))
    data = write_medical_dataset(root / "data", load_studies(archive), image_size=32, grid=8, renders=2,
                                 held_out=0.15, vq_steps=60, text_vocab=300, max_report_tokens=40, random_reads=1,
                                 random_draws=1, min_finding_writes=40,
                                 source={"openi": str(archive)}, progress=False)
    config = load_config("tiny", [f"data.path={data}", "data.seq_len=160", "model.max_seq_len=192",
                                  "train.steps=120", "train.lr=4e-3", "train.micro_batch=8", "train.save_every=0"])
    summary = Trainer(config, SequenceDataset(data), root / "run", progress=False).fit()
    return data, root / "run" / "final", summary
