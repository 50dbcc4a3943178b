"""Probe: world-model MPC decoding with the prompt's KV cache copied per candidate (the code before 3bd4182)
against shared (`KVCache.share_prefix`, from 3bd4182), on a randomly initialised robotics-preset model.

    python experiments/results/core/shared_prefix_decoding/bench.py THREADS

One 450-token prompt, 32 greedy continuations of 100 tokens (a CEM population), three rounds each way,
interleaved; both ways must generate the same tokens (their sum is printed).
"""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)

from core.backbone import Backbone, KVCache  # noqa: E402
from core.config import load_config  # noqa: E402
from core.generation import SamplingConfig, generate  # noqa: E402
from core.training.distributed import init_distributed  # noqa: E402

init_distributed()
cfg = load_config("robotics", ["model.vocab_size=1400"])
model = Backbone(cfg.model).eval()
shared = KVCache.share_prefix


def copied(self, repeats):  # what `KVCache.repeat_interleave` did before 3bd4182
    self.keys = [k.repeat_interleave(repeats, 0) for k in self.keys]
    self.values = [v.repeat_interleave(repeats, 0) for v in self.values]
    self.key_mask = self.key_mask.repeat_interleave(repeats, 0)


prompt = torch.randint(100, cfg.model.vocab_size - 10, (450,))
N = 100
for _ in range(3):
    for name, fn in (("copied", copied), ("shared", shared)):
        KVCache.share_prefix = fn
        started = time.perf_counter()
        out = generate(model, [prompt], N, sampling=SamplingConfig(temperature=0.0), samples=32)
        print(name, f"{(time.perf_counter() - started) / N * 1e3:.2f} ms/token step", int(out.sum()), flush=True)
