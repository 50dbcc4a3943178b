"""Probe: the medical backbone trained on image -> findings sequences alone: how well does it read the codes?

    python probe_backbone_reading.py WORK STEPS TAG [OVERRIDES...]     # e.g. ... 2000 codebook train.codebook_init=[cxr]

WORK: an experiment --work folder (its sequences/paired tokenizers); writes WORK/readonly (the
sequences: `<medical> <img> codes </img> <findings> f </findings>` for renders 0 and 1 of the training
studies) and WORK/readprobe_TAG (the run), and appends a line to probe.jsonl here. Trained from scratch
with the `medical` preset (as it stood before codebook_init joined it) plus OVERRIDES; scored as the
evaluation scores the findings the model states (thresholds tuned on render 500 of 800 training studies,
macro-F1 over the 10 pathologies on render 0 of the held-out studies).
"""
import sys, time, json
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[4]))
from pathlib import Path
import numpy as np, yaml
from core.data import SequenceDataset, ShardWriter
from core.sequence import build_example
from domains.medical.reports import find_openi_archive, read_openi, split_studies
from domains.medical.dataset import study_images, study_findings, IMAGE, domain_tag, image_segment, findings_segment
from domains.medical.evaluate import tune_findings_thresholds, pathology_matrix
from domains.medical.metrics import multilabel_f1
from domains.medical.findings import PATHOLOGIES
from domains.medical.model import MedicalModel
from experiments.common import train
work = Path(sys.argv[1]); steps = int(sys.argv[2]); tag = sys.argv[3]; extra = sys.argv[4:]
studies = read_openi(find_openi_archive()); tr, te = split_studies(studies, 0.1, 0)
tok = SequenceDataset(work / 'sequences/paired').tokenizers()
data = work / 'readonly'
if not (data / 'manifest.json').exists():
    with ShardWriter(data, tok, meta={'task': 'medical'}) as w:
        for v in (0, 1):
            codes = tok.encode_image(IMAGE, study_images(tr, 64, v))
            for s, c in zip(tr, codes):
                segments = [domain_tag(tok), image_segment(tok, c),
                            findings_segment(tok, study_findings(s), is_target=True)]
                w.add(build_example(segments, tok.vocab))
cfg = yaml.safe_load((Path(__file__).resolve().parents[3] / 'medical_cxr.yaml').read_text())
t = time.time()
final = train('readprobe', cfg, data, work / f'readprobe_{tag}', steps, overrides=list(extra))
secs = time.time() - t
model = MedicalModel.load(final)
th = tune_findings_thresholds(model, tr[:800])
p = model.findings_probabilities(study_images(te, 64, 0)).numpy()
pred = p >= np.array([th[n] for n in PATHOLOGIES]); ref = pathology_matrix(map(study_findings, te))
r = multilabel_f1(pred, ref, PATHOLOGIES)
out = dict(tag=tag, steps=steps, extra=extra, train_seconds=round(secs), macro_f1=r['macro_f1'],
           per={k: round(v['f1'], 2) for k, v in r['per_finding'].items()})
print(json.dumps(out)); open(Path(__file__).with_name('probe.jsonl'), 'a').write(json.dumps(out) + '\n')
