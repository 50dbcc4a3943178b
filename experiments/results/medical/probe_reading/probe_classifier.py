"""Probe: how well does a small classifier read the findings off the VQ codes, their reconstructions or the pixels?

    python probe_classifier.py WORK recon|pixels|codes [STEPS]

WORK: an experiment --work folder (its sequences/paired tokenizers); appends a line to probe.jsonl here.
Trained on renders 0 and 1 of the training studies, thresholds tuned on render 500 of the first 800,
scored on render 0 of the held-out studies (the evaluation's reference images), macro-F1 over the
judge's 11 findings.
"""
import sys, time, json
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[4]))
import numpy as np, torch, torch.nn as nn
from pathlib import Path
from core.data import SequenceDataset
from domains.medical.reports import find_openi_archive, read_openi, split_studies
from domains.medical.dataset import study_images, study_findings, IMAGE
from domains.medical.evaluate import judge_targets
from domains.medical.metrics import multilabel_f1, tune_thresholds
from domains.medical.renderer import render_batch
from domains.medical.findings import PATHOLOGIES
torch.manual_seed(0)
work, which = sys.argv[1], sys.argv[2]  # codes | codes_random | pixels | recon
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 800
studies = read_openi(find_openi_archive())
tr, te = split_studies(studies, 0.1, 0)
tok = SequenceDataset(Path(work) / 'sequences/paired').tokenizers()
vq = tok.images[IMAGE]
cache = Path(work) / 'probe_cache.pt'
if cache.exists():
    C = torch.load(cache, weights_only=False)
else:
    t = time.time()
    xtr = torch.cat([study_images(tr, 64, v) for v in (0, 1)]); ytr = judge_targets([study_findings(s) for s in tr] * 2)
    xtu = study_images(tr[:800], 64, 500); ytu = judge_targets([study_findings(s) for s in tr[:800]])
    xte = study_images(te, 64, 0); yte = judge_targets([study_findings(s) for s in te])
    rng = np.random.default_rng(0)
    rf = [tuple(p for p in PATHOLOGIES if rng.random() < 0.2) for _ in range(len(xtr))]
    xr = torch.from_numpy(render_batch(rf, 64, seed=7919)); yr = judge_targets(rf)
    C = dict(xtr=xtr, ytr=ytr, xtu=xtu, ytu=ytu, xte=xte, yte=yte, xr=xr, yr=yr)
    with torch.no_grad():
        for k in ('xtr', 'xtu', 'xte', 'xr'):
            C['c' + k[1:]] = vq.encode(C[k])
            C['r' + k[1:]] = vq.decode(C['c' + k[1:]])
    torch.save(C, cache); print('data', time.time() - t, flush=True)

class CodeNet(nn.Module):
    def __init__(s):
        super().__init__(); s.e = nn.Embedding(512, 192); s.p = nn.Parameter(torch.zeros(256, 192))
        s.t = nn.TransformerEncoder(nn.TransformerEncoderLayer(192, 6, 512, 0.1, batch_first=True, norm_first=True), 4)
        s.h = nn.Linear(192, 11)
    def forward(s, c): return s.h(s.t(s.e(c) + s.p).mean(1))
class PixNet(nn.Module):
    def __init__(s):
        super().__init__()
        L = []; ch = 1
        for o in (32, 64, 128, 192):
            L += [nn.Conv2d(ch, o, 3, padding=1), nn.BatchNorm2d(o), nn.GELU(),
                  nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.GELU(), nn.MaxPool2d(2)]; ch = o
        s.f = nn.Sequential(*L); s.h = nn.Linear(192, 11)
    def forward(s, x): return s.h(s.f(x).mean((2, 3)))
key = {'codes': 'c', 'codes_random': 'c', 'pixels': 'x', 'recon': 'r'}[which]
Xtr, Ytr = C[key + 'tr'], torch.as_tensor(C['ytr'])
if which == 'codes_random':
    Xtr = torch.cat([Xtr, C['cr']]); Ytr = torch.cat([Ytr, torch.as_tensor(C['yr'])])
net = CodeNet() if key == 'c' else PixNet()
off = C['ctr'].min() if key == 'c' else 0
opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=0.05)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=steps, pct_start=0.05)
t = time.time(); g = torch.Generator().manual_seed(0)
for step in range(steps):
    net.train(); i = torch.randint(len(Xtr), (32,), generator=g)
    x = Xtr[i] - off if key == 'c' else Xtr[i]
    with torch.autocast('cpu', torch.bfloat16):
        logits = net(x)
    loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), Ytr[i].float())
    opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    if step % 100 == 0: print(step, float(loss), round(time.time() - t), flush=True)
net.eval()
def probs(X):
    with torch.no_grad(), torch.autocast('cpu', torch.bfloat16):
        return torch.cat([torch.sigmoid(net((x - off) if key == 'c' else x)) for x in X.split(256)]).float().numpy()
pu, pe = probs(C[key + 'tu']), probs(C[key + 'te'])
th = tune_thresholds(pu, C['ytu'].astype(bool))
r = multilabel_f1(pe >= th, C['yte'].astype(bool)); r05 = multilabel_f1(pe >= 0.5, C['yte'].astype(bool))
out = dict(which=which, steps=steps, seconds=round(time.time() - t), macro_f1=r['macro_f1'], macro_f1_at_05=r05['macro_f1'],
           per=dict((k, round(v['f1'], 2)) for k, v in r['per_finding'].items()))
print(json.dumps(out)); open(Path(__file__).with_name('probe.jsonl'), 'a').write(json.dumps(out) + '\n')
