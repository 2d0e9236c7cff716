import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from transferkit.config import TrainConfig
from transferkit.data import SplitImages
from transferkit.errors import ConfigError
from transferkit.models import resolve_model
from transferkit.training.features import fit_linear_head
from transferkit.training.module import keep_batchnorm_statistics
from transferkit.training.strategies import create_strategy, strategies
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


def test_linear_head_from_a_stronger_l2_solution_reaches_the_same_optimum() -> None:
    """fit_head walks its L2 grid from the strongest, each fit starting from the previous solution."""
    rng = np.random.default_rng(1)
    features = torch.from_numpy(rng.normal(size=(60, 40)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 4, 60))  # noise: weak L2 fits it far from the start
    strong = fit_linear_head(features, labels, 4, 1e-1)
    cold = fit_linear_head(features, labels, 4, 1e-3)
    warm = fit_linear_head(features, labels, 4, 1e-3, start=strong)
    probabilities = [torch.softmax(features @ w.T + b, 1) for w, b in (cold, warm)]
    assert torch.allclose(*probabilities, atol=2e-3)
    assert not torch.allclose(strong[0], warm[0], atol=1e-2)  # it moved from where it started
    assert strong[0].requires_grad is False and strong[0].abs().sum() > 0  # the start is left as it was


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


def _trainable(groups: list[list[torch.nn.Parameter]]) -> list[bool]:
    """Per layer group: does any of its parameters train?"""
    return [any(p.requires_grad for p in group) for group in groups]


def test_fine_tune_freezes_the_lowest_groups_and_rates_decay_upwards(tiny) -> None:
    config = TrainConfig(strategy={"name": "fine-tune", "frozen_groups": 2}, lr=1e-3, lr_decay=0.5)
    strategy = create_strategy(config)
    summary = strategy.prepare(tiny, Normalize(tiny.preprocessing), *_splits())
    strategy.set_trainable(tiny, epoch=0)
    groups = tiny.layer_groups()
    assert _trainable(groups) == [False, False] + [True] * (len(groups) - 2)
    rates = [g["lr"] for g in strategy.param_groups(tiny)]
    assert len(rates) == len(groups) - 2
    assert rates[-1] == 1e-3
    assert rates == sorted(rates)
    assert rates[-2] == pytest.approx(5e-4)
    assert "val_accuracy" in summary


def test_lp_ft_trains_every_group_at_a_tenth_of_the_rate_after_the_probe(tiny) -> None:
    strategy = create_strategy(TrainConfig(strategy="lp-ft", lr=1e-3))
    strategy.set_trainable(tiny, epoch=0)
    groups = tiny.layer_groups()
    assert all(_trainable(groups))
    assert [g["lr"] for g in strategy.param_groups(tiny)] == [pytest.approx(1e-4)] * len(groups)
    assert [p.name for p in strategy.phases()] == ["head", "fine-tune"]


def test_full_starts_from_the_new_head_and_can_decay_rates_by_layer(tiny) -> None:
    strategy = create_strategy(TrainConfig(strategy="full", lr=1e-3, lr_decay=0.5))
    assert [p.name for p in strategy.phases()] == ["full"]
    assert strategy.prepare(tiny, Normalize(tiny.preprocessing), *_splits()) == {}
    rates = [g["lr"] for g in strategy.param_groups(tiny)]
    assert len(rates) == len(tiny.layer_groups())
    assert rates[-1] == 1e-3 and rates[0] == pytest.approx(1e-3 * 0.5 ** (len(rates) - 1))


