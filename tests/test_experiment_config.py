"""`experiments.common.experiment_config`: an experiment's config checked against its committed one before the
first stage runs (a misspelt or missing setting named with its file), on the three committed configs."""

from __future__ import annotations

from pathlib import Path

import re

import pytest
import yaml

from experiments.common import experiment_config

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
ROBOTICS_FREE = ("data.policies", "planning.mpc")


def write(tmp_path: Path, cfg) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("name", ["medical_cxr", "driving_nuscenes", "robotics_metaworld"])
def test_a_changed_value_is_kept_and_the_committed_config_passes(tmp_path, name):
    default = EXPERIMENTS / f"{name}.yaml"
    cfg = yaml.safe_load(default.read_text())
    cfg["seed"] = 7
    assert experiment_config(write(tmp_path, cfg), default, ROBOTICS_FREE) == cfg


def test_a_misspelt_or_missing_setting_is_named_with_its_file(tmp_path):
    default = EXPERIMENTS / "medical_cxr.yaml"
    cfg = yaml.safe_load(default.read_text())
    cfg["eval"]["tune_studes"] = cfg["eval"].pop("tune_studies")
    path = write(tmp_path, cfg)
    with pytest.raises(SystemExit, match=re.escape(f"{path}: unknown setting eval.tune_studes; medical_cxr.yaml has ")
                                         + r".*tune_studies.* at eval"):
        experiment_config(path, default)
    cfg["eval"]["tune_studies"] = cfg["eval"].pop("tune_studes")
    del cfg["data"]["random_reads"]
    with pytest.raises(SystemExit, match=r"missing setting data\.random_reads"):
        experiment_config(write(tmp_path, cfg), default)
    cfg["data"]["random_reads"], cfg["judge_step"] = 1, 600
    with pytest.raises(SystemExit, match=r"unknown setting judge_step; .* at the top level"):
        experiment_config(write(tmp_path, cfg), default)


def test_free_mappings_take_any_keys_and_the_others_must_be_mappings(tmp_path):
    default = EXPERIMENTS / "robotics_metaworld.yaml"
    cfg = yaml.safe_load(default.read_text())
    cfg["data"]["policies"] = {"expert:0.9": 1}  # keys are policy specs
    cfg["planning"]["mpc"] = {"horizon": 8}  # MPCSettings' defaults fill the rest
    assert experiment_config(write(tmp_path, cfg), default, ROBOTICS_FREE)["planning"]["mpc"] == {"horizon": 8}
    with pytest.raises(SystemExit, match=r"unknown setting data\.policies\.expert:0\.9"):
        experiment_config(write(tmp_path, cfg), default)
    for key, value, expected in (("planning", 3, "planning should be a mapping"),
                                 ("planning.mpc", 3, "planning.mpc should be a mapping"),  # free, yet a mapping
                                 ("seed", {"value": 0}, "seed should be a value, not a mapping")):
        changed = yaml.safe_load(default.read_text())
        *parents, last = key.split(".")
        (changed[parents[0]] if parents else changed)[last] = value
        with pytest.raises(SystemExit, match=expected):
            experiment_config(write(tmp_path, changed), default, ROBOTICS_FREE)


def test_a_file_that_is_not_a_config_is_refused(tmp_path):
    default = EXPERIMENTS / "driving_nuscenes.yaml"
    with pytest.raises(SystemExit, match="expected a mapping of settings"):
        experiment_config(write(tmp_path, [1, 2]), default)
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: [0\n")
    with pytest.raises(SystemExit, match=re.escape(f"experiment config {broken}")):
        experiment_config(broken, default)
    with pytest.raises(SystemExit, match="missing.yaml"):
        experiment_config(tmp_path / "missing.yaml", default)
