"""Metrics are checked against scikit-learn and against hand-computed grouped results."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from transferkit.evaluation import LabelGrouping, compute_metrics, headline_metrics
from transferkit.evaluation.metrics import noise_note

CLASS_NAMES = ("a", "b", "c", "d", "e")


def _random_case(seed: int, num_samples: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Random labels and probabilities where class 4 has support but is never predicted."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, len(CLASS_NAMES), size=num_samples)
    probs = rng.dirichlet(np.ones(len(CLASS_NAMES)), size=num_samples)
    probs[:, 4] *= 0.01  # never the argmax
    probs /= probs.sum(axis=1, keepdims=True)
    return y_true, probs


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_summary_metrics_match_sklearn(seed: int) -> None:
    y_true, probs = _random_case(seed)
    y_pred = probs.argmax(axis=1)
    result = compute_metrics(y_true, probs, CLASS_NAMES)

    assert 4 not in y_pred
    assert result["num_samples"] == len(y_true)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert result["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert result["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert result["log_loss"] == pytest.approx(skm.log_loss(y_true, probs, labels=range(len(CLASS_NAMES))))
    expected_confusion = skm.confusion_matrix(y_true, y_pred, labels=range(len(CLASS_NAMES)))
    assert result["confusion_matrix"] == expected_confusion.tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_class_matches_sklearn(seed: int) -> None:
    y_true, probs = _random_case(seed)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, probs.argmax(axis=1), labels=range(len(CLASS_NAMES)), zero_division=0
    )
    per_class = compute_metrics(y_true, probs, CLASS_NAMES)["per_class"]

    assert [row["class"] for row in per_class] == list(CLASS_NAMES)
    assert [row["precision"] for row in per_class] == pytest.approx(precision.tolist())
    assert [row["recall"] for row in per_class] == pytest.approx(recall.tolist())
    assert [row["f1"] for row in per_class] == pytest.approx(f1.tolist())
    assert [row["support"] for row in per_class] == support.tolist()


def test_class_without_support_or_predictions_is_left_out_of_averages() -> None:
    y_true = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.3, 0.7, 0.0], [0.4, 0.6, 0.0]])
    result = compute_metrics(y_true, probs, ("x", "y", "unused"))

    assert result["balanced_accuracy"] == pytest.approx((0.5 + 1.0) / 2)
    assert result["macro_f1"] == pytest.approx(skm.f1_score(y_true, probs.argmax(axis=1), average="macro"))


def test_grouping_sums_member_probabilities() -> None:
    # Fine classes 0,1 -> group 0 ("ok"); 2,3 -> group 1 ("bad").
    grouping = LabelGrouping("binary", ("ok", "bad"), (0, 0, 1, 1))
    y_true = np.array([0, 1, 2, 3, 3])
    probs = np.array(
        [
            [0.30, 0.30, 0.40, 0.00],  # fine argmax 2 (bad), but ok sums to 0.6 -> ok: correct
            [0.10, 0.20, 0.70, 0.00],  # bad 0.7 -> wrong
            [0.00, 0.10, 0.45, 0.45],  # bad 0.9 -> correct
            [0.35, 0.35, 0.00, 0.30],  # ok 0.7 -> wrong
            [0.00, 0.00, 0.20, 0.80],  # bad -> correct
        ]
    )
    grouped = compute_metrics(y_true, probs, ("a", "b", "c", "d"), [grouping])["groupings"]["binary"]

    # By hand: 3 of 5 right; recall ok = 1/2, recall bad = 2/3.
    assert grouped["accuracy"] == pytest.approx(3 / 5)
    assert grouped["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert grouped["confusion_matrix"] == [[1, 1], [1, 2]]
    assert grouped["group_names"] == ["ok", "bad"]


def test_output_is_json_serialisable_and_headline_is_flat() -> None:
    y_true, probs = _random_case(0)
    grouping = LabelGrouping("binary", ("low", "high"), (0, 0, 1, 1, 1))
    result = compute_metrics(y_true, probs, CLASS_NAMES, [grouping])

    assert json.loads(json.dumps(result)) == result
    headline = headline_metrics(result)
    assert set(headline) == {"accuracy", "balanced_accuracy", "macro_f1", "binary_accuracy"}
    assert headline["binary_accuracy"] == result["groupings"]["binary"]["accuracy"]


@pytest.mark.parametrize(
    ("y_true", "probs", "message"),
    [
        (np.array([0, 1]), np.full((2, 2), 0.5), "shape"),
        (np.array([[0, 1]]), np.full((2, 3), 1 / 3), "1-D"),
        (np.array([0, 3]), np.full((2, 3), 1 / 3), "outside"),
        (np.array([0, -1]), np.full((2, 3), 1 / 3), "outside"),
        (np.array([0.0, 1.0]), np.full((2, 3), 1 / 3), "integer"),
        (np.array([0, 1]), np.array([[2.0, -1.0, 0.0], [1.0, 0.0, 0.0]]), "non-negative"),
        (np.array([0, 1]), np.array([[0.5, 0.5, 0.5], [1.0, 0.0, 0.0]]), "sum to 1"),
        (np.array([], dtype=int), np.zeros((0, 3)), "non-empty"),
    ],
)
def test_invalid_inputs_raise(y_true: np.ndarray, probs: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_metrics(y_true, probs, ("a", "b", "c"))


def test_invalid_groupings_raise() -> None:
    with pytest.raises(ValueError, match="group indices"):
        LabelGrouping("binary", ("ok", "bad"), (0, 2))
    with pytest.raises(ValueError, match="one group index per class"):
        compute_metrics(
            np.array([0]), np.array([[1.0, 0.0, 0.0]]), "abc", [LabelGrouping("g", ("x", "y"), (0, 1))]
        )


def test_bootstrap_intervals_contain_the_estimate_and_shrink_with_more_images() -> None:
    widths = []
    for num_samples in (100, 2000):
        y_true, probs = _random_case(0, num_samples)
        probs = 0.85 * probs + 0.15 * np.eye(len(CLASS_NAMES))[y_true]  # better than chance
        result = compute_metrics(y_true, probs, CLASS_NAMES)
        for name in ("accuracy", "balanced_accuracy", "macro_f1", "auroc"):
            low, high = result["intervals"][name]
            assert low <= result[name] <= high, name
        for row in result["per_class"][:4]:
            assert row["f1_interval"][0] <= row["f1"] <= row["f1_interval"][1]
        low, high = result["intervals"]["accuracy"]
        assert result["resolution"] == pytest.approx((high - low) / 2)
        widths.append(high - low)
    assert widths[1] < widths[0] / 3  # about 1/sqrt(N): 4.5 times narrower


def test_bootstrap_is_seeded_and_the_interval_of_accuracy_matches_its_binomial_spread() -> None:
    y_true, probs = _random_case(1, 400)
    first = compute_metrics(y_true, probs, CLASS_NAMES, seed=3)
    assert compute_metrics(y_true, probs, CLASS_NAMES, seed=3)["intervals"] == first["intervals"]
    assert compute_metrics(y_true, probs, CLASS_NAMES, seed=4)["intervals"] != first["intervals"]
    accuracy = first["accuracy"]
    binomial_half_width = 1.96 * np.sqrt(accuracy * (1 - accuracy) / 400)
    assert first["resolution"] == pytest.approx(binomial_half_width, rel=0.15)


@pytest.mark.parametrize(
    ("correct", "images", "expected"),
    # as scipy.stats.binomtest(correct, images).proportion_ci(method="wilson") gives them
    [
        (30, 30, (0.8865, 1.0)),
        (29, 30, (0.8333, 0.9941)),
        (0, 10, (0.0, 0.2775)),
        (80, 100, (0.7112, 0.8666)),
    ],
)
def test_accuracy_takes_the_wilson_interval_which_keeps_its_width_at_100_percent(
    correct: int, images: int, expected: tuple[float, float]
) -> None:
    y_true = np.zeros(images, dtype=int)
    probs = np.tile([0.9, 0.1], (images, 1))
    probs[correct:] = [0.1, 0.9]  # the rest are mistakes
    result = compute_metrics(y_true, probs, ("ok", "bad"))
    assert result["accuracy"] == correct / images
    assert result["intervals"]["accuracy"] == pytest.approx(expected, abs=1e-4)


def _predicted(counts: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and one-hot predictions with (right, wrong) images per class; the wrong ones as class 0,
    or class 1 for class 0's."""
    labels, predictions = [], []
    for label, (right, wrong) in enumerate(counts):
        labels += [label] * (right + wrong)
        predictions += [label] * right + [int(label == 0)] * wrong
    return np.array(labels), np.eye(len(counts))[predictions]


