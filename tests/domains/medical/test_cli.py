"""`uwm eval|generate medical --settings`: an experiment config's `eval:` block as the command's options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from core.cli import build_parser

EXPERIMENT = Path(__file__).resolve().parents[3] / "experiments" / "medical_cxr.yaml"


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def test_the_experiment_config_sets_eval_and_generate_options():
    settings = yaml.safe_load(EXPERIMENT.read_text())["eval"]
    args = parse("eval", "medical", "--model", "m", "--data", "d", "--settings", str(EXPERIMENT))
    for key, value in settings.items():
        assert getattr(args, key) == value, key
    args = parse("generate", "medical", "--model", "m", "--settings", str(EXPERIMENT), "--report", "Normal.")
    assert (args.temperature, args.draw_candidates, args.draw_from) == (settings["temperature"],
                                                                       settings["draw_candidates"], settings["draw_from"])
    assert not hasattr(args, "tune_studies")  # eval's tuning is not a generate option


def test_options_after_settings_win_and_before_lose(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("eval:\n  temperature: 0.7\n  report_candidates: 128\n")
    args = parse("eval", "medical", "--model", "m", "--data", "d", "--temperature", "0.9", "--settings", str(path),
                 "--report-candidates", "8")
    assert (args.temperature, args.report_candidates, args.cfg_scale) == (0.7, 8, 3.0)


BAD_SETTINGS = [("eval:\n  temprature: 0.7\n", "eval.temprature is not a setting"),
                ("seed: 0\n", "no `eval:` block"),
                ("eval: [1, 2\n", "expected a YAML experiment config"),
                ("eval:\n  read_phases: 1.5\n", "eval.read_phases: expected an integer >= 1, got 1.5"),
                ("eval:\n  draw_streams: 0\n", "eval.draw_streams: expected an integer >= 1, got 0"),
                ("eval:\n  draw_from: text\n", "eval.draw_from: expected one of findings, report, got 'text'"),
                ("eval:\n  findings_threshold: high\n", "findings_threshold: expected a number in [0, 1] or 'tuned'"),
                ("eval:\n  cfg_scale: strong\n", "eval.cfg_scale: expected a number, got 'strong'")]


@pytest.mark.parametrize("text, message", BAD_SETTINGS)
def test_bad_settings_name_the_file_and_what_was_expected(tmp_path, capsys, text, message):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit):
        parse("eval", "medical", "--model", "m", "--data", "d", "--settings", str(path))
    error = capsys.readouterr().err
    assert message in error and str(path) in error


@pytest.mark.parametrize("option", ["--draw-streams", "--draw-candidates", "--report-candidates", "--read-phases"])
def test_counts_below_one_are_refused_before_anything_runs(capsys, option):
    with pytest.raises(SystemExit):
        parse("eval", "medical", "--model", "m", "--data", "d", option, "0")
    assert f"argument {option}: expected an integer >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse("eval", "medical", "--model", "m", "--data", "d", option, "two")
    assert f"argument {option}: invalid integer value: 'two'" in capsys.readouterr().err


def test_thresholds_are_a_number_or_an_evaluations_results(tmp_path, capsys):
    from domains.medical.findings import PATHOLOGIES

    args = parse("generate", "medical", "--model", "m", "--image", "x.png", "--thresholds", "0.3")
    assert args.thresholds == (0.3, None)
    tuned = {name: 0.1 * j for j, name in enumerate(PATHOLOGIES)}
    results = tmp_path / "eval.json"  # as `uwm eval medical --out` writes it
    results.write_text(json.dumps({"image_to_report": {"findings_threshold": tuned, "read_phases": 2}}))
    args = parse("generate", "medical", "--model", "m", "--image", "x.png", "--thresholds", str(results))
    assert args.thresholds == (tuned, 2) and args.read_phases is None  # the evaluation's, unless given
    results.write_text(json.dumps({"image_to_report": {"findings_threshold": 0.4}}))  # from before read phases
    assert parse("generate", "medical", "--model", "m", "--image", "x.png", "--thresholds", str(results)).thresholds \
        == (0.4, 1)
    for text, message in (("1.5", "expected a number in [0, 1] or an evaluation's results JSON, got 1.5"),
                          (str(tmp_path / "missing.json"), "missing.json: expected the results JSON of an evaluation")):
        with pytest.raises(SystemExit):
            parse("generate", "medical", "--model", "m", "--image", "x.png", "--thresholds", text)
        assert message in capsys.readouterr().err
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"image_to_report": {"findings_threshold": {"effusion": 0.2}, "read_phases": 2}}))
    with pytest.raises(SystemExit):
        parse("generate", "medical", "--model", "m", "--image", "x.png", "--thresholds", str(partial))
    assert f"{partial}: image_to_report.findings_threshold: expected a number in [0, 1] or one per pathology" in \
        capsys.readouterr().err


@pytest.mark.parametrize("option, value, message", [("--findings-threshold", "high", "expected a number in [0, 1] or 'tuned'"),
                                                    ("--tune-studies", "-3", "expected an integer >= 0 (0: all), got -3")])
def test_eval_tuning_options_are_checked_when_parsed(capsys, option, value, message):
    with pytest.raises(SystemExit):
        parse("eval", "medical", "--model", "m", "--data", "d", option, value)
    assert f"argument {option}: " in (error := capsys.readouterr().err) and message in error


@pytest.mark.parametrize("argv, message", [
    (["--report", "Normal."], "--report needs -o/--output"),
    (["--image", "x.png", "-o", "y.png"], "--image reads the image and prints its findings and report: not with -o"),
])
def test_generate_option_clashes_are_refused_before_the_model_loads(capsys, argv, message):
    from core.cli import main

    assert main(["generate", "medical", "--model", "no-such-model", *argv]) == 2  # the model is never opened
    assert message in capsys.readouterr().err
