"""Which plan should a CEM planner on the world model return: its best-scoring candidate or its elites' mean?
Along oracle-MPC episodes (H=4, K=2), at each replanning the WM planner (fresh warm start = the oracle's previous
plan) plans; the simulator scores its best candidate, its elite mean, and the oracle's plan."""
import sys, os
sys.path.insert(0, os.environ.get("REPO", "/work/main"))
import numpy as np, torch
from simulators.robots import make_env
from domains.robotics.planning import CEMPlanner, SimulatorScorer, WorldModelScorer
from domains.robotics.world_model import WorldModel
torch.set_num_threads(2)
wm = WorldModel.load(sys.argv[1], max_history=1); seeds = [int(s) for s in sys.argv[2].split(",")]
readout = sys.argv[3] if len(sys.argv) > 3 else "mode"
H, K = 4, 2
rows = []
for seed in seeds:
    with make_env("push-v3", 64, action_repeat=2, max_steps=50) as env, SimulatorScorer(
            "push-v3", seed, 2, objective="goal") as sim:
        scorer = WorldModelScorer(wm, "push-v3", objective="goal")
        if readout == "mean":
            imagine = wm.imagine
            wm.imagine = lambda *a, **k: imagine(*a, **k, states="mean")
        oracle = CEMPlanner(env.action_space, H, 32, 4, 2, seed=seed)
        model = CEMPlanner(env.action_space, H, 32, 4, 2, seed=seed + 10_000)
        obs, _ = env.reset(seed=seed); oracle.reset()
        for step in range(0, 50, K):
            sim.sync(env); scorer.sync(env)
            model.mean = None if oracle.mean is None else oracle.mean.copy()
            wm_best = model.plan(scorer, executed=K)
            wm_mean = model.mean.copy()
            plan = oracle.plan(sim, executed=K)
            true = sim(np.stack([wm_best, wm_mean, plan]))
            state = obs["state"]
            hand_puck = np.linalg.norm(state[:3] - state[4:7])
            rows.append([seed, step, hand_puck, *true])
            print(f"seed {seed} t{step:2d} hand-puck {hand_puck:.3f} true returns: "
                  f"wm best {true[0]:.3f} wm elite-mean {true[1]:.3f} oracle {true[2]:.3f}", flush=True)
            done = False
            for a in plan[:K]:
                obs, rew, term, trunc, info = env.step(a)
                if info["success"]: done = True; break
            if done: break
a = np.array(rows)
np.save(os.environ.get("OUT", f"/tmp/s19/plan_choice_{readout}.npy"), a)
contact = a[:, 2] < 0.08
for name, sel in (("all", slice(None)), ("contact", contact)):
    b = a[sel]
    print(f"{name} ({len(b)}): regret vs oracle: best {np.mean(b[:, 5] - b[:, 3]):.4f}  "
          f"elite-mean {np.mean(b[:, 5] - b[:, 4]):.4f}; "
          f"elite-mean better in {np.mean(b[:, 4] > b[:, 3]):.2f}, worse in {np.mean(b[:, 4] < b[:, 3]):.2f}")