def test_balanced_accuracy_keeps_an_interval_when_a_rare_class_is_all_right() -> None:
    """3 defective cells among 75, all found: the bootstrap's resamples all score 100 %; the posterior
    of the defective recall, 3 of 3, is wide."""
    labels, probs = _predicted([(70, 2), (3, 0)])
    result = compute_metrics(labels, probs, ("ok", "defective"))
    low, high = result["intervals"]["balanced_accuracy"]
    assert result["balanced_accuracy"] == pytest.approx((70 / 72 + 1) / 2)
    assert low < 0.85 < result["balanced_accuracy"] <= high
    perfect = compute_metrics(*_predicted([(72, 0), (3, 0)]), ("ok", "defective"))
    assert perfect["intervals"]["balanced_accuracy"][0] < 0.85
    assert perfect["intervals"]["balanced_accuracy"][1] == 1.0


def test_balanced_accuracy_interval_matches_the_spread_of_its_recalls() -> None:
    labels, probs = _predicted([(320, 80), (240, 160)])  # recalls 0.8 and 0.6 of 400 images each
    low, high = compute_metrics(labels, probs, ("a", "b"))["intervals"]["balanced_accuracy"]
    half_width = 1.96 * np.sqrt(0.8 * 0.2 / 400 + 0.6 * 0.4 / 400) / 2
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.1)
    assert (low + high) / 2 == pytest.approx(0.7, abs=0.005)


