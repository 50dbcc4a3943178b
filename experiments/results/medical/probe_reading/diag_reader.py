"""At init and at probes' final weights: how much does the image reader's summary vary across images, and
how large are the gradients reaching it vs the embeddings and the blocks? (Needs `model.image_reader` as
at commit `aff67c0`, since reverted.)

    python diag_reader.py WORK [TAGS...]     # e.g. /tmp/medrun26 summaryall26: WORK/readprobe_TAG/final
"""
import sys, torch
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from core.data import SequenceDataset
from core.sequence import pad_batch
from core.backbone.model import Backbone, lm_loss
from core.config import load_config
work = Path(sys.argv[1])
ds = SequenceDataset(work / 'readonly'); tok = ds.tokenizers()
cfg = load_config('medical', ['model.image_reader=[cxr]', f'data.path={work / "readonly"}'])
span = tok.vocab['cxr']; side = tok.images['cxr'].config.grid_size
cfg.model.vocab_size = ds.vocab_size; cfg.model.image_reader = [[span.start, span.stop, side, side]]
cfg.model.reader_code_dim = tok.images['cxr'].codebook.shape[1]
torch.manual_seed(0)
batch = pad_batch([ds[i] for i in range(0, 64 * 50, 50)], tok.vocab.special('<pad>'))
def report(model, name):
    x = model.embed(batch.input_ids)
    given = ~batch.loss_mask
    with torch.no_grad():
        read = model.reader(x, batch.input_ids, given) - x
    rows = read[:, :, :].abs().sum(-1) > 0
    summary = read[rows].reshape(64, -1, read.shape[-1])[:, 0]  # (64, d): one per image
    print(name, 'summary mean-norm %.4f  across-image std-norm %.4f  embedding rms %.4f' % (
        summary.mean(0).norm(), summary.std(0).norm(), x.pow(2).mean().sqrt() * x.shape[-1] ** 0.5))
    model.zero_grad()
    out = model(batch.input_ids, attention_mask=batch.attention_mask, given=given)
    lm_loss(out.logits, batch.input_ids, batch.loss_mask).backward()
    g = lambda ps: sum(p.grad.norm() ** 2 for p in ps if p.grad is not None) ** 0.5
    print(name, 'grad norm reader %.2e  embed %.2e  blocks %.2e' % (g(model.reader.parameters()), g([model.embed.weight]),
          g(model.blocks.parameters())))
model = Backbone(cfg.model); model.reader.set_code_vectors(0, tok.images['cxr'].codebook)
report(model, 'init')
for tag in sys.argv[2:]:
    report(Backbone.from_pretrained(work / f'readprobe_{tag}' / 'final').float(), tag)
