import numpy as np
import pytest
import torch

from domains.medical.evaluate import judge_targets, load_or_fit_judge, mean_image_baseline
from domains.medical.findings import FINDINGS
from domains.medical.judge import FindingsJudge, judge_fid
from domains.medical.renderer import render_batch
from domains.medical.reports import Study

from .conftest import test_image


def test_judge_learns_rendered_findings_and_round_trips(tmp_path):
    """MONAI DenseNet121 on 32 px renders: cardiomegaly and effusion become detectable in a few dozen steps."""
    rng = np.random.default_rng(0)
    sets = [tuple(name for name in ("cardiomegaly", "effusion") if rng.random() < 0.5) for _ in range(240)]
    images = torch.from_numpy(render_batch(sets, size=32, seed=0))
    judge = FindingsJudge(image_size=32)
    report = judge.fit(images, judge_targets(sets), steps=50, batch_size=32, lr=3e-3, held_out=0.25, progress=False)
    for name in ("cardiomegaly", "effusion", "no_finding"):
        assert report["held_out_auc"][name] > 0.8, (name, report["held_out_auc"])
    assert report["held_out_auc"]["fracture"] is None  # never present: AUC undefined, not a made-up number
    assert judge.predict(images[:5]).shape == (5, len(FINDINGS)) and judge.features(images[:5]).shape == (5, 1024)
    loaded = FindingsJudge.load(judge.save(tmp_path / "judge"))
    assert np.array_equal(loaded.thresholds, judge.thresholds)
    assert torch.allclose(loaded.logits(images[:4]), judge.logits(images[:4]), atol=1e-5)
    # FID on judge features: a set against itself is ~0, against other findings larger
    healthy = images[[i for i, s in enumerate(sets) if not s]][:40]
    sick = images[[i for i, s in enumerate(sets) if len(s) == 2]][:40]
    assert judge_fid(judge, healthy[:20], healthy[20:40]) < judge_fid(judge, healthy[:20], sick[:20])


def test_saved_judge_is_for_its_training_studies_and_sees_a_real_image_once(tmp_path):
    from PIL import Image

    Image.fromarray(test_image()).save(tmp_path / "real.png")
    rendered = [Study(f"r{i}", "Cardiomegaly.", "", labels={"cardiomegaly": 1}) for i in range(4)]
    train = [*rendered, Study("real", "Clear lungs.", "", image=tmp_path / "real.png", labels={"no_finding": 1})]
    judge, report = load_or_fit_judge(tmp_path / "judge", train, image_size=32, steps=2, progress=False)
    # two rendered patients per rendered study (variants), the real image once (5 + 4), and as many random sets
    assert report["num_train"] + report["num_held_out"] == 2 * (5 + 4)
    again, loaded_report = load_or_fit_judge(tmp_path / "judge", train[::-1], image_size=32, steps=2, progress=False)
    assert loaded_report == report and np.array_equal(again.thresholds, judge.thresholds)  # loaded, same studies
    with pytest.raises(ValueError, match="other studies"):
        load_or_fit_judge(tmp_path / "judge", rendered, image_size=32, steps=2, progress=False)
    (tmp_path / "judge" / "report.json").unlink()  # a judge saved without its record may have seen any study
    with pytest.raises(ValueError, match="no record of the studies this judge was trained on"):
        load_or_fit_judge(tmp_path / "judge", train, image_size=32, steps=2, progress=False)


def test_targets_and_mean_image_baseline():
    targets = judge_targets([(), ("support_devices",), ("effusion",)])
    no_finding, devices, effusion = (FINDINGS.index(n) for n in ("no_finding", "support_devices", "effusion"))
    assert targets[:, no_finding].tolist() == [1, 1, 0] and targets[1, devices] == 1 and targets[2, effusion] == 1
    images = torch.stack([torch.full((1, 4, 4), v) for v in (0.0, 0.4, 1.0)])
    means = mean_image_baseline(images, [(), (), ("effusion",)], [(), ("effusion",), ("fracture",)])
    # the two normals' mean; the effusion image; the global mean (no training image has a fracture)
    assert means[:, 0, 0, 0].tolist() == pytest.approx([0.2, 1.0, 1.4 / 3])
    assert torch.allclose(mean_image_baseline(images, [(), ("a",), ("b",)], [("a",)]), images[1:2])


def test_fid_fallback_with_ridge_matches_monai():
    """The ridge FID used when MONAI's sqrtm is too complex agrees with MONAI where both work."""
    from monai.metrics import FIDMetric

    from domains.medical.judge import _fid_with_ridge

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8)) + 0.5
    assert _fid_with_ridge(a, b) == pytest.approx(float(FIDMetric()(torch.tensor(a), torch.tensor(b))), rel=1e-4)
    assert _fid_with_ridge(a, a) == pytest.approx(0.0, abs=1e-3)
