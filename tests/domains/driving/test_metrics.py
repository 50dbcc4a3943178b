import numpy as np
import pytest
import torch

from domains.driving.metrics import (collision_rates, collisions, ego_box_polygons, ego_headings, l2_errors,
                                     planning_metrics)

STRAIGHT = np.stack([np.arange(1.0, 7.0), np.zeros(6)], axis=1)  # 1 m steps along +x: heading 0
SQUARE_EGO = (4.0, 2.0)  # binary-exact box sizes, so touching is exact in floating point


def no_agents(num_samples=1):
    return [[np.zeros((0, 5)) for _ in range(6)] for _ in range(num_samples)]


def test_l2_both_conventions_on_a_hand_computed_case():
    gt = np.zeros((1, 6, 2))
    pred = gt.copy()
    pred[0, :, 0] = [1, 2, 3, 4, 5, 6]  # errors 1..6 m at 0.5..3.0 s
    scores = l2_errors(torch.from_numpy(pred), gt, np.ones((1, 6), bool))
    assert scores["uniad"] == pytest.approx({"1s": 2.0, "2s": 4.0, "3s": 6.0, "avg": 4.0})  # value at t
    assert scores["stp3"] == pytest.approx({"1s": 1.5, "2s": 2.5, "3s": 3.5, "avg": 2.5})  # mean over 0.5 s..t
    assert all(isinstance(value, float) for value in scores["stp3"].values())


def test_l2_masking_excludes_samples_per_horizon():
    gt = np.zeros((2, 6, 2))
    pred = gt.copy()
    pred[0, :, 0] = [1, 2, 3, 4, 5, 6]
    pred[1, :, 1] = 10.0  # a 10 m error everywhere, but its scene ends after 1.5 s
    gt[1, 3:] = np.nan  # padding past the scene end must not leak into any mean
    mask = np.array([[True] * 6, [True] * 3 + [False] * 3])
    scores = l2_errors(pred, gt, mask)
    assert scores["uniad"]["1s"] == pytest.approx((2 + 10) / 2)
    assert scores["uniad"]["2s"] == pytest.approx(4.0) and scores["uniad"]["3s"] == pytest.approx(6.0)
    assert scores["stp3"]["1s"] == pytest.approx((1.5 + 10) / 2)
    assert scores["stp3"]["2s"] == pytest.approx(2.5) and scores["stp3"]["3s"] == pytest.approx(3.5)

    no_3s = l2_errors(pred, gt, np.array([[True] * 5 + [False]] * 2) & mask)
    assert np.isnan(no_3s["uniad"]["3s"]) and np.isnan(no_3s["stp3"]["3s"]) and np.isnan(no_3s["uniad"]["avg"])


def test_l2_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"pred must have shape \(N, 6, 2\)"):
        l2_errors(np.zeros((2, 5, 2)), np.zeros((2, 6, 2)), np.ones((2, 6), bool))
    with pytest.raises(ValueError, match="number of samples"):
        l2_errors(np.zeros((2, 6, 2)), np.zeros((3, 6, 2)), np.ones((2, 6), bool))


def test_ego_heading_follows_travel_and_holds_when_stopped():
    waypoints = np.zeros((1, 6, 2))  # stands still for 0.5 s, then moves diagonally, then stops
    waypoints[0, 1:] = [[1, 1], [2, 2], [2, 2.05], [2, 2.05], [2, 3]]
    np.testing.assert_allclose(ego_headings(waypoints)[0], [0, np.pi / 4, np.pi / 4, np.pi / 4, np.pi / 4, np.pi / 2])
    box = ego_box_polygons(np.zeros((1, 6, 2)), ego_size=SQUARE_EGO)[0, 0]
    assert box.bounds == (-2.0, -1.0, 2.0, 1.0)  # length along +x at heading 0


def test_collision_touching_counts_and_separated_does_not():
    boxes = no_agents()
    boxes[0][0] = np.array([[4.0, 0.0, 0.0, 2.0, 2.0]])  # x in [3, 5]; the ego at (1, 0) spans x in [-1, 3]
    boxes[0][1] = np.array([[5.5, 0.0, 0.0, 2.0, 2.0]])  # x in [4.5, 6.5]; the ego at (2, 0) ends at x = 4
    colliding = collisions(STRAIGHT[None], boxes, ego_size=SQUARE_EGO)
    assert colliding.tolist() == [[True, False, False, False, False, False]]


def test_collision_depends_on_agent_yaw_and_ego_heading():
    boxes = no_agents(2)
    # A 4 x 1 m agent 2.6 m to the left of the ego at (6, 0): lengthwise along x it clears the ego's side
    # (y = 1) by 1.1 m; turned by 90 degrees it reaches down to y = 0.6.
    boxes[0][5] = np.array([[6.0, 2.6, 0.0, 4.0, 1.0]])
    boxes[1][5] = np.array([[6.0, 2.6, np.pi / 2, 4.0, 1.0]])
    colliding = collisions(np.stack([STRAIGHT, STRAIGHT]), boxes, ego_size=SQUARE_EGO)
    assert colliding[:, 5].tolist() == [False, True]

    # Driving along +y, the ego box is turned: at (0, 3) it spans x in [-1, 1], clear of an agent at x >= 1.5
    # that an axis-aligned 4 m-long ego box would hit.
    turning = STRAIGHT[None, :, ::-1].copy()
    boxes = no_agents()
    boxes[0][2] = np.array([[2.5, 3.0, 0.0, 2.0, 2.0]])
    assert not collisions(turning, boxes, ego_size=SQUARE_EGO).any()
    along_x = np.array([[[-2.0, 3.0], [-1.0, 3.0], [0.0, 3.0], [1.0, 3.0], [2.0, 3.0], [3.0, 3.0]]])
    assert collisions(along_x, boxes, ego_size=SQUARE_EGO)[0, 2]  # same centre, heading 0: x in [-2, 2]


