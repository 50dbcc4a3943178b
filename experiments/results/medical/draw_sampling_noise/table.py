"""The drawing ratio of each current-config model over the random streams it was drawn from: the committed
evaluation's (`seed*_current_config/`), seed 1's re-evaluation at f3533d8, the probe's (`stream_*.json`), and the
other streams of seed 1's evaluation with `eval.draw_streams: 3` (`evaluation_seed1_draw_streams_3/`).

    python experiments/results/medical/draw_sampling_noise/table.py

Prints a markdown table: per model and stream the ratio, the ratio with pneumothorax (one held-out study)
left out of both macros, and the first draw's ratio; then each model's mean and the mean over models.
"""

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent


def ratios(model: dict, first: dict, reference: dict) -> tuple[float, float, float]:
    """Per-finding judge F1s ({finding: {"f1": ...}}) of the chosen draws, the first draws and the references ->
    (ratio, ratio without pneumothorax, first draw's ratio) of their macro means."""
    macro = lambda scores, leave=(): np.mean([v["f1"] for k, v in scores.items() if k not in leave])  # noqa: E731
    return (macro(model) / macro(reference), macro(model, ("pneumothorax",)) / macro(reference, ("pneumothorax",)),
            macro(first) / macro(reference))


rows = []
for folder in sorted(RESULTS.glob("seed*_current_config")):
    seed = int(folder.name[4:].split("_")[0])
    images = json.loads((folder / "evaluation.json").read_text())["report_to_image"]
    reference = images["reference"]["judge"]["per_finding"]
    runs = [(f"{seed} (evaluation, {json.loads((folder / 'summary.json').read_text())['provenance']['git_commit'][:7]})",
             images)]
    again = HERE / f"reevaluation_seed{seed}_f3533d8" / "evaluation.json"
    again_images = json.loads(again.read_text())["report_to_image"] if again.exists() else None
    if again_images is not None:
        runs.append((f"{seed} (evaluation again, f3533d8)", again_images))
    found = [(name, run["model"]["judge"]["per_finding"], run["model_first_draw"]["judge"]["per_finding"])
             for name, run in runs]
    for path in sorted(HERE.glob(f"stream_*_medS{seed}.json")):
        probe = json.loads(path.read_text())
        assert abs(probe["judge_macro_f1_reference"] - images["reference"]["judge"]["macro_f1"]) < 1e-9, path
        found.append((f"{seed} (stream {probe['stream']})", probe["judge"]["model"]["per_finding"],
                      probe["judge"]["model_first_draw"]["per_finding"]))
    streams = HERE / f"evaluation_seed{seed}_draw_streams_3" / "evaluation.json"  # eval.draw_streams: 3
    if streams.exists():
        drawn = json.loads(streams.read_text())["report_to_image"]["draw_streams"]["streams"]
        # its stream `seed` is the evaluation again above, drawn alike: checked, not counted twice
        assert again_images is not None and drawn[0]["stream"] == seed
        assert drawn[0]["judge"]["model"] == again_images["model"]["judge"]
        found += [(f"{seed} (evaluation with draw_streams 3, stream {stream['stream']})",
                   stream["judge"]["model"]["per_finding"], stream["judge"]["model_first_draw"]["per_finding"])
                  for stream in drawn[1:]]
    for name, model, first in found:
        rows.append((seed, name, *ratios(model, first, reference)))

print("| model seed (draws) | ratio | without pneumothorax | first draw |\n| --- | --- | --- | --- |")
for _, name, *values in rows:
    print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
means = {}
for seed in sorted({row[0] for row in rows}):
    means[seed] = np.mean([row[2:] for row in rows if row[0] == seed], axis=0)
    print(f"| **{seed}, mean of {sum(row[0] == seed for row in rows)}** | " + " | ".join(f"{v:.3f}" for v in means[seed]) + " |")
print("| **mean of the models' means** | " + " | ".join(f"{v:.3f}" for v in np.mean(list(means.values()), axis=0)) + " |")
