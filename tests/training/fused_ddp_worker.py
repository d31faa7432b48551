"""Run by ``test_fused_training.py`` under ``torchrun --standalone --nproc_per_node N OUT``: 2 SGD
steps of the fused loss through a DDP-wrapped tiny causal LM, each process on its share of every
global batch of 4, the loss divided by the global token count and multiplied by the world size
(DDP averages gradients); rank 0 saves the state dict to OUT."""

from __future__ import annotations

import sys
from datetime import timedelta

import torch
import torch.distributed as dist
from test_fused_training import IGNORE, build, make_batch, tiny_config
from torch.nn.parallel import DistributedDataParallel

from dece.training.fused import fused_causal_lm_loss


def main(out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    model = build(tiny_config(vocab_size=300, num_hidden_layers=1))
    ddp = DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for seed in range(2):
        ids, mask, target = make_batch(300, b=4, seed=seed)
        n_items = int((target != IGNORE).sum())
        part = slice(rank * 4 // world, (rank + 1) * 4 // world)
        opt.zero_grad()
        out_ = fused_causal_lm_loss(
            ddp, ids[part], mask[part], target[part], epoch=1.0, num_items_in_batch=n_items
        )
        (out_.loss * world).backward()
        opt.step()
    if rank == 0:
        torch.save(model.state_dict(), out)
    # Both ranks leave together: in two full-suite runs here the launcher hung after rank 0 had
    # saved OUT (the file was there), i.e. at the process group's teardown with one rank gone.
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