def test_ego_size_per_sample():
    """The simulated car (5 x 2 m) reaches an agent whose gap the nuScenes Zoe's 4.084 m box leaves open."""
    from domains.driving.loader import EGO_SIZE, SIM_EGO_SIZE

    boxes = no_agents(2)
    for sample in boxes:  # the ego at (1, 0) ends at x = 3.042 (Zoe) or 3.5 (sim); the agent starts at x = 3.25
        sample[0] = np.array([[4.25, 0.0, 0.0, 2.0, 2.0]])
    sizes = np.array([EGO_SIZE, SIM_EGO_SIZE])
    assert collisions(np.stack([STRAIGHT, STRAIGHT]), boxes, ego_size=sizes)[:, 0].tolist() == [False, True]
    assert not collisions(np.stack([STRAIGHT, STRAIGHT]), boxes)[:, 0].any()  # the default: the Zoe
    with pytest.raises(ValueError, match=r"ego_size must be .* \(2, 2\), got \(3, 2\)"):
        collisions(np.stack([STRAIGHT, STRAIGHT]), boxes, ego_size=np.ones((3, 2)))


def test_masked_waypoints_never_collide():
    boxes = [[np.array([[x, 0.0, 0.0, 4.0, 2.0]]) for x in STRAIGHT[:, 0]]]  # an agent on every waypoint
    mask = np.array([[True, True, False, False, False, False]])
    pred = STRAIGHT[None].copy()
    pred[0, 2:] = np.nan  # masked predictions may be anything
    assert collisions(pred, boxes, mask).tolist() == [[True, True, False, False, False, False]]


def test_collision_rates_both_conventions_on_a_hand_case():
    colliding = np.zeros((3, 6), bool)
    colliding[0, 1] = colliding[1, 5] = colliding[2, 0] = True
    colliding[2, 4] = True  # past sample 2's scene end: ignored
    mask = np.ones((3, 6), bool)
    mask[2, 3:] = False
    rates = collision_rates(colliding, mask)
    assert rates["uniad"] == pytest.approx({"1s": 1 / 3, "2s": 0.0, "3s": 1 / 2, "avg": (1 / 3 + 0 + 1 / 2) / 3})
    # per sample: fraction of waypoints up to t that collide; samples with a gap before t are left out
    stp3 = {"1s": (1 / 2 + 0 + 1 / 2) / 3, "2s": (1 / 4 + 0) / 2, "3s": (1 / 6 + 1 / 6) / 2}
    stp3["avg"] = sum(stp3.values()) / 3
    assert rates["stp3"] == pytest.approx(stp3)


def test_planning_metrics_ignores_ground_truth_collisions_and_reports_a_subset():
    pred = np.stack([STRAIGHT, STRAIGHT])
    gt = pred.copy()
    gt[1] += [0.0, 10.0]  # sample 1's true path is far to the left
    boxes = no_agents(2)
    boxes[0][5] = boxes[1][5] = np.array([[6.0, 0.0, 0.0, 4.0, 2.0]])  # on the planned path at 3 s
    results = planning_metrics(pred, gt, np.ones((2, 6), bool), boxes, subset=np.array([False, True]))
    # sample 0's ground truth hits the agent too (annotation noise): not counted; sample 1's does not
    assert results["collision_rate"]["uniad"]["3s"] == pytest.approx(0.5)
    assert results["l2_m"]["uniad"]["3s"] == pytest.approx(5.0)
    assert results["subset"]["num_samples"] == 1
    assert results["subset"]["collision_rate"]["uniad"]["3s"] == pytest.approx(1.0)
    assert results["subset"]["l2_m"]["stp3"]["3s"] == pytest.approx(10.0)


def test_frame_psnr_reports_the_capped_images_and_the_pooled_error():
    """A frame identical to the truth (a standing car) counts 60 dB in the per-image mean; the pooled PSNR does not."""
    from domains.driving.evaluate import _frame_metrics

    truth = torch.full((2, 1, 3, 16, 16), 0.5)
    predicted = truth.clone()
    predicted[1] += 0.1  # image 1: MSE 0.01, 20 dB; image 0: identical, capped at 60 dB
    scores = _frame_metrics(predicted, truth)
    assert scores["psnr_db"] == [pytest.approx(40.0)] and scores["images_at_psnr_cap"] == [1]
    assert scores["psnr_of_mean_mse_db"] == [pytest.approx(10 * np.log10(1 / 0.005), abs=1e-4)]
