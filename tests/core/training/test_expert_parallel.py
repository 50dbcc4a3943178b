"""The scale path: two processes, experts split across them (ep_size=2), gloo, under torchrun."""

import json
import os
import socket
import subprocess
import sys

import pytest

from core.data import SequenceDataset
from core.training import Trainer
from tests.tiny import tiny_run_config


def _torchrun(data, out, steps: int) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
               "-m", "core.cli", "pretrain", "--config", "tiny", "--data", str(data), "--out", str(out), "--no-progress",
               "model.ep_size=2", f"train.steps={steps}", "data.seq_len=32", "train.lr=5e-3", "train.save_every=30"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # this pytest process may itself be a world of one
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_two_process_expert_parallel_training(locate_data, tmp_path):
    out = tmp_path / "ep"
    _torchrun(locate_data, out, steps=60)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["step"] == 60 and logged[-1]["loss"] < 0.3 * logged[0]["loss"]
    # each process saved its own experts' optimizer state
    checkpoint = out / "checkpoints" / "step-00000060"
    assert (checkpoint / "expp_rank_0_mp_rank_00_optim_states.pt").is_file()
    assert (checkpoint / "expp_rank_1_mp_rank_00_optim_states.pt").is_file()
    # and its own data position (DeepSpeed's client state is rank 0's alone)
    import torch

    positions = [torch.load(checkpoint / f"rng_rank{r:05d}.pt", weights_only=False)["data"] for r in (0, 1)]
    assert all(set(position) >= {"epoch", "cursor"} for position in positions)

    # the export gathered every expert: one process reproduces the 2-process validation loss
    summary = json.loads((out / "summary.json").read_text())
    config = tiny_run_config(locate_data, "train.steps=0", f"finetune.init={out / 'final'}")
    single = Trainer(config, SequenceDataset(locate_data), tmp_path / "single", progress=False)
    assert single.evaluate() == pytest.approx(summary["val_loss"], rel=1e-4)

    # and the 2-process run resumes from its checkpoint
    _torchrun(locate_data, out, steps=70)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged][-3:] == [60, 65, 70]
