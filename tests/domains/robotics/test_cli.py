"""`uwm data|finetune|eval|generate robotics` end to end at tiny scale, as a user runs them."""

import json

import pytest
from PIL import Image

from core.cli import main


def test_data_command_simulates_and_tokenizes(tmp_path):
    out = tmp_path / "data"
    assert main(["data", "robotics", "--out", str(out), "--tasks", "reach-v3", "--episodes", "2", "--steps", "3",
                 "--image-size", "32", "--grid", "4", "--window", "3", "--stride", "1", "--vq-steps", "2",
                 "--workers", "1", "--policies", "expert:0=1,random=1", "--context-decoder-steps", "2"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["meta"]["task"] == "robotics" and manifest["num_samples"] == 4  # 2 episodes x 2 windows
    report = json.loads((out / "context_decoder" / "report.json").read_text())
    assert report["steps"] == 2 and len(report["psnr_learned_by_gap"]) == 3  # 4 frames per episode: gaps 1..3
    assert json.loads((out / "episodes" / "manifest.json").read_text())["complete"]
    again = tmp_path / "again"  # sequences of an episode folder: all of its tasks unless --tasks names some
    assert main(["data", "robotics", "--out", str(again), "--from-episodes", str(out / "episodes"), "--grid", "4",
                 "--window", "3", "--stride", "1", "--vq-steps", "2", "--context-decoder-steps", "0"]) == 0
    meta = json.loads((again / "manifest.json").read_text())["meta"]
    assert meta["tasks"] == ["reach-v3"] and meta["action_repeat"] == 2  # the episodes' own repeat, recorded


def test_eval_and_generate_commands(push_run, push_episodes, tmp_path, capsys):
    from domains.robotics.world_model import WorldModel, fit_context_decoder

    model = str(push_run[0] / "final")
    decoder = tmp_path / "context_decoder"
    fit_context_decoder(WorldModel.load(model).tokenizers, push_episodes, decoder, steps=2, progress=False)
    gif, report = tmp_path / "eval.gif", tmp_path / "eval.json"
    assert main(["eval", "robotics", "--model", model, "--context-decoder", str(decoder),
                 "--episodes", str(push_episodes), "--context", "1",
                 "--horizon", "2", "--no-fid", "--gif", str(gif), "--out", str(report), "--zero-action-model", model,
                 "--rank-policies", "expert:0,random", "--rank-episodes", "1", "--max-steps", "2",
                 "--plan-seeds", "1", "--plan-population", "2", "--plan-horizon", "1", "--plan-iterations", "1",
                 "--plan-replan", "1", "--plan-execute", "mean", "--plan-ensemble", model,
                 "--plan-pessimism", "0.5", "--plan-stages", str(tmp_path / "mpc")]) == 0
    results = json.loads(report.read_text())
    assert len(results["model"]["psnr"]) == 2 and "zero_actions" in results
    assert {"model_anchored", "model_learned", "zero_actions_learned"} <= set(results)  # each decoding scored
    assert results["ranking"]["policies"] == ["expert:0", "random"]
    assert set(results["planning"]) >= {"world_model_mpc", "oracle_mpc", "random"}
    assert results["planning"]["planner"] == {"method": "CEM", "horizon": 1, "population": 2, "elites": 2,  # elites
                                              "iterations": 1, "replan_every": 1, "objective": "goal",  # <= population
                                              "pessimism": 0.5, "execute": "mean"}
    assert results["planning"]["world_models"] == 2 and results["planning"]["ensemble_dirs"] == [model]
    assert (tmp_path / "mpc" / "seed_2000.stage.pt").is_file()  # the MPC seed kept for a rerun to resume from
    assert Image.open(gif).n_frames == 2
    output = tmp_path / "imagined.gif"
    assert main(["generate", "robotics", "--model", model, "--context-decoder", str(decoder), "--steps", "3",
                 "-o", str(output)]) == 0
    assert Image.open(output).n_frames == 3 and Image.open(output).size == (2 * 32 * 3, 32 * 3)
    assert WorldModel.load(model).action_repeat == 2  # from its training episodes: the default of both commands
    capsys.readouterr()
    assert main(["generate", "robotics", "--model", model, "--action-repeat", "3", "-o", str(output)]) == 2
    assert "was trained on episodes at action repeat 2" in capsys.readouterr().err
    assert WorldModel.load(model).tasks == ["push-v3"]  # the default --task
    assert main(["generate", "robotics", "--model", model, "--task", "reach-v3", "-o", str(output)]) == 2
    assert "--task reach-v3: " in (error := capsys.readouterr().err) and "was trained on push-v3 only" in error


def test_finetune_refuses_another_domains_data(push_sequences, tmp_path, capsys):
    assert main(["finetune", "toy", "--data", str(push_sequences), "--init", str(tmp_path), "--out",
                 str(tmp_path / "run")]) == 2
    assert "holds 'robotics' sequences, not 'toy'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["data", "robotics", "--out", "x", "--tasks", "fly-v3"], "unknown robot task 'fly-v3'"),
    (["data", "robotics", "--out", "x", "--policies", "expert:0=abc"], "the weight after '=' must be a number"),
    (["data", "robotics", "--out", "x", "--policies", "wm-planner"], "--world-model) must be the folder"),
])
def test_bad_input_gets_a_clear_error(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