def test_balanced_accuracy_over_classes_of_one_image_keeps_the_estimate_inside() -> None:
    """100 classes of one test image each, 35 right: the posterior alone, pulled toward 1/2 per class,
    would lie above the estimate; joined with the bootstrap it holds the estimate well inside."""
    labels = np.arange(100)
    predictions = np.where(labels < 35, labels, (labels + 1) % 100)
    result = compute_metrics(labels, np.eye(100)[predictions], [f"c{k}" for k in range(100)])
    low, high = result["intervals"]["balanced_accuracy"]
    assert result["balanced_accuracy"] == pytest.approx(0.35)
    assert low < 0.30 and high > 0.40


def test_noise_note_only_when_the_test_set_cannot_resolve_a_point() -> None:
    y_true, probs = _random_case(0, 200)
    small = compute_metrics(y_true, probs, CLASS_NAMES)
    note = noise_note(small)
    assert note is not None
    assert note.startswith("With 200 test images the 95 % interval of accuracy spans ±")
    assert noise_note({**small, "resolution": 0.004}) is None


@pytest.mark.parametrize("seed", [0, 1])
def test_auroc_matches_sklearn(seed: int) -> None:
    y_true, probs = _random_case(seed)
    probs = np.round(probs, 2)  # ties count one half, as in sklearn
    probs /= probs.sum(axis=1, keepdims=True)
    expected = skm.roc_auc_score(y_true, probs, multi_class="ovr", average="macro")
    assert compute_metrics(y_true, probs, CLASS_NAMES)["auroc"] == pytest.approx(expected)

    binary = (y_true >= 2).astype(int)
    binary_probs = np.column_stack([probs[:, :2].sum(1), probs[:, 2:].sum(1)])
    result = compute_metrics(binary, binary_probs, ("low", "high"))
    assert result["auroc"] == pytest.approx(skm.roc_auc_score(binary, binary_probs[:, 1]))


def test_auroc_skips_classes_without_positives_and_is_none_when_undefined() -> None:
    y_true, probs = _random_case(0)
    y_true[y_true == 3] = 0  # class 3 never occurs
    present = [0, 1, 2, 4]
    expected = np.mean([skm.roc_auc_score(y_true == c, probs[:, c]) for c in present])
    assert compute_metrics(y_true, probs, CLASS_NAMES)["auroc"] == pytest.approx(expected)

    single = compute_metrics(np.zeros(4, dtype=int), np.full((4, 2), 0.5), ("a", "b"))
    assert single["auroc"] is None
    assert single["intervals"]["auroc"] is None
    assert json.loads(json.dumps(single)) == single


def test_grouping_has_intervals_and_auroc() -> None:
    y_true, probs = _random_case(2)
    grouping = LabelGrouping("binary", ("low", "high"), (0, 0, 1, 1, 1))
    grouped = compute_metrics(y_true, probs, CLASS_NAMES, [grouping])["groupings"]["binary"]
    group_true = (y_true >= 2).astype(int)
    assert grouped["auroc"] == pytest.approx(skm.roc_auc_score(group_true, probs[:, 2:].sum(1)))
    for name in ("accuracy", "balanced_accuracy", "macro_f1"):
        low, high = grouped["intervals"][name]
        assert low <= grouped[name] <= high


def test_top_k_accuracy_only_for_more_than_five_classes() -> None:
    assert "top_k_accuracy" not in compute_metrics(*_random_case(0), CLASS_NAMES)
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 8, size=300)
    probs = rng.dirichlet(np.ones(8), size=300)
    top_k = compute_metrics(y_true, probs, list("abcdefgh"))["top_k_accuracy"]
    for k in (3, 5):
        expected = skm.top_k_accuracy_score(y_true, probs, k=k, labels=range(8))
        assert top_k[str(k)] == pytest.approx(expected)


def test_calibration_of_the_test_probabilities() -> None:
    y_true, probs = _random_case(0, 300)
    calibration = compute_metrics(y_true, probs, CLASS_NAMES)["calibration"]
    assert sum(b["count"] for b in calibration["bins"]) == 300
    assert set(calibration["bins"][0]) == {"lower", "upper", "count", "confidence", "accuracy"}
    ece = sum(b["count"] / 300 * abs(b["accuracy"] - b["confidence"]) for b in calibration["bins"])
    assert calibration["ece"] == pytest.approx(ece)
