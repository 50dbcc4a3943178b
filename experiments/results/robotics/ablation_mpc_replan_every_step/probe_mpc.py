"""Probe: world-model / oracle MPC variants on given seeds; one JSON line per episode (success, steps, distances)."""
import argparse, json, sys, time
sys.path.insert(0, "/work/main")
import numpy as np
from domains.robotics.planning import CEMPlanner, MPCSettings, SimulatorScorer, run_mpc
from simulators.robots import make_env, task_goal

p = argparse.ArgumentParser()
p.add_argument("--model", default="/tmp/robrun24/finetune/final")
p.add_argument("--scorer", choices=["wm", "oracle"], default="wm")
p.add_argument("--seeds", default="3000-3009")
p.add_argument("--replan", type=int, default=2)
p.add_argument("--horizon", type=int, default=4)
p.add_argument("--population", type=int, default=32)
p.add_argument("--iterations", type=int, default=2)
p.add_argument("--pick", choices=["best", "mean"], default="best")
p.add_argument("--max-steps", type=int, default=50)
p.add_argument("--tag", required=True)
p.add_argument("--out", default="/tmp/s24/probe.jsonl")
a = p.parse_args()
lo, hi = map(int, a.seeds.split("-"))

class Planner(CEMPlanner):
    def plan(self, scorer, executed=1):
        best = super().plan(scorer, executed)
        return self.mean.copy() if a.pick == "mean" else best

task = "push-v3"
goal = task_goal(task)
s = MPCSettings(horizon=a.horizon, population=a.population, iterations=a.iterations, replan_every=a.replan)
wm = None
if a.scorer == "wm":
    from domains.robotics.world_model import WorldModel
    wm = WorldModel.load(a.model)
with make_env(task, 64, action_repeat=2, max_steps=a.max_steps) as env:
    for seed in range(lo, hi + 1):
        t = time.perf_counter()
        planner = Planner(env.action_space, s.horizon, s.population, s.elites, s.iterations, seed=seed)
        dists = []
        orig_step = env.step
        def step(action):
            out = orig_step(action)
            st = out[0]["state"]
            dists.append((float(goal._error(st)), float(np.linalg.norm(st[0:3] + 0 - st[4:7]))))
            return out
        env.step = step
        if wm is None:
            scorer = SimulatorScorer(task, seed, 2, objective="goal")
        else:
            scorer = s.scorer([wm], task)
        r = run_mpc(env, planner, scorer, seed, replan_every=a.replan)
        del env.step
        d = np.array(dists)
        rec = {"tag": a.tag, "seed": seed, "success": r["success"], "steps": r["steps"], "return": round(r["return"], 1),
               "final_obj_goal": round(d[-1, 0], 3), "min_obj_goal": round(d[:, 0].min(), 3),
               "obj_goal_start": round(d[0, 0], 3), "seconds": round(time.perf_counter() - t, 1)}
        print(json.dumps(rec), flush=True)
        with open(a.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
