"""Does more history in the world model's prompt rank a CEM population better?  Along oracle-MPC episodes
(H=4, K=2), Spearman between simulator returns of the first population and WM returns with prompts of
1, 2, 4 observations of the real history.

    HISTS=1,2,4 python probe_prompt_history.py MODEL/final 2000,2001
"""
import sys, os
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[4]))  # the repository
import numpy as np, torch
from scipy.stats import spearmanr
from simulators.robots import make_env
from domains.robotics.planning import CEMPlanner, SimulatorScorer, Objective
from domains.robotics.world_model import WorldModel
torch.set_num_threads(2)
wm = WorldModel.load(sys.argv[1]); seeds = [int(s) for s in sys.argv[2].split(",")]
hists = [int(h) for h in os.environ.get("HISTS", "1,2,4").split(",")]
obj = Objective("goal", "push-v3", 10.0)
H, K = 4, 2
rows = []
for seed in seeds:
    with make_env("push-v3", 64, action_repeat=2, max_steps=50) as env, SimulatorScorer(
            "push-v3", seed, 2, objective="goal") as sim:
        planner = CEMPlanner(env.action_space, H, 32, 4, 2, seed=seed)
        obs, _ = env.reset(seed=seed); planner.reset()
        frames, states, rewards, success, actions = [obs["image"]], [obs["state"]], [0.0], [False], []
        for step in range(0, 50, K):
            sim.sync(env)
            first = {}
            def rec(c):
                r = sim(c)
                if not first: first["c"], first["r"] = c.copy(), r.copy()
                return r
            plan = planner.plan(rec, executed=K)
            hand_puck = np.linalg.norm(states[-1][:3] - states[-1][4:7])
            out = []
            for n in hists:
                wm.max_history = n
                p = wm.prompt("push-v3", np.stack(frames), np.stack(states), np.array(rewards, np.float32),
                              np.array(success), np.array(actions, np.float32).reshape(-1, 4))
                im = wm.imagine([p] * len(first["c"]), first["c"], decode=False)
                ret = obj.returns(im.rewards.numpy(), im.success.numpy(), im.states.numpy())
                out.append(spearmanr(first["r"], ret)[0])
            rows.append([seed, step, hand_puck, *out])
            print(f"seed {seed} t{step:2d} hand-puck {hand_puck:.3f} "
                  + " ".join(f"h{n} {o:.2f}" for n, o in zip(hists, out)), flush=True)
            done = False
            for a in plan[:K]:
                obs, r, term, trunc, info = env.step(a)
                frames.append(obs["image"]); states.append(obs["state"]); rewards.append(r)
                success.append(bool(info["success"])); actions.append(a)
                if info["success"]: done = True; break
            if done: break
a = np.array(rows)
np.save(os.environ.get("OUT", "prompt_history.npy"), a)
contact = a[:, 2] < 0.08
for i, n in enumerate(hists):
    print(f"history {n}: mean spearman all {np.nanmean(a[:, 3 + i]):.3f}  contact (<8cm, {contact.sum()}) "
          f"{np.nanmean(a[contact, 3 + i]):.3f} median {np.nanmedian(a[contact, 3 + i]):.3f}")
