"""The DAgger-round model's MPC benchmark one seed at a time (per-seed JSONs, so a stopped run keeps its seeds):
planning_benchmark with the experiment's MPCSettings on push-v3 seeds from argv[1] to argv[2]."""
import sys, json, os
REPO = os.environ.get("REPO", "/tmp/wt-r25")
sys.path.insert(0, REPO)
from pathlib import Path


def main():
    import torch
    from domains.robotics.closed_loop import planning_benchmark
    from domains.robotics.world_model import WorldModel

    torch.set_num_threads(2)
    out = Path("/tmp/robrun25/planning"); out.mkdir(exist_ok=True)
    model = WorldModel.load("/tmp/robrun25/finetune/final", max_history=1)
    for seed in range(int(sys.argv[1]), int(sys.argv[2])):
        if (out / f"seed_{seed}.json").exists():
            continue
        result = planning_benchmark(model, "push-v3", [seed], 50, 2, progress=False)
        (out / f"seed_{seed}.json").write_text(json.dumps(result, indent=1))
        print(seed, {k: v["successes"][0] for k, v in result.items() if isinstance(v, dict) and "successes" in v},
              f"{result['world_model_mpc']['seconds_per_episode']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
