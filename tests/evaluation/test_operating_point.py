"""Recall-target operating points: the threshold is the conformal rank of the held-out positives, so new
images of the class reach the target recall on average, and is the largest at that rank; the rule
predicts the class exactly when the threshold is reached; test scores have intervals."""

import numpy as np
import pytest

from transferkit.config import FitConfig, resolve_config
from transferkit.errors import ConfigError
from transferkit.evaluation.metrics import operating_point_metrics
from transferkit.evaluation.operating_point import (
    OperatingPoint,
    RecallTarget,
    attainable_recall,
    choose_threshold,
    decide,
    operating_point,
    resolve_recall_target,
)

CLASSES = ["functional", "defective"]


def _held_out(seed: int, count: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Three classes, the last one rare, with overlapping probabilities."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=count, p=[0.6, 0.3, 0.1])
    logits = rng.normal(0, 1.0, (count, 3))
    logits[np.arange(count), labels] += 1.2
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probabilities, labels


def _recall(probabilities: np.ndarray, labels: np.ndarray, threshold: float, index: int) -> float:
    return float(np.mean(probabilities[labels == index, index] >= threshold))


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95, 1.0])
@pytest.mark.parametrize("seed", range(3))
def test_the_threshold_is_the_conformal_rank_and_the_largest_at_it(target: float, seed: int) -> None:
    probabilities, labels = _held_out(seed)
    threshold = choose_threshold(probabilities, labels, 2, target)
    positives = probabilities[labels == 2, 2]
    needed = min(len(positives), int(np.ceil(target * (len(positives) + 1))))
    assert np.sum(positives >= threshold) >= needed
    assert _recall(probabilities, labels, threshold, 2) >= target  # on the held-out images too
    # Raising the threshold past the least probable image it flags leaves fewer than the rank needs.
    above = positives[positives > positives[positives >= threshold].min()]
    if len(above):
        assert np.sum(positives >= float(above.min())) < needed
    assert np.float32(threshold) == threshold  # float32 probabilities meet it where float64 ones do


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_new_images_of_the_class_reach_the_target_recall_on_average(target: float) -> None:
    """Over many draws of 50 held-out and 200 new images of the class, the mean recall on the new ones
    is the target or more (the conformal guarantee); the share of held-out positives alone falls short."""
    rng = np.random.default_rng(0)
    conformal, held_out_share = [], []
    for _ in range(400):
        scores = rng.beta(4, 2, size=250)  # the class's probabilities: 50 held out, 200 new
        held_out = np.stack([1 - scores[:50], scores[:50]], axis=1)
        threshold = choose_threshold(held_out, np.ones(50, dtype=int), 1, target)
        conformal.append(np.mean(scores[50:] >= threshold))
        share = np.sort(scores[:50])[::-1][int(np.ceil(target * 50)) - 1]
        held_out_share.append(np.mean(scores[50:] >= share))
    assert np.mean(conformal) >= target - 0.003  # 400 draws: the mean is known to about 0.002
    assert np.mean(held_out_share) < target


def test_a_target_of_exactly_k_of_n_plus_one_needs_k_not_k_plus_one() -> None:
    """0.95 x (19 + 1) is 19.000000000000004 in floating point; 19 positives of 19 are enough."""
    probabilities = np.zeros((19, 2))
    probabilities[:, 1] = np.linspace(0.1, 1.0, 19)
    probabilities[:, 0] = 1 - probabilities[:, 1]
    threshold = choose_threshold(probabilities, np.ones(19, dtype=int), 1, 0.95)
    assert threshold == pytest.approx(0.1, abs=1e-6)  # the 19th most probable, every one of them


def test_too_few_positives_for_the_target_find_every_one() -> None:
    """With 10 positives, 0.95 would need the 11th: the least probable of the 10 is the threshold."""
    probabilities = np.zeros((10, 2))
    probabilities[:, 1] = np.linspace(0.3, 0.9, 10)
    probabilities[:, 0] = 1 - probabilities[:, 1]
    assert choose_threshold(probabilities, np.ones(10, dtype=int), 1, 0.95) == pytest.approx(0.3, abs=1e-6)
    # 0.5 needs the ceil(5.5) = 6th most probable of 0.3, 0.367, ..., 0.9: 0.3 + 4 steps of 0.6 / 9
    assert choose_threshold(probabilities, np.ones(10, dtype=int), 1, 0.5) == pytest.approx(
        0.3 + 4 * 0.6 / 9, abs=1e-6
    )


