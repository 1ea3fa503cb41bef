"""torchrun / DistributedDataParallel set-up: NCCL on GPUs, Gloo on CPU."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from singsynth.model.devices import choose_device


@dataclass
class World:
    """Where this process stands: rank 0 of 1 when not launched by torchrun."""

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.size > 1:
            dist.barrier()

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """DDP around `module` when several processes train, else the module itself."""
        if self.size == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)


def init_world(device: str = "auto") -> World:
    """Join the process group torchrun describes in the environment, if any."""
    device = choose_device(device)
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(0, 1, torch.device(device))
    rank = int(os.environ["RANK"])
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
        backend = "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return World(rank, size, dev)


def shutdown(world: World):
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
