"""Process-group set-up for DeepSpeed on one CPU process or under torchrun / the deepspeed launcher."""

from __future__ import annotations

import os
import socket

import torch.distributed as dist

__all__ = ["init_distributed", "rank", "world_size", "barrier"]


_OWN_WORLD = "UWM_SINGLE_PROCESS_PORT"  # the MASTER_PORT of a world of one that init_distributed made


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_distributed() -> None:
    """Initialise torch.distributed through DeepSpeed (gloo on CPU, nccl on GPU); idempotent.

    A plain `python`/`uwm` run becomes a world of one. Launchers (torchrun, deepspeed) set
    RANK/WORLD_SIZE/MASTER_* themselves and are left alone.
    """
    if dist.is_initialized():
        return
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    # A child process inherits the world of one its parent made (its RANK and MASTER_PORT, which the parent
    # still listens on): it makes its own rather than taking them for a launcher's.
    if "RANK" not in os.environ or os.environ.get(_OWN_WORLD) == os.environ.get("MASTER_PORT"):
        port = os.environ.get("MASTER_PORT") if "RANK" not in os.environ else None
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=port or str(_free_port()))
        os.environ[_OWN_WORLD] = os.environ["MASTER_PORT"]
    # DeepSpeed would JIT-compile its shared-memory all-reduce op (~80 s) on first use on CPU.
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    backend = "gloo" if get_accelerator().device_name() == "cpu" else get_accelerator().communication_backend_name()
    deepspeed.init_distributed(dist_backend=backend)


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
