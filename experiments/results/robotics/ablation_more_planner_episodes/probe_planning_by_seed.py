"""The experiment's planning stage (closed_loop.planning_benchmark, the config's MPCSettings) on a given model,
one seed at a time, each seed's result written as soon as it is done.

    python probe_planning_by_seed.py MODEL/final OUT_DIR FIRST_SEED COUNT
"""
import sys, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[4]))  # the repository
from pathlib import Path
from core.data import write_json_atomic
from core.provenance import provenance
from domains.robotics import closed_loop
from domains.robotics.planning import MPCSettings
from domains.robotics.world_model import WorldModel

model, out, first, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out.mkdir(parents=True, exist_ok=True)
wm = WorldModel.load(model)
for seed in range(first, first + count):
    t0 = time.perf_counter()
    result = closed_loop.planning_benchmark(wm, "push-v3", [seed], 50, 2, MPCSettings(), progress=False)
    result.update(seconds=time.perf_counter() - t0, model=model, provenance=provenance())
    write_json_atomic(out / f"seed_{seed}.json", result)
    print(seed, {k: result[k]["success_rate"] for k in ("world_model_mpc", "oracle_mpc", "random")},
          round(result["seconds"]), flush=True)
