"""What the medical model's validation loss cannot show, measured while it trains.

Whether the model draws the findings it is given is worth about 0.005 nats per image token: two training seeds
ended at the same validation loss (1.071), one drew cardiomegaly whenever asked, the other never did
(`experiments/results/medical/probe_drawing/`). `FindingsUse` measures it on fixed validation sequences; the
trainer runs it with every validation (`train.eval_every`) and logs it to TensorBoard as `monitor/<name>`:

- `draw_<finding>`: over findings-draw sequences whose findings include it, the mean of log p(image | findings) -
  log p(image | the same findings without it), nats per image. Near 0: the model ignores that finding.
- `draw_findings`: the mean of log p(image | findings) - log p(image | `<null>`) over those sequences.
- `read_auc_<finding>`, `read_auc`: ROC AUC of the finding's log-odds (present vs absent token, the findings
  before it as in the data) over read sequences; `read_auc` is the mean over the findings both classes of which
  occur.
- `read_ap_<finding>`, `read_ap`: their average precision, the same way. A rare finding can read at AUC 0.98 and
  F1 0.53 (17 consolidations in 397 held-out studies, `experiments/results/medical/ablation_12000_steps/`): AP
  falls with the false positives its few positives share the top with, AUC hardly. With few positives among the
  validation reads it is noisy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from core.backbone.model import Backbone
from core.data import SequenceDataset
from core.sequence import Example, pad_batch
from core.tokenizers import Tokenizers

from .dataset import IMAGE, findings_draw_example, findings_ids, findings_present
from .findings import PATHOLOGIES, named
from .metrics import average_precision, roc_auc

__all__ = ["FindingsUse", "training_monitors"]


class FindingsUse:
    """A training monitor: `monitor(model) -> {name: value}` (names in the module docstring).

    draws: findings-draw examples (`findings_draw_example`), reads: read examples (`read_example`), as
    `training_monitors` picks them. Up to `per_finding` draws per finding and `max_reads` reads are kept; a call
    runs `len(monitor)` sequences through the model (about 300 at the defaults: a few seconds on 2 CPU cores).
    """

    def __init__(self, tokenizers: Tokenizers, draws: Sequence[Example], reads: Sequence[Example],
                 per_finding: int = 8, max_reads: int = 96, batch_size: int = 16):
        self.tokenizers, self.batch_size = tokenizers, batch_size
        self.pad_id = tokenizers.vocab.special("<pad>")
        parsed = [self._parse_draw(draw) for draw in draws]
        self.pairs: list[tuple[str, int, Example]] = []  # (finding, index in self.drawn, the draw without it)
        chosen: dict[int, int] = {}  # index in draws -> index in self.drawn
        for finding in PATHOLOGIES:
            having = [i for i, (names, _) in enumerate(parsed) if finding in names][:per_finding]
            for i in having:
                names, codes = parsed[i]
                without = findings_draw_example(tokenizers, [n for n in names if n != finding], codes)
                self.pairs.append((finding, chosen.setdefault(i, len(chosen)), without))
        self.drawn = [draws[i] for i in chosen]  # dicts keep insertion order: index j of self.drawn is the j-th chosen
        self.unconditional = [findings_draw_example(tokenizers, parsed[i][0], parsed[i][1], drop_condition=True)
                              for i in chosen]
        self.reads = [self._truncate_read(read) for read in reads[:max_reads]]

    def __len__(self) -> int:
        """Sequences scored per call."""
        return 2 * len(self.drawn) + len(self.pairs) + len(self.reads)

    def _parse_draw(self, example: Example) -> tuple[tuple[str, ...], torch.Tensor]:
        """A findings-draw example `<bos> <medical> <findings> f </findings> <img> codes </img> <eos>` -> (its finding
        names, its image codes (N,))."""
        vocab, ids = self.tokenizers.vocab, example.token_ids
        stop = _index(ids, vocab.special("</findings>"))
        present = findings_present(self.tokenizers, ids[3:stop])
        codes = ids[stop + 2 : _index(ids, vocab.special("</img>"))]
        return named(present.tolist(), PATHOLOGIES), codes

    def _truncate_read(self, example: Example) -> Example:
        """A read example cut after its findings (the report after them is not scored)."""
        stop = _index(example.token_ids, self.tokenizers.vocab.special("</findings>")) + 1
        return Example(example.token_ids[:stop], example.modality_ids[:stop], example.positions[:stop],
                       example.loss_mask[:stop])

    @torch.no_grad()
    def __call__(self, model: Backbone) -> dict[str, float]:
        """The monitor's values for `model` (in eval mode)."""
        out: dict[str, float] = {}
        if self.drawn:
            drawn = self._target_logprob(model, self.drawn)
            out["draw_findings"] = float((drawn - self._target_logprob(model, self.unconditional)).mean())
            without = self._target_logprob(model, [w for _, _, w in self.pairs])
            gain = drawn[[j for _, j, _ in self.pairs]] - without
            findings = np.array([f for f, _, _ in self.pairs])
            for finding in dict.fromkeys(findings):
                out[f"draw_{finding}"] = float(gain[findings == finding].mean())
        if self.reads:
            scores, labels = self._read_scores(model)
            for metric, score in (("auc", roc_auc), ("ap", average_precision)):
                values = {finding: score(scores[:, j], labels[:, j]) for j, finding in enumerate(PATHOLOGIES)
                          if labels[:, j].any() and not labels[:, j].all()}
                out.update({f"read_{metric}_{finding}": value for finding, value in values.items()})
                if values:
                    out[f"read_{metric}"] = float(np.mean(list(values.values())))
        return out

    def _logits(self, model: Backbone, examples: list[Example]):
        """Yield (batch, logits (B, T, V) float32) over `examples` in batches."""
        device = next(model.parameters()).device
        for i in range(0, len(examples), self.batch_size):
            batch = pad_batch(examples[i : i + self.batch_size], self.pad_id).to(device)
            logits = model(batch.input_ids, positions=batch.positions, attention_mask=batch.attention_mask).logits
            yield batch, logits.float()

    def _target_logprob(self, model: Backbone, examples: list[Example]) -> np.ndarray:
        """(N,) summed log-probability of each example's target tokens (its loss mask)."""
        totals = []
        for batch, logits in self._logits(model, examples):
            logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch.input_ids[:, 1:, None])[..., 0]
            mask = batch.loss_mask[:, 1:] & batch.attention_mask[:, 1:]
            totals.append((logp * mask).sum(1).cpu())
        return torch.cat(totals).numpy()

    def _read_scores(self, model: Backbone) -> tuple[np.ndarray, np.ndarray]:
        """(each read's log-odds of each finding (R, P), whether the read states it (R, P) bool)."""
        present = findings_ids(self.tokenizers, PATHOLOGIES)
        absent = findings_ids(self.tokenizers, ())
        scores, labels = [], []
        for batch, logits in self._logits(model, self.reads):
            # Every read here ends `<findings> f_1 .. f_P </findings>`, so the P finding tokens sit at the same places.
            ends = batch.attention_mask.sum(1)
            rows = torch.arange(len(ends))[:, None]
            where = ends[:, None] - 1 - len(PATHOLOGIES) + torch.arange(len(PATHOLOGIES))  # (B, P)
            before = logits[rows, where - 1]  # (B, P, V): the logits that predict each finding token
            columns = torch.arange(len(PATHOLOGIES))
            scores.append((before[:, columns, present] - before[:, columns, absent]).cpu())
            labels.append(findings_present(self.tokenizers, batch.input_ids[rows, where]).cpu())
        return torch.cat(scores).numpy(), torch.cat(labels).numpy().astype(bool)


