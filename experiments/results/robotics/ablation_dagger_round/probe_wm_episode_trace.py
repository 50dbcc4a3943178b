"""Where does world-model MPC go wrong?  Runs WM MPC (the experiment's settings) on seeds and at each replanning
also plans with the oracle from the same state (its own CEM, warm-started like the WM planner); prints both
plans' true H-step returns, hand-puck and puck-goal distances, and the gripper actions."""
import sys, os
sys.path.insert(0, os.environ.get("REPO", "/work/main"))
import numpy as np, torch
from simulators.robots import make_env
from domains.robotics.planning import CEMPlanner, SimulatorScorer, WorldModelScorer
from domains.robotics.world_model import WorldModel
torch.set_num_threads(2)
wm = WorldModel.load(sys.argv[1], max_history=1); seeds = [int(s) for s in sys.argv[2].split(",")]
H, K = 4, 2
rows = []
for seed in seeds:
    with make_env("push-v3", 64, action_repeat=2, max_steps=50) as env, SimulatorScorer(
            "push-v3", seed, 2, objective="goal") as sim:
        scorer = WorldModelScorer(wm, "push-v3", objective="goal")
        planner = CEMPlanner(env.action_space, H, 32, 4, 2, seed=seed)
        oracle = CEMPlanner(env.action_space, H, 32, 4, 2, seed=seed + 10_000)
        obs, _ = env.reset(seed=seed); planner.reset()
        success = False
        for step in range(0, 50, K):
            sim.sync(env); scorer.sync(env)
            prev = None if planner.mean is None else planner.mean.copy()
            plan = planner.plan(scorer, executed=K)
            wm_pred = scorer(plan[None])[0]
            oracle.mean = prev
            oplan = oracle.plan(sim, executed=K)
            true = sim(np.stack([plan, oplan]))
            s = obs["state"]
            hp, pg = np.linalg.norm(s[:3] - s[4:7]), np.linalg.norm(s[4:7] - s[7:10])
            rows.append([seed, step, hp, pg, *true, wm_pred])
            print(f"seed {seed} t{step:2d} hand-puck {hp:.3f} puck-goal {pg:.3f} grip {s[3]:.2f} | wm plan true {true[0]:.3f} "
                  f"(imagined {wm_pred:.3f}) oracle {true[1]:.3f} | wm grip {np.round(plan[:, 3], 1)} "
                  f"oracle grip {np.round(oplan[:, 3], 1)}", flush=True)
            for a in plan[:K]:
                obs, rew, term, trunc, info = env.step(a)
                if info["success"]: success = True; break
            if success: break
        print(f"seed {seed}: success {success}", flush=True)
np.save(os.environ.get("OUT", "/tmp/s19/wm_episode.npy"), np.array(rows))
