"""Selection methods on synthetic features whose structure says what a correct method must pick."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.active import SelectionInputs, select, selection_methods
from transferkit.active.scores import entropy_uncertainty, least_confidence, margin_uncertainty
from transferkit.active.selection import l2_normalised
from transferkit.errors import ConfigError, UnknownNameError

DIM = 16


def _blobs(rng: np.random.Generator, centres: np.ndarray, per_blob: int, spread: float) -> np.ndarray:
    return np.concatenate([centre + spread * rng.normal(size=(per_blob, DIM)) for centre in centres])


def _unit_directions(count: int) -> np.ndarray:
    return np.eye(DIM)[:count] * 10.0


def test_uncertainty_scores_order_confident_below_ambiguous() -> None:
    probabilities = np.array([[1.0, 0.0, 0.0], [0.6, 0.3, 0.1], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    margin = margin_uncertainty(probabilities)
    np.testing.assert_allclose(margin, [0.0, 0.7, 1.0, 1.0])
    entropy = entropy_uncertainty(probabilities)
    assert entropy[0] == pytest.approx(0.0, abs=1e-9) and entropy[3] == pytest.approx(1.0)
    assert entropy[2] == pytest.approx(np.log(2) / np.log(3))
    assert 0 < entropy[2] < entropy[1] < entropy[3]
    np.testing.assert_allclose(least_confidence(probabilities), [0.0, 0.6, 0.75, 1.0])


def test_margin_picks_the_ambiguous_images() -> None:
    rng = np.random.default_rng(0)
    features = l2_normalised(rng.normal(size=(200, DIM)))
    confident = np.tile([0.98, 0.01, 0.01], (200, 1))
    ambiguous = rng.choice(200, size=12, replace=False)
    confident[ambiguous] = [0.45, 0.44, 0.11]
    picks = select("margin", SelectionInputs(features, np.empty((0, DIM)), confident), budget=8)
    assert len(picks.indices) == 8 and set(picks.indices.tolist()) <= set(ambiguous.tolist())
    assert np.all(picks.scores > 0.9)


@pytest.mark.parametrize("method", ["margin", "entropy", "badge"])
def test_uncertainty_methods_pick_no_two_near_duplicates(method: str) -> None:
    """Ten near-copies of the most uncertain image: plain top-k would pick them all, a diverse method one."""
    rng = np.random.default_rng(1)
    centres = _unit_directions(8)
    features = _blobs(rng, centres, per_blob=25, spread=1.0)
    probabilities = np.tile([0.9, 0.05, 0.05], (len(features), 1))
    probabilities[::7] = [0.5, 0.35, 0.15]  # moderately uncertain images in every blob
    copies = centres[0] * 0.3 + 0.001 * rng.normal(size=(10, DIM))
    features = np.concatenate([features, copies])
    probabilities = np.concatenate([probabilities, np.tile([0.34, 0.33, 0.33], (10, 1))])
    inputs = SelectionInputs(l2_normalised(features), np.empty((0, DIM)), probabilities)
    picks = select(method, inputs, budget=6, seed=0)
    chosen_copies = [i for i in picks.indices.tolist() if i >= len(features) - 10]
    assert len(chosen_copies) <= 1, f"{method} picked {len(chosen_copies)} near-duplicates"
    assert len(set(picks.indices.tolist())) == 6


def test_coreset_covers_the_far_clusters_first() -> None:
    rng = np.random.default_rng(2)
    centres = _unit_directions(5)
    features = l2_normalised(_blobs(rng, centres, per_blob=40, spread=0.5))
    labelled = features[:40][:3]  # three labels, all in blob 0
    pool = features[40:]  # blobs 1..4, none labelled
    picks = select("coreset", SelectionInputs(pool, labelled), budget=4)
    blobs = sorted((picks.indices // 40).tolist())
    assert blobs == [0, 1, 2, 3], "each of the four unlabelled blobs gets one image"
    assert np.all(np.diff(picks.scores) <= 1e-6), "each pick is no farther than the one before"


def test_typiclust_picks_typical_images_of_uncovered_clusters() -> None:
    rng = np.random.default_rng(3)
    centres = _unit_directions(4)
    dense = _blobs(rng, centres, per_blob=50, spread=0.3)
    outliers = 10.0 * rng.normal(size=(8, DIM))  # far from everything: atypical
    features = l2_normalised(np.concatenate([dense, outliers]))
    labelled = l2_normalised(centres[:1] + 0.3 * rng.normal(size=(2, DIM)))  # blob 0 is covered
    picks = select("typiclust", SelectionInputs(features, labelled), budget=3, seed=0)
    assert sorted((picks.indices // 50).tolist()) == [1, 2, 3], "one per uncovered blob, no outlier"
    for index in picks.indices.tolist():
        blob = features[(index // 50) * 50 : (index // 50 + 1) * 50]
        distance_to_mean = np.linalg.norm(features[index] - blob.mean(0))
        typical = np.median(np.linalg.norm(blob - blob.mean(0), axis=1))
        assert distance_to_mean < typical, "the pick lies nearer its blob's centre than most members"


def test_cold_start_methods_work_without_probabilities() -> None:
    rng = np.random.default_rng(4)
    features = l2_normalised(_blobs(rng, _unit_directions(6), per_blob=10, spread=0.2))
    for method in ("coreset", "typiclust", "random"):
        picks = select(method, SelectionInputs(features, np.empty((0, DIM))), budget=6, seed=0)
        assert len(set(picks.indices.tolist())) == 6
        if method != "random":  # representative methods reach every blob with one pick each
            assert sorted((picks.indices // 10).tolist()) == list(range(6)), method


def test_methods_that_need_a_model_say_so_without_one() -> None:
    features = l2_normalised(np.random.default_rng(5).normal(size=(20, DIM)))
    for method in ("margin", "entropy", "badge"):
        assert selection_methods.get(method).needs_model
        with pytest.raises(ConfigError, match="typiclust"):
            select(method, SelectionInputs(features, np.empty((0, DIM))), budget=3)
    with pytest.raises(UnknownNameError, match="coreset"):
        select("corset", SelectionInputs(features, np.empty((0, DIM))), budget=3)


@pytest.mark.parametrize("method", ["margin", "entropy", "badge", "coreset", "typiclust", "random"])
def test_budget_larger_than_the_pool_takes_every_image_once(method: str) -> None:
    rng = np.random.default_rng(6)
    features = l2_normalised(rng.normal(size=(7, DIM)))
    probabilities = rng.dirichlet(np.ones(3), size=7)
    picks = select(method, SelectionInputs(features, features[:2], probabilities), budget=20, seed=1)
    assert sorted(picks.indices.tolist()) == list(range(7))


def test_the_same_seed_picks_the_same_images() -> None:
    rng = np.random.default_rng(7)
    features = l2_normalised(rng.normal(size=(120, DIM)))
    probabilities = rng.dirichlet(np.ones(4), size=120)
    inputs = SelectionInputs(features, features[:0], probabilities)
    for method in selection_methods:
        first, again = select(method, inputs, 10, seed=3), select(method, inputs, 10, seed=3)
        np.testing.assert_array_equal(first.indices, again.indices)


def test_a_new_method_is_one_function_and_one_registration() -> None:
    from transferkit.active import Picks, register_method

    @register_method("first-n", needs_model=False, summary="the first images, for this test")
    def first_n(inputs: SelectionInputs, budget: int, rng: np.random.Generator) -> Picks:
        return Picks(np.arange(budget), np.zeros(budget), "none")

    try:
        features = l2_normalised(np.random.default_rng(8).normal(size=(9, DIM)))
        picks = select("first-n", SelectionInputs(features, features[:0]), budget=4)
        assert picks.indices.tolist() == [0, 1, 2, 3]
        with pytest.raises(ValueError, match="twice"):
            register_method("first-n", needs_model=False, summary="again")(first_n)
    finally:
        selection_methods.remove("first-n")
