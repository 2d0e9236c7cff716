import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from transferkit.config import TrainConfig
from transferkit.data import SplitImages
from transferkit.errors import ConfigError
from transferkit.models import resolve_model
from transferkit.strategies import create_strategy, strategies
from transferkit.training.features import fit_linear_head
from transferkit.training.module import keep_frozen_batchnorm_in_eval
from transferkit.transforms import Normalize


def test_linear_head_matches_scikit_learn_logistic_regression() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(120, 6)).astype(np.float32)
    labels = (features[:, 0] + 0.5 * features[:, 1] + rng.normal(0, 0.5, 120) > 0).astype(int)
    labels[features[:, 2] > 1.0] = 2
    l2 = 1e-2
    weight, bias = fit_linear_head(torch.from_numpy(features), torch.from_numpy(labels), 3, l2)
    ours = torch.softmax(torch.from_numpy(features) @ weight.T + bias, 1).numpy()
    # Same objective: scikit-learn's C * sum(CE) + ||W||^2 / 2 equals ours times 1 / (2 * N * l2).
    reference = LogisticRegression(C=1 / (2 * len(labels) * l2), tol=1e-8, max_iter=5000).fit(
        features, labels
    )
    assert np.abs(ours - reference.predict_proba(features)).max() < 2e-3


@pytest.fixture
def tiny():
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    backbone.reset_head(2)
    return backbone


def _splits() -> tuple[SplitImages, SplitImages]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.arange(16) % 2
    return SplitImages(images[:12], labels[:12], list(range(12))), SplitImages(
        images[12:], labels[12:], [12, 13]
    )


def test_fine_tune_freezes_the_lowest_groups_and_rates_decay_upwards(tiny) -> None:
    config = TrainConfig(strategy="fine-tune", frozen_groups=2, lr=1e-3, lr_decay=0.5)
    strategy = create_strategy(config)
    summary = strategy.prepare(tiny, Normalize(tiny.preprocessing), *_splits())
    groups = tiny.layer_groups()
    assert not any(p.requires_grad for group in groups[:2] for p in group)
    assert all(p.requires_grad for group in groups[2:] for p in group)
    rates = [g["lr"] for g in strategy.param_groups(tiny)]
    assert len(rates) == len(groups) - 2
    assert rates[-1] == 1e-3
    assert rates == sorted(rates)
    assert rates[-2] == pytest.approx(5e-4)
    assert "val_accuracy" in summary


def test_linear_probe_fits_the_head_and_trains_nothing_else(tiny) -> None:
    strategy = create_strategy(TrainConfig(strategy="linear-probe"))
    before = tiny.head().weight.detach().clone()
    strategy.prepare(tiny, Normalize(tiny.preprocessing), *_splits())
    assert not torch.equal(before, tiny.head().weight)
    assert strategy.param_groups(tiny) == []
    assert strategy.train_epochs == 0


def test_frozen_batchnorm_stays_in_inference_mode(tiny) -> None:
    first = next(m for m in tiny.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    for param in first.parameters():
        param.requires_grad_(False)
    tiny.model.train()
    keep_frozen_batchnorm_in_eval(tiny.model)
    assert not first.training
    trainable = [m for m in tiny.model.modules() if isinstance(m, torch.nn.BatchNorm2d) and m is not first]
    assert all(m.training for m in trainable)


def test_every_strategy_declares_its_phases() -> None:
    for name in strategies:
        phases = create_strategy(TrainConfig(strategy=name)).phases()
        assert phases[0].name == "head"
        assert all(p.description for p in phases)


def test_freezing_every_group_is_refused_by_name(tiny) -> None:
    strategy = create_strategy(TrainConfig(strategy="fine-tune", frozen_groups=99))
    with pytest.raises(ConfigError, match=r"train\.frozen_groups=99"):
        strategy.prepare(tiny, Normalize(tiny.preprocessing), *_splits())
