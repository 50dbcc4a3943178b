"""Probe: one DAgger round for the world-model planner.  World-model MPC (the experiment's settings, run21's
1600-step model) acts in the real push-v3 env on training seeds (EpisodeConfig seed 5, disjoint from the MPC
evaluation seeds 2000-2019); its episodes, listed 3 times, join run21's fine-tuning data; the model continues
fine-tuning from run21's final weights for 400 steps at lr 5e-4; then world-model MPC on seeds 2000-2019."""
import sys, json, time, os
REPO = os.environ.get("REPO", "/tmp/wt-r25")
sys.path.insert(0, REPO)
from pathlib import Path
import yaml


def main():
    from core.tokenizers import Tokenizers
    from domains.robotics.episodes import EpisodeConfig, generate_episodes
    from domains.robotics.world_model import WorldModel, write_world_model_dataset
    from domains.robotics.closed_loop import planning_benchmark
    from experiments.common import train

    run21, work = Path("/tmp/robrun21"), Path("/tmp/robrun25")
    cfg = yaml.safe_load(open(f"{REPO}/experiments/robotics_metaworld.yaml"))
    d = cfg["data"]
    episodes, repeat, steps = int(sys.argv[1]), 3, 400
    t0 = time.time()
    dagger = generate_episodes(work / "episodes" / "wm_planner", EpisodeConfig(
        tasks=[cfg["task"]], episodes=episodes, seed=cfg["seed"] + 5, policies={"wm-planner:0": 1}, steps=d["steps"],
        image_size=d["image_size"], action_repeat=d["action_repeat"], world_model=str(run21 / "finetune" / "final")),
        workers=d["workers"])
    manifest = json.loads((dagger / "manifest.json").read_text())
    print(f"== episodes {time.time() - t0:.0f} s; successes {sum(e['success'] for e in manifest['episodes'])} of "
          f"{len(manifest['episodes'])}", flush=True); t0 = time.time()
    tokenizers = Tokenizers.load(run21 / "sequences" / "tokenizers")
    seqs = work / "sequences" / "finetune"
    if not (seqs / "manifest.json").exists():
        write_world_model_dataset([run21 / "episodes" / "finetune", run21 / "episodes" / "planner", *[dagger] * repeat],
                                  seqs, window=d["window"], stride=d["stride"], tokenizers=tokenizers)
    print(f"== sequences {time.time() - t0:.0f} s", flush=True); t0 = time.time()
    final = train("robotics-dagger", cfg, seqs, work / "finetune", steps, run21 / "finetune" / "final",
                  [*cfg.get("finetune_overrides", []), "train.lr=5e-4", "train.warmup_steps=20"])
    print(f"== finetune {time.time() - t0:.0f} s -> {final}", flush=True); t0 = time.time()
    import torch
    torch.set_num_threads(2)
    model = WorldModel.load(final, max_history=1)
    result = planning_benchmark(model, cfg["task"], list(range(2000, 2020)), d["steps"], d["action_repeat"])
    (work / "planning.json").write_text(json.dumps(result, indent=1))
    print(f"== planning {time.time() - t0:.0f} s: " + json.dumps({k: v["success_rate"] for k, v in result.items()
                                                                 if isinstance(v, dict) and "success_rate" in v}), flush=True)


if __name__ == "__main__":
    main()
