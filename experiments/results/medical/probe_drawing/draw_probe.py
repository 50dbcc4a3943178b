"""Per-finding drawing probe: draw N images from each single finding (and none), judge probability of that finding."""
import sys, json, torch
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the repository
from domains.medical.model import MedicalModel
from domains.medical.judge import FindingsJudge
from domains.medical.findings import FINDINGS
torch.set_num_threads(2)
work, n, scales = sys.argv[1], int(sys.argv[2]), [float(s) for s in sys.argv[3].split(',')]
m = MedicalModel.load(f"{work}/finetune/final")
judge = FindingsJudge.load(f"{work}/judge")
names = ["cardiomegaly", "effusion", "consolidation", "atelectasis", "nodule_mass", "edema"]
out = {}
for cfg in scales:
    g = torch.Generator().manual_seed(0)
    sets = [[]] + [[f] for f in names]
    findings = [s for s in sets for _ in range(n)]
    imgs = m.draw(None, findings=findings, cfg_scale=cfg, temperature=0.7, generator=g)
    p = torch.sigmoid(judge.logits(imgs)).numpy()
    row = {}
    for k, s in enumerate(sets):
        block = p[k * n:(k + 1) * n]
        row["none" if not s else s[0]] = {f: round(float(block[:, FINDINGS.index(f)].mean()), 3) for f in names}
    out[cfg] = row
    print(work, "cfg", cfg, flush=True)
    for s, r in row.items():
        print("  draw", s.ljust(14), " ".join(f"{f[:5]}={v:.2f}" for f, v in r.items()), flush=True)
json.dump(out, open(f"{Path(__file__).parent}/draw_{work.strip('/').split('/')[-1]}.json", "w"), indent=1)
