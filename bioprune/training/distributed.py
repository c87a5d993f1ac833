"""Data-parallel pretraining: torchrun launch (single node), process group setup, global-batch rows.

`pretrain.gpus: N` (N > 1) makes the pretrain stage re-run itself under
`python -m torch.distributed.run --standalone --nproc_per_node N -m bioprune.training.ddp_worker <args.json>`;
each rank then calls the same `pretrain(...)`, sees WORLD_SIZE in its environment and trains with
DistributedDataParallel (NCCL on CUDA, one GPU per rank by LOCAL_RANK; gloo on CPU, used by tests).

Global batch semantics: every rank builds the same global batch for a step (same schedule, same
masks drawn by the (seed, step) generator), takes rows rank, rank + N, ... of it, and scales its
summed per-sample loss by N / B_global, so DDP's gradient average equals the one-process gradient
of the batch mean. A rank left without rows (B_global < N) runs one row with weight zero.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from bioprune.errors import BiopruneError


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this call initialised the process group (and tears it down)

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """True inside a torchrun worker of a multi-process job."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(requested_device: str = "auto") -> DistContext:
    """The process's rank, world size and device; initialises the process group under torchrun."""
    from bioprune.models import pick_device

    if not launched():
        return DistContext(device=pick_device(requested_device))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = requested_device in ("auto", "cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if cuda else "gloo")
    return DistContext(rank=rank, world=world, device=device, owns_group=owns)


def local_rows(batch_rows: int, ctx: DistContext) -> tuple[slice, float]:
    """This rank's rows of a global batch (rank::world) and their loss weight (0 for a dummy row)."""
    if ctx.rank < batch_rows:
        return slice(ctx.rank, None, ctx.world), 1.0
    return slice(0, 1), 0.0


def all_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.world > 1:
        dist.all_reduce(t)
    return t


def barrier(ctx: DistContext) -> None:
    if ctx.world > 1:
        dist.barrier()


def finish(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def launch(nproc: int, args_path: str) -> None:
    """Run `python -m bioprune.training.ddp_worker args_path` on `nproc` local processes with torchrun."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "bioprune.training.ddp_worker", args_path]
    res = subprocess.run(cmd)
    if res.returncode != 0:
        raise BiopruneError(f"pretrain: data-parallel run on {nproc} processes (config key pretrain.gpus) "
                            f"failed with exit code {res.returncode}; see the job log")
