"""MAE and quadratic weighted kappa of ordered classes: hand-computed cases, scikit-learn, intervals."""

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, confusion_matrix
from sklearn.metrics import mean_absolute_error as sklearn_mae

from transferkit.evaluation.metrics import compute_metrics, headline_metrics
from transferkit.evaluation.ordinal import mean_absolute_error, quadratic_weighted_kappa


def _confusion(true: list[int], predicted: list[int], classes: int) -> np.ndarray:
    return confusion_matrix(true, predicted, labels=range(classes))


@pytest.mark.parametrize(
    ("true", "predicted", "classes", "mae", "kappa"),
    [
        # O = [[1, 1], [0, 2]], E = [[.5, 1.5], [.5, 1.5]]: 1 - 1 / 2
        ([0, 0, 1, 1], [0, 1, 1, 1], 2, 0.25, 0.5),
        # reversed order: weighted disagreement 8 against 4 by chance
        ([0, 1, 2], [2, 1, 0], 3, 4 / 3, -1.0),
        ([0, 1, 2, 3], [0, 1, 2, 3], 4, 0.0, 1.0),
        # one image one step off: weighted disagreement 1; by chance (margins [1, 1, 2] x [1, 2, 1] / 4)
        # 1.5 + 0.5 + 3 = 5
        ([0, 1, 2, 2], [0, 1, 2, 1], 3, 0.25, 1 - 1 / 5),
    ],
)
def test_hand_computed_cases(
    true: list[int], predicted: list[int], classes: int, mae: float, kappa: float
) -> None:
    confusion = _confusion(true, predicted, classes)
    assert mean_absolute_error(confusion) == pytest.approx(mae)
    assert quadratic_weighted_kappa(confusion) == pytest.approx(kappa)


@pytest.mark.parametrize("seed", range(4))
def test_equal_to_scikit_learn_on_random_predictions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 5, 80)
    predicted = np.clip(true + rng.integers(-2, 3, 80), 0, 4)
    confusion = _confusion(true.tolist(), predicted.tolist(), 5)
    assert quadratic_weighted_kappa(confusion) == pytest.approx(
        cohen_kappa_score(true, predicted, weights="quadratic")
    )
    assert mean_absolute_error(confusion) == pytest.approx(sklearn_mae(true, predicted))


def test_a_stack_of_confusions_gives_one_value_each_and_nan_where_undefined() -> None:
    good = _confusion([0, 1, 2], [0, 1, 1], 3)
    single = np.array([[4, 0, 0], [0, 0, 0], [0, 0, 0]])  # one class, always predicted: no chance term
    kappas = quadratic_weighted_kappa(np.stack([good, single]))
    assert kappas[0] == pytest.approx(quadratic_weighted_kappa(good))
    assert np.isnan(kappas[1])


def test_compute_metrics_adds_mae_and_qwk_with_intervals_for_ordered_classes() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 120)
    noisy = np.clip(labels + rng.integers(-1, 2, 120), 0, 3)
    probabilities = np.full((120, 4), 0.1)
    probabilities[np.arange(120), noisy] = 0.7
    metrics = compute_metrics(
        labels, probabilities, ["p=0", "p=1/3", "p=2/3", "p=1"], ordered=True, resamples=200
    )
    assert metrics["mae"] == pytest.approx(sklearn_mae(labels, noisy))
    assert metrics["qwk"] == pytest.approx(cohen_kappa_score(labels, noisy, weights="quadratic"))
    for name in ("mae", "qwk"):
        low, high = metrics["intervals"][name]
        assert low <= metrics[name] <= high and low < high
    assert {"mae", "qwk"} <= set(headline_metrics(metrics))
    unordered = compute_metrics(labels, probabilities, ["a", "b", "c", "d"], resamples=200)
    assert "mae" not in unordered and "mae" not in headline_metrics(unordered)
