"""Data-parallel training on PyTorch's own engine, started by ``torchrun``.

``torchrun --nproc-per-node N -m mangagan_app train DATA RUN_DIR`` starts N copies
of the trainer with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` set. :func:`start` turns those into a process group (NCCL on CUDA,
gloo on the CPU); without them — or with a world of one — training runs in one
process exactly as before.

Every rank draws the same per-epoch permutation and the same per-step noise for
the whole global batch and keeps its own slice of both, so N processes see the
data in the order one process would. Gradients are averaged by
DistributedDataParallel; the generator's BatchNorm layers are replaced by
:class:`GlobalBatchNorm`, which normalises with the statistics of the global batch
(PyTorch's own ``SyncBatchNorm`` refuses CPU tensors), so the step is the
single-process step up to float rounding.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

# The autograd-aware collectives (torch.distributed.nn.functional is deprecated in their favour).
import torch.distributed._functional_collectives as collectives
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Distributed:
    """This process's place among the training processes (rank 0 writes the files)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def part(self, global_batch: int) -> slice:
        """This rank's slice of a global batch of ``global_batch`` samples."""
        per_rank = global_batch // self.world
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when ``flag`` is true on any (so all ranks stop at the same step)."""
        if not self.active:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def mean(self, stats: dict[str, float], device: torch.device) -> dict[str, float]:
        """Per-rank scalars averaged over the ranks (same keys on every rank)."""
        if not self.active or not stats:
            return stats
        keys = sorted(stats)
        t = torch.tensor([stats[k] for k in keys], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return {k: v / self.world for k, v in zip(keys, t.tolist(), strict=True)}


def from_environment() -> Distributed:
    """The rank and world size torchrun put into the environment (one process without them)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ:
        return Distributed()
    return Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def start(device: torch.device, global_batch: int) -> tuple[Distributed, torch.device]:
    """Join the process group torchrun describes and return (place, this rank's device).

    On CUDA each rank takes GPU ``LOCAL_RANK`` and talks NCCL; elsewhere gloo.
    Raises ``ValueError`` when the global batch does not split evenly over the ranks
    or the device is neither CUDA nor the CPU.
    """
    ctx = from_environment()
    if not ctx.active:
        return ctx, device
    if global_batch % ctx.world:
        raise ValueError(f"batch {global_batch} does not split evenly over {ctx.world} processes")
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ValueError(f"distributed training runs on CUDA or the CPU, not {device.type}")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    log.info("rank %d of %d on %s (%s)", ctx.rank, ctx.world, device, backend)
    return ctx, device


def stop(ctx: Distributed, *, all_finished: bool = True) -> None:
    """Leave the process group :func:`start` joined (nothing to do for one process).

    ``all_finished`` says every rank got here the normal way; they then wait for
    each other first, because gloo aborts a process ("terminate called without an
    active exception") whose peer closes its connections while it still uses them.
    After a failure no rank waits: a peer may never arrive.
    """
    if ctx.active and dist.is_initialized():
        if all_finished:
            dist.barrier()
        dist.destroy_process_group()


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the batch across all ranks.

    Same parameters and buffers as ``BatchNorm2d`` (checkpoints load into either).
    The sums travel through an autograd-aware all-reduce, so the backward pass
    carries every rank's share of the gradient through the shared mean and variance.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized():
            return super().forward(x)
        xf = x.float()
        count = torch.full((1,), float(xf.numel() // xf.shape[1]), device=x.device)
        sums = torch.cat([xf.sum(dim=(0, 2, 3)), (xf * xf).sum(dim=(0, 2, 3)), count])
        sums = collectives.all_reduce(sums, "sum", dist.group.WORLD)  # (2C + 1,) summed over ranks
        c = xf.shape[1]
        n = sums[-1]
        mean = sums[:c] / n
        var = (sums[c : 2 * c] / n - mean * mean).clamp_min(0.0)  # biased, as BatchNorm normalises
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach() * n / (n - 1), self.momentum)
            self.num_batches_tracked.add_(1)
        y = (xf - mean.view(1, c, 1, 1)) * torch.rsqrt(var.view(1, c, 1, 1) + self.eps)
        y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y.to(x.dtype)


def with_global_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``module`` (in place) by a :class:`GlobalBatchNorm` sharing its tensors."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            sync = GlobalBatchNorm(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            # The very same Parameter and buffer objects: an optimiser built on the
            # module before the swap keeps updating them.
            sync.weight, sync.bias = child.weight, child.bias
            for buffer in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(sync, buffer, getattr(child, buffer))
            sync.train(child.training)
            setattr(module, name, sync)
        else:
            with_global_batch_norm(child)
    return module