def _index(ids: torch.Tensor, token: int) -> int | None:
    """Position of the first `token` in ids (T,), or None."""
    hits = (ids == token).nonzero()
    return int(hits[0, 0]) if len(hits) else None


def training_monitors(dataset: SequenceDataset, indices: np.ndarray, **options) -> list[FindingsUse]:
    """`FindingsUse` on the findings-draw and read sequences among `dataset[indices]` (the validation split: the
    studies' reads, not the findings reads of random finding sets, so the reading figures follow the studies); none
    when there are neither (e.g. the unpaired pretraining data). `options` go to `FindingsUse`."""
    tokenizers = dataset.tokenizers()
    vocab = tokenizers.vocab
    if IMAGE not in vocab or "<findings>" not in vocab.specials:
        return []
    draws, reads = [], []
    for index in indices:
        example = dataset[int(index)]
        third = int(example.token_ids[2]) if len(example) > 2 else None
        if third == vocab.special("<findings>") and _index(example.token_ids, vocab.special("<img>")) is not None:
            draws.append(example)
        elif third == vocab.special("<img>") and _index(example.token_ids, vocab.special("<report>")) is not None:
            reads.append(example)  # the studies' reads, not the findings reads of random finding sets
    monitor = FindingsUse(tokenizers, draws, reads, **options)
    return [monitor] if len(monitor) else []
