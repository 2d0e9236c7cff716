"""WiSE-FT: the final weights are the best held-out candidate between the fitted head and fine-tuning."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit
from transferkit.testing import tiny_fit_config
from transferkit.training.interpolation import ALPHAS, choose_alpha, interpolate


def test_interpolation_is_linear_in_floats_and_keeps_integer_buffers_fine_tuned() -> None:
    start = {"w": torch.zeros(3), "num_batches_tracked": torch.tensor(0)}
    tuned = {"w": torch.tensor([4.0, 8.0, -4.0]), "num_batches_tracked": torch.tensor(7)}
    assert torch.equal(interpolate(start, tuned, 0.0)["w"], start["w"])
    assert torch.equal(interpolate(start, tuned, 1.0)["w"], tuned["w"])
    assert torch.equal(interpolate(start, tuned, 0.25)["w"], torch.tensor([1.0, 2.0, -1.0]))
    assert int(interpolate(start, tuned, 0.5)["num_batches_tracked"]) == 7


def _logits(correct: int, total: int, confidence: float = 3.0) -> np.ndarray:
    """One view's logits for `total` images of class 0, the first `correct` of them predicted right."""
    logits = np.zeros((1, total, 2))
    logits[0, :correct, 0] = confidence
    logits[0, correct:, 1] = confidence
    return logits


def test_the_candidate_with_the_lowest_log_loss_is_kept() -> None:
    labels = np.zeros(100, dtype=int)
    spread = [_logits(c, total=100) for c in (60, 90, 70, 88, 50)]
    assert choose_alpha(spread, labels, "val").alpha == 0.25  # the most right: the lowest loss too
    head_best = [_logits(c, total=100) for c in (76, 74, 74, 74, 72)]
    assert choose_alpha(head_best, labels, "val").alpha == 0.0  # no pull toward fine-tuning
    surer = [_logits(80, total=100, confidence=1.0 if a == 0.5 else 3.0) for a in ALPHAS]
    assert choose_alpha(surer, labels, "val").alpha == 0.5  # equal accuracy, better probabilities
    same = [_logits(80, total=100) for _ in ALPHAS]
    assert choose_alpha(same, labels, "val").alpha == 1.0  # nothing to tell them apart: fine-tuned


def test_a_balanced_choice_weighs_the_rare_class_as_much_as_the_common_one() -> None:
    # 90 images of class 0 and 10 of class 1; the head gets every common image right and no rare one,
    # the fine-tuned network gives up 15 common images to find 8 of the 10 rare ones
    labels = np.array([0] * 90 + [1] * 10)
    head, tuned = np.zeros((1, 100, 2)), np.zeros((1, 100, 2))
    head[0, :, 0] = 3.0
    tuned[0, :75, 0] = tuned[0, 75:90, 1] = tuned[0, 90:98, 1] = tuned[0, 98:, 0] = 3.0
    candidates = [head, head, head, head, tuned]
    assert choose_alpha(candidates, labels, "val").alpha < 1.0  # one equal to the head (ties: largest α)
    choice = choose_alpha(candidates, labels, "val", balanced=True)
    assert (choice.alpha, choice.balanced) == (1.0, True)
    assert choice.accuracy[0] == pytest.approx(0.5) and choice.accuracy[-1] == pytest.approx(
        (75 / 90 + 0.8) / 2
    )


def test_fine_tuning_that_destroys_the_head_is_undone(image_folder: Path, tmp_path: Path) -> None:
    """A rate of 3 wrecks the network in one epoch: the run keeps the head (α = 0), which predicts
    the test split exactly as the linear probe does."""
    base = tiny_fit_config(image_folder, tmp_path).with_overrides({"data.val_fraction": 0.4})
    wrecked = transferkit.fit(base.with_overrides({"train.lr": 3.0, "train.warmup_fraction": 0.0}))
    choice = json.loads((wrecked.dir / "metrics.json").read_text())["weight_choice"]
    assert choice["chosen_on"].startswith("val (")
    best, kept = max(choice["accuracy"]), choice["accuracy"][ALPHAS.index(choice["alpha"])]
    assert kept >= best - (best * (1 - best) / int(choice["chosen_on"][5:].split()[0])) ** 0.5
    assert choice["accuracy"][-1] < choice["accuracy"][0]  # fine-tuning alone ended below the head
    probe = transferkit.fit(base.with_overrides({"train.strategy": "linear-probe"}))
    if choice["alpha"] == 0.0:
        assert wrecked.metrics["accuracy"] == pytest.approx(probe.metrics["accuracy"])
    assert wrecked.metrics["accuracy"] >= probe.metrics["accuracy"] - 1 / wrecked.metrics["num_samples"]


def test_without_wise_ft_the_fine_tuned_weights_are_kept(image_folder: Path, tmp_path: Path) -> None:
    config = tiny_fit_config(image_folder, tmp_path).with_overrides({"train.wise_ft": False})
    metrics = json.loads((transferkit.fit(config).dir / "metrics.json").read_text())
    assert "weight_choice" not in metrics
