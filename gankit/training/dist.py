"""Data-parallel training with PyTorch's own engine: DistributedDataParallel under `torchrun`.

`Dist` is what the training loop needs to know and do across processes; with one process every
method is a no-op, so the loop reads the same either way. torchrun sets RANK, LOCAL_RANK and
WORLD_SIZE; NCCL carries the tensors on CUDA, gloo on the CPU. Host-side flags (a stop request
from a signal) travel on a separate gloo group, so reading them never waits on a CUDA stream.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from ..errors import ConfigError, GankitError


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    flag_group: object = None  # gloo group for host-side flags
    launched: bool = False  # under torchrun (also with one process: DDP and NCCL then run on one GPU)

    @property
    def enabled(self) -> bool:
        return self.launched

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_mean(self, t: torch.Tensor) -> torch.Tensor:
        """Mean of `t` over ranks, in place (a device collective; no host sync by itself)."""
        if self.enabled:
            dist.all_reduce(t)
            t.div_(self.world_size)
        return t

    def max(self, value: int) -> int:
        """The largest of every rank's `value` (a host-side integer, such as a signal number)."""
        if not self.enabled:
            return value
        t = torch.tensor([value])
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.flag_group)
        return int(t.item())

    def share(self, obj):
        """Rank 0's `obj` on every rank (pickled). An exception from rank 0 is raised everywhere,
        so an error found by rank 0 (a bad checkpoint) stops all ranks with the same message."""
        if not self.enabled:
            if isinstance(obj, BaseException):
                raise obj
            return obj
        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0, group=self.flag_group)
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's rows of `t` (same shape on all ranks) interleaved back into one tensor
        ordered as if one process had made them: rank r made rows r, r + W, r + 2W, ..."""
        if not self.enabled:
            return t
        parts = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(parts, t.contiguous())
        return torch.stack(parts, dim=1).flatten(0, 1)

    def max_param_difference(self, module: torch.nn.Module) -> float:
        """max |p - p_rank0| over all parameters: 0.0 when the ranks agree. (Buffers are not
        compared: without SyncBatchNorm each rank's running statistics follow its own batches.)"""
        if not self.enabled:
            return 0.0
        flat = torch.cat([t.detach().float().flatten() for t in module.parameters()])
        ref = flat.clone()
        dist.broadcast(ref, src=0)
        diff = (flat - ref).abs().max()
        dist.all_reduce(diff, op=dist.ReduceOp.MAX)
        return float(diff)

    def close(self, finished: bool = False) -> None:
        """Leave the process group. After a finished run the ranks first meet at a barrier, so none
        tears its connections down while another still uses them (gloo could abort a rank's exit:
        "terminate called without an active exception"); after a failure they do not wait."""
        if self.enabled and dist.is_initialized():
            if finished:
                dist.barrier()
            dist.destroy_process_group()


def wrap(module: torch.nn.Module, device: torch.device, sync_buffers: bool) -> torch.nn.Module:
    """DistributedDataParallel(module). `sync_buffers`: rank 0's buffers are broadcast before
    every forward (torch >= 2.12 calls this forward_sync_buffers, older ones broadcast_buffers)."""
    key = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DDP).parameters
           else "broadcast_buffers")
    return DDP(module, device_ids=[device.index] if device.type == "cuda" else None, **{key: sync_buffers})


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR"))


def setup(device_name: str) -> tuple[Dist, str]:
    """Join the process group torchrun describes (if any) and return it with the device name
    this rank uses: cuda:LOCAL_RANK on GPUs, the CPU otherwise."""
    if not launched_by_torchrun():
        return Dist(), device_name
    if not dist.is_available():
        raise GankitError("torch.distributed is not available in this PyTorch build")
    rank, local_rank, world = (int(os.environ[k]) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{device_name}' under torchrun, but CUDA is not available; use --device cpu")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"local rank {local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                              f"lower torchrun's --nproc-per-node")
        device_name = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    elif device_name == "auto":
        device_name = "cpu"
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    flag_group = dist.new_group(backend="gloo") if backend != "gloo" else None
    return Dist(rank, local_rank, world, flag_group, launched=True), device_name
