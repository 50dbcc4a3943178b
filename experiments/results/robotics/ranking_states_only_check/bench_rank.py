"""The ranking stage's imagined half on the run's model, states only; compared with the committed ranking.json."""
import json, sys, time
sys.path.insert(0, "/work/main")
from domains.robotics.closed_loop import imagined_success
from domains.robotics.world_model import WorldModel

wm = WorldModel.load("/tmp/robrun24/finetune/final")
ranking = json.load(open("/tmp/robres24/ranking.json"))
policies = ranking["policies"] if "policies" in ranking else None
print(list(ranking.keys()))
specs = ["expert:0", "expert:0.1", "expert:0.2", "expert:0.3", "expert:0.5", "perturbed:0.1", "broken", "random"]
t = time.perf_counter()
imagined = imagined_success(wm, "push-v3", specs, list(range(1000, 1020)), 50, 2, progress=False)
seconds = time.perf_counter() - t
out = {"seconds": seconds}
for key in ("success", "return", "goal_success"):
    out[key] = [sum(imagined[s][key]) / len(imagined[s][key]) for s in specs]
print(json.dumps(out))
for key, ref in (("success", "imagined_success"), ("return", "imagined_return"), ("goal_success", "imagined_goal_success")):
    print(key, out[key], ranking.get(ref))