def test_the_point_records_its_positives_and_what_it_promises_new_images() -> None:
    assert attainable_recall(0.95, 19) == pytest.approx(0.95)  # the 19th of 19: 19 / 20
    assert attainable_recall(0.95, 13) == pytest.approx(13 / 14)  # too few: every one, 13 / 14
    assert attainable_recall(0.9, 54) == 0.9
    probabilities, labels = _held_out(0, count=60)
    point = operating_point(RecallTarget("rare", 2, 0.95), probabilities, labels, "val (60 images)")
    assert point.held_out_positives == int(np.sum(labels == 2)) < 19
    assert point.expected_recall == pytest.approx(point.held_out_positives / (point.held_out_positives + 1))
    assert point.to_dict()["expected_recall"] == point.expected_recall
    assert OperatingPoint("rare", 2, 0.2, 0.9, 0.9, "val").expected_recall is None  # an older bundle's


def test_decide_predicts_the_class_exactly_when_its_threshold_is_reached() -> None:
    point = OperatingPoint("rare", 2, 0.2, 0.9, 0.9, "val")
    probabilities = np.array(
        [
            [0.7, 0.1, 0.2],  # reached: rare, though not the most probable
            [0.5, 0.31, 0.19],  # below: the most probable of the others
            [0.1, 0.5, 0.4],
            [0.15, 0.05, 0.8],
        ]
    )
    assert decide(probabilities, point).tolist() == [2, 0, 2, 2]
    high = OperatingPoint("rare", 2, 0.85, 0.5, 0.5, "val")  # above the argmax: the class becomes rarer
    assert decide(probabilities, high).tolist() == [0, 0, 1, 0]
    assert decide(probabilities, None).tolist() == probabilities.argmax(1).tolist()


def test_test_scores_follow_the_rule_and_have_intervals() -> None:
    probabilities, labels = _held_out(0)
    test_probabilities, test_labels = _held_out(1)
    point = operating_point(RecallTarget("rare", 2, 0.9), probabilities, labels, "val (300 images)")
    assert point.held_out_recall >= 0.9
    scores = operating_point_metrics(test_labels, test_probabilities, point)
    predicted = decide(test_probabilities, point)
    flagged = predicted == 2
    assert scores["recall"] == pytest.approx(np.mean(flagged[test_labels == 2]))
    assert scores["precision"] == pytest.approx(np.mean(test_labels[flagged] == 2))
    assert scores["accuracy"] == pytest.approx(np.mean(predicted == test_labels))
    assert scores["flagged"] == pytest.approx(np.mean(flagged))
    for name in ("recall", "precision", "accuracy"):
        low, high = scores["intervals"][name]
        assert low <= scores[name] <= high
    assert scores["point"]["threshold"] == point.threshold


def test_a_recall_of_every_rare_image_keeps_a_wide_interval() -> None:
    """3 rare test images, all flagged: recall 100 %, and its Wilson interval reaches below 50 %."""
    probabilities = np.array([[0.8, 0.1, 0.1]] * 20 + [[0.1, 0.1, 0.8]] * 3)
    labels = np.array([0] * 20 + [2] * 3)
    point = OperatingPoint("rare", 2, 0.5, 1.0, 1.0, "val")
    scores = operating_point_metrics(labels, probabilities, point)
    assert scores["recall"] == 1.0 and scores["precision"] == 1.0
    assert scores["intervals"]["recall"][0] < 0.5 and scores["intervals"]["recall"][1] == 1.0
    assert scores["flagged"] == pytest.approx(3 / 23)


def test_the_recall_target_names_a_class_of_the_data() -> None:
    assert resolve_recall_target(("defective", 0.95), CLASSES) == RecallTarget("defective", 1, 0.95)
    assert resolve_recall_target(None, CLASSES) is None
    with pytest.raises(ConfigError, match=r"decision.recall_target.*'broken'.*'functional', 'defective'"):
        resolve_recall_target(("broken", 0.95), CLASSES)


@pytest.mark.parametrize(
    "text", ["defective", "defective:0", "defective:1.01", "defective:-0.5", ":0.9", "x:high"]
)
def test_a_malformed_recall_target_is_a_config_error_naming_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match=r"decision.recall_target.*--recall-target.*\(0, 1\]"):
        resolve_config(recall_target=text)


def test_class_names_with_colons_and_a_target_of_one() -> None:
    config = FitConfig.from_dict({"decision": {"recall_target": "p=1:1"}})
    assert config.decision.recall() == ("p=1", 1.0)
    assert resolve_config(recall_target="a:b:0.5").decision.recall() == ("a:b", 0.5)


def test_a_bundle_operating_point_must_fit_its_labels() -> None:
    point = OperatingPoint("defective", 1, 0.3, 0.95, 0.96, "val")
    assert OperatingPoint.from_dict(point.to_dict(), CLASSES) == point
    with pytest.raises(ValueError, match="is not output 1"):
        OperatingPoint.from_dict(point.to_dict(), ["functional", "broken"])
