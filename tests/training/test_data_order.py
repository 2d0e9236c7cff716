"""The seeded batch order: reproducible, resumable mid-epoch, sharded across processes, balanceable."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from transferkit.training import data_order
from transferkit.training.balance import class_weights, resolve_balance, sample_weights
from transferkit.training.data_order import SeededBatchSampler


def _sampler(epoch: list[int], **options: object) -> SeededBatchSampler:
    return SeededBatchSampler(10, 3, seed=7, epoch_of=lambda: epoch[0], drop_last=False, **options)  # type: ignore[arg-type]


def test_the_order_depends_on_seed_and_epoch_only() -> None:
    epoch = [0]
    first, again = list(_sampler(epoch)), list(_sampler(epoch))
    assert first == again
    assert sorted(i for batch in first for i in batch) == list(range(10))
    assert [len(b) for b in first] == [3, 3, 3, 1]
    epoch[0] = 1
    assert list(_sampler(epoch)) != first


def test_a_resumed_epoch_yields_exactly_the_batches_not_yet_seen() -> None:
    epoch = [2]
    full = list(_sampler(epoch))
    resumed = _sampler(epoch)
    resumed.resume(epoch=2, batches_done=2)
    assert list(resumed) == full[2:]
    assert list(resumed) == full  # the skip applies once


def test_a_resume_point_of_another_epoch_skips_nothing() -> None:
    epoch = [3]
    sampler = _sampler(epoch)
    sampler.resume(epoch=2, batches_done=4)  # the checkpoint closed epoch 2
    assert list(sampler) == list(_sampler(epoch))


def test_processes_get_disjoint_equal_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    shards = []
    for rank in range(2):
        monkeypatch.setattr(data_order, "process_rank", lambda rank=rank: (rank, 2))
        sampler = _sampler([0])
        shards.append([i for batch in sampler for i in batch])
        assert len(sampler) == 2  # 5 images each, batches of 3
    assert not set(shards[0]) & set(shards[1])
    assert len(shards[0]) == len(shards[1]) == 5


def test_balanced_sampling_draws_a_rare_class_as_often_as_a_common_one() -> None:
    labels = torch.tensor([0] * 90 + [1] * 10)
    weights = sample_weights(labels, [90, 10])
    epoch = [0]
    sampler = SeededBatchSampler(100, 10, seed=0, epoch_of=lambda: epoch[0], drop_last=False, weights=weights)
    draws = []
    for epoch[0] in range(20):
        draws.append([i for batch in sampler for i in batch])
    # 20 different epochs are 2,000 independent draws (a standard error of 1.1 points), not one draw repeated
    assert len({tuple(draw) for draw in draws}) == 20
    drawn = Counter(int(labels[i]) for draw in draws for i in draw)
    assert 0.45 < drawn[1] / sum(drawn.values()) < 0.55


def test_auto_balance_weights_the_loss_only_for_skewed_classes() -> None:
    assert resolve_balance("auto", [50, 40, 45]) == "none"
    assert resolve_balance("auto", [1508, 295, 106, 715]) == "weights"  # ELPV's train split
    assert resolve_balance("sampler", [50, 50]) == "sampler"
    weights = class_weights([30, 10])
    assert torch.allclose(weights, torch.tensor([2 / 3, 2.0]))
    assert float((weights * torch.tensor([30.0, 10.0])).sum()) == pytest.approx(40.0)
