"""Probe: 200 more oracle-planner episodes at noise 0.3 (seed 4) added to an experiment run's fine-tuning data,
then the same 1600-step fine-tuning from that run's pretrained model, as the experiment's stages do it.

    python probe_more_planner_episodes.py RUN WORK [EPISODES]   (RUN: the experiment's --work, e.g. /tmp/robrun21)
"""
import sys, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[4]))  # the repository
from pathlib import Path
import yaml
from core.tokenizers import Tokenizers
from domains.robotics.episodes import EpisodeConfig, generate_episodes
from domains.robotics.world_model import write_world_model_dataset
from experiments.common import train

def main():
    run21, work = Path(sys.argv[1]), Path(sys.argv[2])
    cfg = yaml.safe_load((Path(__file__).resolve().parents[3] / "robotics_metaworld.yaml").read_text())
    d = cfg["data"]
    t0 = time.time()
    noisy = generate_episodes(work / "episodes" / "planner_noisy", EpisodeConfig(
        tasks=[cfg["task"]], episodes=int(sys.argv[3]) if len(sys.argv) > 3 else 200, seed=cfg["seed"] + 4,
        policies={"planner:0.3": 1}, steps=d["steps"], image_size=d["image_size"], action_repeat=d["action_repeat"]),
        workers=d["workers"])
    print(f"== episodes {time.time() - t0:.0f} s", flush=True); t0 = time.time()
    tokenizers = Tokenizers.load(run21 / "sequences" / "tokenizers")
    seqs = work / "sequences" / "finetune"
    if not (seqs / "manifest.json").exists():
        write_world_model_dataset([run21 / "episodes" / "finetune", run21 / "episodes" / "planner", noisy], seqs,
                                  window=d["window"], stride=d["stride"], tokenizers=tokenizers)
    print(f"== sequences {time.time() - t0:.0f} s", flush=True); t0 = time.time()
    final = train("robotics-finetune", cfg, seqs, work / "finetune", cfg["finetune_steps"], run21 / "pretrain" / "final",
                  cfg.get("finetune_overrides", []))
    print(f"== finetune {time.time() - t0:.0f} s -> {final}", flush=True)


if __name__ == "__main__":
    main()
