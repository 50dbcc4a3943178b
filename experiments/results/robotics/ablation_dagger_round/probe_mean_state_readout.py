"""Does the expected-value state readout rank a CEM population better than the most likely bin?  Along
oracle-MPC episodes (H=4, K=2), Spearman between simulator returns of the first population and WM returns
under states="mode" and states="mean" (same model, same greedy tokens)."""
import sys, os, time
sys.path.insert(0, os.environ.get("REPO", "/work/main"))
import numpy as np, torch
from scipy.stats import spearmanr
from simulators.robots import make_env
from domains.robotics.planning import CEMPlanner, SimulatorScorer, Objective
from domains.robotics.world_model import WorldModel
torch.set_num_threads(2)
wm = WorldModel.load(sys.argv[1], max_history=1); seeds = [int(s) for s in sys.argv[2].split(",")]
readouts = ("mode", "mean")
obj = Objective("goal", "push-v3", 10.0)
H, K = 4, 2
rows, times = [], {r: 0.0 for r in readouts}
for seed in seeds:
    with make_env("push-v3", 64, action_repeat=2, max_steps=50) as env, SimulatorScorer(
            "push-v3", seed, 2, objective="goal") as sim:
        planner = CEMPlanner(env.action_space, H, 32, 4, 2, seed=seed)
        obs, _ = env.reset(seed=seed); planner.reset()
        for step in range(0, 50, K):
            sim.sync(env)
            first = {}
            def rec(c):
                r = sim(c)
                if not first: first["c"], first["r"] = c.copy(), r.copy()
                return r
            plan = planner.plan(rec, executed=K)
            state = obs["state"]
            hand_puck = np.linalg.norm(state[:3] - state[4:7])
            p = wm.prompt("push-v3", obs["image"][None], state[None], np.array([env.last_reward], np.float32),
                          np.array([env.last_success]), np.zeros((0, 4), np.float32))
            out = []
            for r in readouts:
                t0 = time.perf_counter()
                im = wm.imagine([p] * len(first["c"]), first["c"], decode=False, states=r)
                times[r] += time.perf_counter() - t0
                ret = obj.returns(im.rewards.numpy(), im.success.numpy(), im.states.numpy())
                out.append(spearmanr(first["r"], ret)[0])
            rows.append([seed, step, hand_puck, *out])
            print(f"seed {seed} t{step:2d} hand-puck {hand_puck:.3f} "
                  + " ".join(f"{r} {o:.2f}" for r, o in zip(readouts, out)), flush=True)
            done = False
            for a in plan[:K]:
                obs, rew, term, trunc, info = env.step(a)
                if info["success"]: done = True; break
            if done: break
a = np.array(rows)
np.save(os.environ.get("OUT", "/tmp/s19/mean_rank.npy"), a)
contact = a[:, 2] < 0.08
for i, r in enumerate(readouts):
    print(f"{r}: mean spearman all ({len(a)}) {np.nanmean(a[:, 3 + i]):.3f}  contact (<8cm, {contact.sum()}) "
          f"{np.nanmean(a[contact, 3 + i]):.3f} median {np.nanmedian(a[contact, 3 + i]):.3f}  imagine time {times[r]:.1f}s")
