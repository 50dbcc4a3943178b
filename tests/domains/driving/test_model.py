"""Driving sequences, a tiny model trained on one scene, planning and closed-loop plumbing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.data import SequenceDataset
from domains.driving.dataset import PLAN


@pytest.fixture(scope="session")
def one_scene_run(sim_nuscenes, tmp_path_factory):
    """Tokenizers + sequences of the highway scene alone, and the tiny model trained on them:
    (samples, data folder, final model folder, summary)."""
    from core.training import Trainer
    from domains.driving.dataset import write_driving_dataset
    from domains.driving.loader import load_samples
    from tests.tiny import tiny_run_config

    samples = load_samples(sim_nuscenes, "v1.0-sim", scenes=["scene-0000"])
    data = write_driving_dataset(tmp_path_factory.mktemp("driving-seq"), samples, image_size=16, grid=4, vq_steps=30,
                                 source={"nuscenes": str(sim_nuscenes), "version": "v1.0-sim", "held_out": 0.5,
                                         "split_seed": 0}, progress=False)
    out = tmp_path_factory.mktemp("driving-run")
    config = tiny_run_config(data, "data.seq_len=128", "model.max_seq_len=128", "train.steps=400", "train.lr=5e-3",
                             "train.save_every=0", "train.micro_batch=16")
    summary = Trainer(config, SequenceDataset(data), out, progress=False).fit()
    return samples, data, out / "final", summary


def test_sequence_puts_the_plan_after_the_past_and_before_the_future_frames(one_scene_run):
    from domains.driving.dataset import IMAGE

    samples, data, _, _ = one_scene_run
    dataset = SequenceDataset(data)
    vocab = dataset.tokenizers().vocab
    example = dataset[0]
    specials = [vocab.specials[int(i) - vocab["special"].start] for i in example.token_ids
                if vocab["special"].contains(torch.tensor([int(i)]))]
    assert specials == ["<bos>", "<driving>", "<cmd>", "</cmd>", "<state>", "</state>", "<traj>", "</traj>",
                        "<img>", "</img>", "<img>", "</img>", "<traj>", "</traj>", "<img>", "</img>", "<img>", "</img>",
                        "<eos>"]
    # The loss covers the plan and the future frames only.
    plan_start = [i for i, t in enumerate(example.token_ids.tolist()) if t == vocab.special("<traj>")][1]
    assert not example.loss_mask[:plan_start].any() and example.loss_mask[plan_start:].all()
    assert int(vocab[IMAGE].contains(example.token_ids).sum()) == 4 * 16  # 4 frames of 4 x 4 codes
    assert dataset.meta["num_samples"] == sum(s.future_mask.all() and s.future_frame_mask.all() for s in samples)


def test_plan_copies_follow_the_joint_sequences_without_frames(one_scene_run, tmp_path):
    from domains.driving.dataset import IMAGE, write_driving_dataset

    samples, data, _, _ = one_scene_run
    tokenizers = SequenceDataset(data).tokenizers()
    vocab = tokenizers.vocab
    trainable = [s for s in samples if s.future_mask.all() and s.future_frame_mask.all()][:3]
    dataset = SequenceDataset(write_driving_dataset(tmp_path / "seq", trainable, tokenizers, plan_copies=2,
                                                    progress=False))
    assert len(dataset) == 3 * 3 and dataset.meta["plan_copies"] == 2 and dataset.meta["num_samples"] == 3
    joint, plan = dataset[0], dataset[3]
    assert not vocab[IMAGE].contains(plan.token_ids).any()
    assert len(plan) < 40 < len(joint)
    # the same plan tokens, the only targets besides the tags
    joint_plan = joint.token_ids[joint.loss_mask & vocab[PLAN].contains(joint.token_ids)]
    assert torch.equal(plan.token_ids[plan.loss_mask & vocab[PLAN].contains(plan.token_ids)], joint_plan)
    assert int(plan.loss_mask.sum()) == 1 + 2 * 6 + 2  # <traj>, 12 waypoint tokens, </traj>, <eos>
    assert torch.equal(dataset[6].token_ids, plan.token_ids)
    with pytest.raises(ValueError, match="plan_copies must be >= 0"):
        write_driving_dataset(tmp_path / "bad", trainable, tokenizers, plan_copies=-1, progress=False)


def test_plan_residuals_round_trip_and_zero_residuals_are_constant_velocity(one_scene_run):
    from domains.driving.baselines import constant_velocity
    from domains.driving.dataset import plan_from_residuals, plan_residuals, positions_from_steps, steps_from_positions
    from domains.driving.loader import stack_samples

    samples, data, _, _ = one_scene_run
    a = stack_samples(samples[:8])
    ego = a["history"], a["history_mask"], a["status"]
    np.testing.assert_allclose(positions_from_steps(steps_from_positions(a["future"])), a["future"], atol=1e-9)
    residuals = plan_residuals(a["future"], *ego)
    np.testing.assert_allclose(plan_from_residuals(residuals, *ego), a["future"], atol=1e-9)
    np.testing.assert_allclose(plan_from_residuals(np.zeros_like(residuals), *ego), constant_velocity(*ego), atol=1e-5)
    # a car that speeds up has positive forward residuals, growing step by step
    assert np.all(np.diff(plan_residuals(np.array([[[1.0, 0], [2.5, 0], [4.5, 0], [7, 0], [10, 0], [13.5, 0]]]),
                                         np.array([[[-2.0, 0], [-1.5, 0], [-1.0, 0], [-0.5, 0]]]), np.ones((1, 4), bool),
                                         np.array([[1.0, 0, 0]]))[0, :, 0]) > 0)
    tokenizers = SequenceDataset(data).tokenizers()
    flat = residuals[0]
    decoded = tokenizers.decode_vector(PLAN, tokenizers.encode_vector(PLAN, flat)).numpy()
    widths = tokenizers.bins[PLAN].bin_widths().numpy().max(axis=1)
    assert np.all(np.abs(decoded - flat) <= widths / 2 + 1e-6)


def test_tiny_model_overfits_one_scene_and_plans_it(one_scene_run):
    from core.pretrained import training_data_meta
    from domains.driving.baselines import constant_velocity
    from domains.driving.dataset import plan_residuals
    from domains.driving.evaluate import evaluate_open_loop
    from domains.driving.loader import stack_samples
    from domains.driving.metrics import l2_errors
    from domains.driving.model import Context, DrivingModel

    samples, data, model_dir, summary = one_scene_run
    assert training_data_meta(model_dir) == SequenceDataset(data).meta  # frame counts travel with the model
    losses = [json.loads(line)["loss"] for line in (model_dir.parent / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line]
    assert summary["final_loss"] < 0.5 * losses[0], losses
    model = DrivingModel.load(model_dir)
    trained = [s for s in samples if s.future_mask.all() and s.future_frame_mask.all()]
    contexts = [Context.from_sample(s, model.image_size) for s in trained]
    plan, frames = model.predict(contexts[:4])
    assert plan.shape == (4, 6, 2) and frames.shape == (4, 2, 3, 16, 16)
    np.testing.assert_allclose(model.plan(contexts[:4]), plan)  # greedy: the plan alone is the joint one's prefix
    mode = model.plan(contexts[:4], decode="mode")  # the drawn bins' centres: residuals lie on bin centres
    a = stack_samples(trained[:4])
    steps = plan_residuals(mode, a["history"], a["history_mask"], a["status"])
    bins = model.tokenizers.bins[PLAN]
    centres = bins.bin_centres().numpy()  # (2, num_bins)
    assert all(np.abs(steps[..., d, None] - centres[d]).min(-1).max() < 1e-4 for d in range(2))
    with pytest.raises(ValueError, match="decode must be one of"):
        model.plan(contexts[:1], decode="median")
    # several plans per context, across batches: each context's median is of its own draws (near-greedy draws
    # all agree, so their median is the greedy plan)
    greedy = model.plan(contexts[:4])
    np.testing.assert_allclose(model.plan(contexts[:4], temperature=1e-4, samples=5, batch_size=3), greedy, atol=1e-5)
    drawn = model.plan(contexts[:4], samples=8, generator=torch.Generator().manual_seed(0))
    assert drawn.shape == (4, 6, 2) and np.isfinite(drawn).all()
    with pytest.raises(ValueError, match="need temperature > 0"):
        model.plan(contexts[:1], temperature=0.0, samples=3)
    with pytest.raises(ValueError, match="frame_samples must be at least 1"):
        evaluate_open_loop(model, trained, trained, frame_samples=0)
    arrays = stack_samples(trained)
    model_l2 = l2_errors(model.plan(contexts), arrays["future"], arrays["future_mask"])["stp3"]["avg"]
    cv = constant_velocity(arrays["history"], arrays["history_mask"], arrays["status"])
    cv_l2 = l2_errors(cv, arrays["future"], arrays["future_mask"])["stp3"]["avg"]
    assert model_l2 < 0.5 * cv_l2 or model_l2 < 0.3, (model_l2, cv_l2)


def test_closed_loop_runs_the_model_and_the_baselines(one_scene_run):
    from domains.driving.closed_loop import constant_velocity_planner, model_planner, run_episodes, summarise
    from domains.driving.model import DrivingModel

    model = DrivingModel.load(one_scene_run[2])
    rows = {"idm": run_episodes("highway", [7], "idm", duration=2.0, warmup=1.0),
            "constant_velocity": run_episodes("highway", [7], constant_velocity_planner, duration=2.0, warmup=1.0),
            "model": run_episodes("highway", [7], model_planner(model), duration=2.0, warmup=1.0,
                                  image_size=model.image_size, camera_width=96)}
    summary = summarise(rows)
    assert set(summary) == {"idm", "constant_velocity", "model"}
    assert summary["idm"]["score"] == 1.0 and summary["idm"]["progress_m"] > 20  # ~25 m/s for 2 s
    for name in ("constant_velocity", "model"):
        assert 0.0 <= summary[name]["score"] <= 1.0 and summary[name]["progress_m"] >= 0


def test_a_scenarios_closed_loop_results_do_not_depend_on_the_scenarios_before_it(one_scene_run):
    from domains.driving.closed_loop import evaluate_closed_loop
    from domains.driving.model import DrivingModel

    model = DrivingModel.load(one_scene_run[2])
    plan, plans = model.plan, []
    model.plan = lambda *args, **kwargs: plans.append(plan(*args, **kwargs)) or plans[-1]  # the sampled plans

    def merge(*scenarios) -> tuple[list, list]:
        """The model's merge episodes and the plans it drew in them (the run's last ones: merge runs last)."""
        plans.clear()
        results = evaluate_closed_loop(model, episodes=1, duration=1.0, scenarios=scenarios, plan_samples=2,
                                       progress=False)
        return results["merge"]["episodes"]["model"], plans[:]

    alone, alone_plans = merge("merge")
    after, after_plans = merge("highway", "merge")
    assert after == alone and len(after_plans) > len(alone_plans) > 0
    for drawn, again in zip(alone_plans, after_plans[-len(alone_plans):]):  # its own sampler: the same draws
        np.testing.assert_array_equal(drawn, again)


def test_leaving_the_lanes_where_the_map_ends_finishes_the_episode():
    from domains.driving.closed_loop import run_episodes

    # the IDM driver on this intersection seed turns and drives to the end of the exit lane, about 14 s in
    (idm,) = run_episodes("intersection", [1_000_000], "idm", duration=15.0)
    assert idm["finished"] and not idm["off_road"] and not idm["collision"] and idm["progress"] > 100
    (short,) = run_episodes("intersection", [1_000_000], "idm", duration=5.0)  # stopped before the end
    assert not short["finished"] and not short["off_road"] and short["progress"] < idm["progress"]


def test_the_way_ahead_follows_the_route_then_the_lanes_that_carry_on():
    from domains.driving.closed_loop import _lanes_ahead
    from simulators.driving import EVALUATION_SEEDS, DrivingSim

    for scenario, beyond in (("roundabout", [("nxs", "nxr", 0)]), ("intersection", [])):
        sim = DrivingSim(scenario, render=False)
        try:
            sim.reset(EVALUATION_SEEDS)
            lanes = _lanes_ahead(sim, 800.0)
            assert [lane[:2] for lane in lanes] == [road[:2] for road in sim.route] + [lane[:2] for lane in beyond]
            # the roundabout's exit goes on past its route to where the map ends; the intersection's exit ends at the
            # inbound lane of the same arm (a U-turn, not a way ahead)
            assert lanes[len(sim.route):] == beyond
            if scenario == "roundabout":  # in the ring, the lane the entry reaches (the outer), not lane 0 of each road
                assert lanes[2] == ("se", "ex", 1)
        finally:
            sim.close()


def test_the_command_follows_the_lane_the_car_is_in():
    from domains.driving.closed_loop import _Car, _context, reference_path, route_command
    from domains.driving.model import Context
    from simulators.driving import EVALUATION_SEEDS, DrivingSim

    sim = DrivingSim("highway", render=False)
    try:
        frame = sim.reset(EVALUATION_SEEDS + 4)  # its IDM driver changes lane early on
        first_lane, first_path = sim.ego.lane_index, reference_path(sim)
        car = _Car(sim, first_path, None, [frame.ego], [frame.time], [frame.ego], [np.zeros((9, 16, 3), np.uint8)])
        for _ in range(100):
            frame = sim.step()
            car.poses.append(frame.ego)
            car.times.append(frame.time)
            lateral = sim.ego.lane.local_coordinates(sim.ego.position)[1]
            if frame.key and sim.ego.lane_index != first_lane and abs(lateral) < 0.2:
                break  # settled in another lane
        assert sim.ego.lane_index != first_lane and abs(lateral) < 0.2
        assert route_command(first_path, frame.ego, sim.ego.speed) != 2  # the first lane's path: "turn back"
        assert _context(car, 1, 8, Context).command == 2  # the lane it is in: straight on
    finally:
        sim.close()


def test_pure_pursuit_steers_towards_the_plan():
    from domains.driving.closed_loop import pure_pursuit

    straight = np.array([[5.0 * k, 0.0] for k in range(1, 7)])
    acceleration, steering = pure_pursuit(straight, speed=10.0, wheelbase=5.0)
    assert abs(steering) < 1e-9 and abs(acceleration) < 1e-6  # on plan, at the plan's speed
    left = straight + np.array([[0.0, 0.2 * k**2] for k in range(1, 7)])
    assert pure_pursuit(left, 10.0, 5.0)[1] > 0 and pure_pursuit(left * [1, -1], 10.0, 5.0)[1] < 0
    assert pure_pursuit(straight, 15.0, 5.0)[0] < 0  # faster than the plan: brake


def test_cli_writes_a_dataset_evaluates_and_draws_a_plan(one_scene_run, sim_nuscenes, tmp_path):
    from core.cli import main
    from domains.driving.loader import open_nuscenes

    root = tmp_path / "ns"
    assert main(["data", "driving", "--out", str(root), "--scenes", "1", "--duration", "2", "--camera-width", "64",
                 "--workers", "1", "--scenarios", "merge"]) == 0
    nusc = open_nuscenes(root, "v1.0-sim")
    assert len(nusc.sample) == 5 and nusc.sample_data[0]["width"] == 64
    _, data, model_dir, _ = one_scene_run
    results = tmp_path / "eval.json"
    assert main(["eval", "driving", "--model", str(model_dir), "--data", str(data), "--limit", "6", "--no-fid",
                 "--mlp-steps", "50", "--out", str(results), "--samples", str(tmp_path / "samples")]) == 0
    metrics = json.loads(results.read_text())
    assert metrics["num_test_samples"] == 6 and set(metrics["planning"]) == {"model", "constant_velocity", "ego_status_mlp"}
    assert (tmp_path / "samples" / "trajectories.png").is_file() and (tmp_path / "samples" / "frames.gif").is_file()
    figure = tmp_path / "plan.png"
    assert main(["generate", "driving", "--model", str(model_dir), "--nuscenes", str(sim_nuscenes), "-o", str(figure)]) == 0
    assert figure.is_file()
    assert main(["data", "driving", "--out", str(tmp_path / "x"), "--scenarios", "parking"]) == 2  # unknown scenario


def test_a_track_id_follows_one_car_through_a_scene():
    from simulators.driving import DrivingSim

    sim = DrivingSim("intersection", render=False)
    try:
        sim.reset(3)  # cars leave and spawn: a new car used to take over a removed car's id (its freed address)
        last = {}
        for _ in range(300):
            frame = sim.step()
            for track, box in zip(frame.agent_ids, frame.agents):
                assert track not in last or np.linalg.norm(box[:2] - last[track]) < 5.0  # no 5 m jump in 0.1 s
                last[track] = box[:2]
    finally:
        sim.close()