def test_partial_trains_only_the_top_k_groups_and_the_head(tiny) -> None:
    strategy = create_strategy(TrainConfig(strategy="partial:2"))
    strategy.adapt(tiny)
    strategy.set_trainable(tiny, epoch=0)
    trainable = _trainable(tiny.layer_groups())
    assert trainable[-3:] == [True, True, True] and not any(trainable[:-3])
    assert len(strategy.param_groups(tiny)) == 3


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("partial", "e.g. partial:2"),
        ("partial:x", r"'train\.strategy\.groups' must be int or null, got 'x'"),
        ("partial:0", r"'train\.strategy\.groups' must be at least 1 or null, got 0"),
        ({"name": "partial", "groups": 0}, r"'train\.strategy\.groups' must be at least 1"),
        ("fine-tune:2", r"'train\.strategy': fine-tune takes no argument"),
        ({"name": "lora", "rnak": 2}, r"Unknown config key 'train\.strategy\.rnak'\. Did you mean 'rank'"),
    ],
)
def test_a_bad_strategy_option_is_refused_naming_the_key(spec: str | dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_strategy(TrainConfig(strategy=spec))


def test_partial_with_more_groups_than_the_model_has_names_the_range(tiny) -> None:
    with pytest.raises(ConfigError, match=r"partial:1 to partial:\d+"):
        create_strategy(TrainConfig(strategy="partial:99")).adapt(tiny)


def test_gradual_thaws_one_more_group_per_epoch_or_at_milestones(tiny) -> None:
    total = len(tiny.layer_groups())
    strategy = create_strategy(TrainConfig(strategy="gradual", epochs=total + 2))
    thawed = []
    for epoch in range(4):
        strategy.set_trainable(tiny, epoch)
        thawed.append(sum(_trainable(tiny.layer_groups())))
    assert thawed == [2, 3, 4, 5]
    strategy.set_trainable(tiny, total + 1)
    assert all(_trainable(tiny.layer_groups()))
    # every group that will ever train has its rate from the first step (the optimizer never changes)
    assert len(strategy.param_groups(tiny)) == total
    milestones = create_strategy(TrainConfig(strategy={"name": "gradual", "unfreeze_milestones": [2, 4]}))
    assert [milestones.thawed_groups(total, e) for e in range(6)] == [2, 2, 3, 3, 4, 4]


def test_lora_starts_at_the_pretrained_function_and_merges_into_plain_weights(tiny) -> None:
    images = torch.rand(2, 3, 32, 32)
    tiny.model.eval()
    before = tiny.model(images)
    keys = set(tiny.model.state_dict())
    strategy = create_strategy(TrainConfig(strategy={"name": "lora", "rank": 2}))
    strategy.adapt(tiny)
    assert torch.allclose(tiny.model(images), before, atol=1e-6)  # B = 0 at the start
    strategy.set_trainable(tiny, epoch=0)
    trainable = [name for name, p in tiny.model.named_parameters() if p.requires_grad]
    assert trainable and all(".up" in n or ".down" in n or n.startswith("classifier") for n in trainable)
    with torch.no_grad():  # as if training had moved the adapters
        for name, param in tiny.model.named_parameters():
            if name.endswith(".up"):
                param.normal_()
    adapted = tiny.model(images)
    assert not torch.allclose(adapted, before, atol=1e-3)
    strategy.finalize(tiny)
    assert set(tiny.model.state_dict()) == keys  # the bundle's keys: the plain architecture's
    assert torch.allclose(tiny.model(images), adapted, atol=1e-5)


def test_bitfit_trains_biases_norms_and_the_head_only(tiny) -> None:
    strategy = create_strategy(TrainConfig(strategy="bitfit"))
    strategy.set_trainable(tiny, epoch=0)
    trainable = {name for name, p in tiny.model.named_parameters() if p.requires_grad}
    assert "classifier.weight" in trainable
    assert "conv_stem.weight" not in trainable
    assert all(n.endswith("bias") or ".bn" in n or n.startswith(("bn", "classifier")) for n in trainable)


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
    keep_batchnorm_statistics(tiny.model)
    assert not first.training
    trainable = [m for m in tiny.model.modules() if isinstance(m, torch.nn.BatchNorm2d) and m is not first]
    assert trainable and all(m.training for m in trainable)


def test_frozen_batchnorm_option_keeps_every_statistic_while_scales_still_train(tiny) -> None:
    tiny.model.train()
    keep_batchnorm_statistics(tiny.model, everywhere=True)
    norms = [m for m in tiny.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in norms]
    tiny.model(torch.randn(4, 3, 32, 32) * 5 + 3)
    assert all(not m.training for m in norms)
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, norms, strict=True))
    assert all(p.requires_grad for m in norms for p in m.parameters())


def test_every_strategy_declares_its_phases() -> None:
    for name in strategies:
        phases = create_strategy(TrainConfig(strategy=f"{name}:2" if name == "partial" else name)).phases()
        assert phases
        assert all(p.description for p in phases)


def test_freezing_every_group_is_refused_by_name(tiny) -> None:
    strategy = create_strategy(TrainConfig(strategy={"name": "fine-tune", "frozen_groups": 99}))
    with pytest.raises(ConfigError, match=r"train\.strategy\.frozen_groups=99"):
        strategy.adapt(tiny)
