"""The training monitor (`domains.medical.monitor.FindingsUse`, with average precision) on the 12000-step model's
final weights, in fp32 (training ran it in bf16: its AUCs differ in the third decimal).

python experiments/results/medical/ablation_12000_steps/monitor_final.py WORK OUT.json   (repository root;
WORK: the experiment's --work folder)
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, ".")
from core.config import load_config  # noqa: E402
from core.data import SequenceDataset  # noqa: E402
from core.pretrained import load_pretrained  # noqa: E402
from core.training import validation_split  # noqa: E402
from domains.medical.monitor import training_monitors  # noqa: E402

work = Path(sys.argv[1])
config = load_config(str(work / "finetune" / "config.json"))  # JSON is YAML
dataset = SequenceDataset(work / "sequences" / "paired")
monitor, = training_monitors(dataset, validation_split(len(dataset), config.data)[0])
model, _ = load_pretrained(work / "finetune" / "final")
values = monitor(model)
print({key: round(value, 3) for key, value in values.items() if key.startswith("read")})
json.dump({"command": " ".join(sys.argv), "monitors": values}, open(sys.argv[2], "w"), indent=1)
