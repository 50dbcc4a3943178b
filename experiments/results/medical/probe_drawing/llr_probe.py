"""Does drawing use the findings? For held-out studies with finding f, log p(codes | findings) minus
log p(codes | findings without f), per grid row; and conditional vs unconditional (<null>) NLL."""
import sys, json, torch
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the repository
from domains.medical.model import MedicalModel
from domains.medical.reports import find_openi_archive, read_openi, split_studies
from domains.medical.dataset import study_images, study_findings, IMAGE
torch.set_num_threads(2)
work, n = sys.argv[1], int(sys.argv[2])
model = MedicalModel.load(f"{work}/finetune/final")
train, test = split_studies(read_openi(find_openi_archive()), 0.1, 0)
img = model.vocab[IMAGE]

def loglik(sets, codes):
    prompts = torch.stack([model.draw_prompt(None, list(s), "findings") if s is not None
                           else model.draw_prompt(None, None, "findings") for s in sets])
    ids = torch.cat([prompts, codes], 1)
    L = prompts.shape[1]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model.model(ids).logits[:, L - 1:-1, img.start:img.stop].float()
    return torch.log_softmax(logits, -1).gather(-1, (codes - img.start)[..., None])[..., 0]  # (B, N)

out = {}
for f in ["cardiomegaly", "effusion", "atelectasis", "consolidation", "nodule_mass", "edema"]:
    subset = [s for s in test if f in study_findings(s)][:n]
    codes = model.tokenizers.encode_image(IMAGE, study_images(subset, model.image_size, 0))
    true = [study_findings(s) for s in subset]
    lt = loglik(true, codes); lw = loglik([[q for q in t if q != f] for t in true], codes)
    ln = loglik([None] * len(subset), codes)
    rows = (lt - lw).reshape(len(subset), 16, 16).sum(-1).mean(0)
    out[f] = dict(n=len(subset), llr=float((lt - lw).sum(1).mean()), cond_vs_null=float((lt - ln).sum(1).mean()),
                  llr_rows=[round(float(r), 2) for r in rows])
    print(work, f, json.dumps(out[f]), flush=True)
json.dump(out, open(f"{Path(__file__).parent}/llr_{work.strip('/').split('/')[-1]}.json", "w"))
