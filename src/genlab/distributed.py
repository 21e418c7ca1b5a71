"""Several processes, one trainer: PyTorch's own torchrun + DistributedDataParallel, nothing home-made.

`fit` asks `World.from_environment()` whether it runs under torchrun (WORLD_SIZE > 1). Then every rank
holds the same model and data, takes its shard of each global batch, and DDP averages the gradients, so
the updates equal a single process's on the same global batch. Rank 0 alone writes the run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from genlab.errors import GenlabError


@dataclass
class World:
    rank: int = 0
    size: int = 1
    owns_group: bool = False  # whether fit started the process group (and so ends it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: torch.device) -> tuple[World, torch.device]:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return cls(), device
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), owns), device

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global batch of example indices."""
        return index if self.size == 1 else index[self.rank :: self.size]

    def agree(self, loss: torch.Tensor, stop: bool) -> tuple[float, bool]:
        """The mean loss over ranks, and whether any rank was asked to stop (one all-reduce)."""
        if self.size == 1:
            return loss.item(), stop
        import torch.distributed as dist

        both = torch.stack([loss.detach().float().reshape(()), torch.tensor(float(stop), device=loss.device)])
        dist.all_reduce(both)
        return both[0].item() / self.size, both[1].item() > 0

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's copy of a same-shaped tensor (e.g. RNG states), in rank order."""
        if self.size == 1:
            return [tensor]
        import torch.distributed as dist

        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor)
        return parts

    def barrier(self) -> None:
        if self.size > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()

    def wrap(self, objective, device: torch.device):
        """A callable (x, y) -> losses that syncs the objective's gradients across ranks (DDP)."""
        if self.size == 1:
            return objective.loss
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(_ObjectiveModule(objective), device_ids=ids)


class _ObjectiveModule(nn.Module):
    """An objective as a module: its parameters registered, its loss as forward, so DDP can wrap it."""

    def __init__(self, objective):
        super().__init__()
        self.params = nn.ParameterList(objective.parameters)
        self.objective = objective

    def forward(self, x, y):
        return self.objective.loss(x, y)


def launch(nproc: int, argv: list[str]) -> int:
    """Run `genlab <argv>` in nproc processes under torchrun (standalone, this machine)."""
    import subprocess
    import sys

    if nproc < 1:
        raise GenlabError(f"--nproc must be a positive number of processes, not {nproc}.")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "genlab", *argv]
    return subprocess.call(command)
