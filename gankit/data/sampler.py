"""Batches by index: any step's batch is a pure function of (seed, step), so resuming needs no
sampler state."""
from __future__ import annotations

import torch

from ..errors import DataError


class EpochSampler:
    """Index batches for step s: epoch e = s // steps_per_epoch draws a permutation of the
    dataset from (seed, e) alone, so any step's batch is a pure function of (seed, step) and
    resuming needs no sampler state. Under DDP each rank takes a disjoint slice
    perm[rank::world]. Incomplete final batches are dropped, as DataLoader(drop_last=True)."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device,
                 rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size, self.device = rank, world_size, device
        self.steps_per_epoch = (n // world_size) // batch_size
        if self.steps_per_epoch < 1:
            raise DataError(f"the dataset has {n} images, fewer than one batch of {batch_size} "
                            f"per process ({world_size} process(es)); lower --batch-size")
        self._epoch, self._perm = -1, None

    def permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.n, generator=g)
        return perm[self.rank::self.world_size][: self.steps_per_epoch * self.batch_size]

    def indices(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, self.permutation(epoch).to(self.device)
        return self._perm[i * self.batch_size:(i + 1) * self.batch_size]
