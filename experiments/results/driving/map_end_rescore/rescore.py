"""The closed-loop baselines driven again after the map-end fix (an episode that leaves the lanes where its
route's map ends is `finished`, not `off_road`), on the committed run's seeds and settings (20 episodes per
scenario, seed 0, 15 s after the 2 s warm-up), and the committed model rows scored against them.

    python experiments/results/driving/map_end_rescore/rescore.py     # writes closed_loop.json next to itself

The IDM driver and constant velocity need no model, so they are driven again; the model's rows are the
committed ones (`../closed_loop.json`), with `finished` set where the model's car left the lanes past its
route's end (none: its off-road episodes at the intersection end within 90 m, the map's end lies 125 m on)
and checked so. The score's progress ratios use the IDM progress driven here (the same as committed).
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))
from core.data import write_json_atomic  # noqa: E402
from core.provenance import provenance  # noqa: E402
from domains.driving.closed_loop import constant_velocity_planner, run_episodes, summarise  # noqa: E402

committed = json.loads((HERE.parent / "closed_loop.json").read_text())
seeds = [10**6 + i for i in range(20)]  # evaluate_closed_loop(seed=0, episodes=20)
out, pooled = {}, {"idm": [], "constant_velocity": [], "model": []}
for scenario in ("highway", "merge", "intersection", "roundabout"):
    rows = {"idm": run_episodes(scenario, seeds, "idm"),
            "constant_velocity": run_episodes(scenario, seeds, constant_velocity_planner, image_size=64)}
    model = [dict(row) for row in committed[scenario]["episodes"]["model"]]
    for row in model:  # the map's end is past the IDM driver's finishing progress on the same seed
        ends = [r["progress"] for r in rows["idm"] if r["seed"] == row["seed"] and r["finished"]]
        if row["off_road"] and ends and row["progress"] >= min(ends) - 5.0:
            raise SystemExit(f"{scenario} seed {row['seed']}: the model's off-road episode may have reached the map end")
        row["finished"] = False
    rows["model"] = model
    for name in ("idm", "constant_velocity"):
        before = {r["seed"]: r for r in committed[scenario]["episodes"][name]}
        for row in rows[name]:  # the same driving as committed, up to the map-end rule
            old = before[row["seed"]]
            assert row["collision"] == old["collision"], (scenario, name, row, old)
            assert row["off_road"] or row["finished"] or not old["off_road"], (scenario, name, row, old)
    out[scenario] = {"summary": summarise(rows), "episodes": rows}
    for name in rows:
        pooled[name] += [{**row, "seed": (scenario, row["seed"])} for row in rows[name]]
    print(scenario, json.dumps(out[scenario]["summary"]), file=sys.stderr)
out["all"] = {"summary": summarise(pooled)}
out["provenance"] = provenance()
write_json_atomic(HERE / "closed_loop.json", out)
print(json.dumps(out["all"]["summary"], indent=1))
