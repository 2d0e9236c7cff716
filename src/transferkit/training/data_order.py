"""Training batches in an order fixed by the seed and the epoch, so an interrupted run resumes exactly."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import Sampler


def process_rank() -> tuple[int, int]:
    """This process's rank and the number of processes sharing the data."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class SeededBatchSampler(Sampler[list[int]]):
    """Batch indices for one epoch: a permutation drawn from (seed, epoch), this process's shard of it.

    Nothing depends on what ran before, so a run resumed mid-epoch gets the batches the interrupted
    run had not yet seen (`resume`). With `weights`, indices are drawn with replacement in proportion
    to them (class-balanced sampling).

    Args:
        size: number of training images.
        batch_size: images per batch.
        seed: the run's seed.
        epoch_of: returns the current epoch (the trainer's), read when an epoch's iteration starts.
        drop_last: drop a last, smaller batch (keeps BatchNorm statistics sane).
        weights: per-image sampling weights, or None for a plain shuffle.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        epoch_of: Callable[[], int],
        *,
        drop_last: bool,
        weights: Sequence[float] | None = None,
    ) -> None:
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.epoch_of = epoch_of
        self.drop_last = drop_last
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self._resume_at: tuple[int, int] | None = None

    def resume(self, epoch: int, batches_done: int) -> None:
        """The next iteration of `epoch` skips its first `batches_done` batches."""
        self._resume_at = (epoch, batches_done)

    def order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if self.weights is None:
            indices = torch.randperm(self.size, generator=generator)
        else:
            indices = torch.multinomial(self.weights, self.size, replacement=True, generator=generator)
        rank, world = process_rank()
        shard = self.size // world  # equal shards: every process takes the same number of steps
        return indices[: shard * world][rank::world].tolist()

    def __len__(self) -> int:
        shard = self.size // process_rank()[1]
        return shard // self.batch_size if self.drop_last else -(-shard // self.batch_size)

    def batches(self, epoch: int, skip: int = 0) -> Iterator[list[int]]:
        """The batches of `epoch`, from its batch number `skip` on."""
        indices = self.order(epoch)
        for start in range(skip * self.batch_size, len(self) * self.batch_size, self.batch_size):
            yield indices[start : start + self.batch_size]

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch_of()
        skip = 0
        if self._resume_at is not None and self._resume_at[0] == epoch:
            skip = self._resume_at[1]
        self._resume_at = None
        yield from self.batches(epoch, skip)
