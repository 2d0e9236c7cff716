"""Selection methods: which `budget` pool images to label next, informative and unlike each other.

Every method is a function ``(SelectionInputs, budget, rng) -> Picks`` registered in
`selection_methods` with whether it needs the model's class probabilities (a fitted run) or only
features (a cold start from a pretrained model). Features arrive L2-normalised, so squared distances
are 2 - 2 cos and lie in [0, 4].

    margin, entropy   uncertainty, made diverse: the most uncertain images pre-filtered, then one per
                      k-means cluster (Zhdanov 2019, "Diverse mini-batch active learning")
    badge             k-means++ seeding on gradient embeddings (Ash et al., ICLR 2020)
    coreset           k-center greedy on features (Sener & Savarese, ICLR 2018)
    typiclust         the most typical image of each uncovered k-means cluster (Hacohen et al., ICML 2022)
    random            uniform without replacement: the baseline every method must beat
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from transferkit.active.scores import uncertainty_scores
from transferkit.errors import ConfigError
from transferkit.registry import Registry

PREFILTER = 10  # margin/entropy: candidates per image to pick, before the diversity step (Zhdanov's beta)
TYPICALITY_NEIGHBOURS = 20  # Hacohen et al.: typicality from the 20 nearest neighbours
MAX_CLUSTERS = 500  # typiclust: more clusters than this only slows k-means (the paper caps them too)


@dataclass(frozen=True)
class SelectionInputs:
    """What a selection method sees.

    Attributes:
        pool: L2-normalised features of the images that may be picked, (N, D).
        labelled: L2-normalised features of the images already labelled, (M, D); M may be 0.
        probabilities: the model's class probabilities on the pool, (N, C); None for a cold start.
    """

    pool: np.ndarray
    labelled: np.ndarray
    probabilities: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.labelled.size and self.labelled.shape[1] != self.pool.shape[1]:
            raise ValueError(f"pool features are {self.pool.shape}, labelled {self.labelled.shape}.")
        if self.probabilities is not None and len(self.probabilities) != len(self.pool):
            raise ValueError(f"{len(self.probabilities)} probability rows for {len(self.pool)} pool images.")


@dataclass(frozen=True)
class Picks:
    """Pool indices in the order picked, with the score each was picked by (what `score_name` says)."""

    indices: np.ndarray
    scores: np.ndarray
    score_name: str


Select = Callable[[SelectionInputs, int, np.random.Generator], Picks]


@dataclass(frozen=True)
class SelectionMethod:
    """A registered method: `needs_model` when it reads the model's probabilities."""

    name: str
    select: Select
    needs_model: bool
    summary: str


selection_methods: Registry[SelectionMethod] = Registry("selection method")


def register_method(name: str, *, needs_model: bool, summary: str) -> Callable[[Select], Select]:
    """Registers a selection function under `name`."""

    def decorate(select: Select) -> Select:
        selection_methods.add(name, SelectionMethod(name, select, needs_model, summary))
        return select

    return decorate


def select(method: str, inputs: SelectionInputs, budget: int, seed: int = 0) -> Picks:
    """Picks `budget` pool images (all of them when the pool is smaller) with the named method."""
    chosen = selection_methods.get(method)
    if chosen.needs_model and inputs.probabilities is None:
        raise ConfigError(
            f"The {method} method ranks images by the model's uncertainty and needs a fitted model; "
            f"without one use {', '.join(cold_start_methods())}."
        )
    if budget < 1:
        raise ConfigError(f"budget must be at least 1, got {budget}.")
    budget = min(budget, len(inputs.pool))
    if budget == 0:
        return Picks(np.empty(0, dtype=np.int64), np.empty(0), "none")
    return chosen.select(inputs, budget, np.random.default_rng(seed))


def cold_start_methods() -> list[str]:
    """Methods that need features only."""
    return [name for name in selection_methods if not selection_methods.get(name).needs_model]


def l2_normalised(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return np.divide(features, norms, out=np.zeros_like(features), where=norms > 0)


def squared_distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """||points_i - centres_j||^2, (N, K), never below 0 (rounding)."""
    products = points @ centres.T
    norms = (points * points).sum(1)[:, None] + (centres * centres).sum(1)[None, :]
    return np.maximum(norms - 2 * products, 0.0)


@register_method("margin", needs_model=True, summary="smallest top-two margin, one per k-means cluster")
def diverse_margin(inputs: SelectionInputs, budget: int, rng: np.random.Generator) -> Picks:
    return _diverse_uncertain(inputs, budget, rng, "margin")


@register_method("entropy", needs_model=True, summary="highest entropy, one per k-means cluster")
def diverse_entropy(inputs: SelectionInputs, budget: int, rng: np.random.Generator) -> Picks:
    return _diverse_uncertain(inputs, budget, rng, "entropy")


def _diverse_uncertain(inputs: SelectionInputs, budget: int, rng: np.random.Generator, score: str) -> Picks:
    """Top `PREFILTER * budget` by uncertainty, k-means with `budget` clusters weighted by uncertainty,
    then the candidate nearest each centre: near-duplicates share a cluster, so at most one is picked."""
    assert inputs.probabilities is not None  # checked by `select`
    uncertainty = uncertainty_scores.get(score)(inputs.probabilities)
    order = np.argsort(-uncertainty, kind="stable")
    candidates = order[: PREFILTER * budget]
    if len(candidates) <= budget:
        return Picks(candidates, uncertainty[candidates], f"{score} uncertainty")
    features = inputs.pool[candidates]
    weights = uncertainty[candidates] + 1e-6  # a zero weight would leave a cluster without a centre
    centres = _kmeans(features, budget, rng, weights).cluster_centers_
    chosen = _nearest_distinct(features, centres)
    # Most uncertain first, so a user who labels only the top of the list gets the best of it.
    picked = candidates[chosen]
    picked = picked[np.argsort(-uncertainty[picked], kind="stable")]
    return Picks(picked, uncertainty[picked], f"{score} uncertainty")


@register_method("badge", needs_model=True, summary="k-means++ on gradient embeddings (Ash et al. 2020)")
def badge(inputs: SelectionInputs, budget: int, rng: np.random.Generator) -> Picks:
    """BADGE: k-means++ seeding on g_i = (p_i - onehot(argmax p_i)) (x) f_i, the gradient of the loss at
    the predicted label with respect to the last layer. Large gradients are uncertain images, the
    D^2 sampling makes them diverse.

    The embedding (N, C * D) is never built: <g_i, g_j> = <a_i, a_j> <f_i, f_j> with a = p - onehot.

    Shape:
        probabilities (N, C), pool features (N, D). Scores: ||g_i|| of each pick.
    """
    assert inputs.probabilities is not None  # checked by `select`
    residual = inputs.probabilities.astype(np.float64).copy()
    residual[np.arange(len(residual)), residual.argmax(1)] -= 1.0
    features = inputs.pool.astype(np.float64)
    norms = (residual * residual).sum(1) * (features * features).sum(1)

    def distances_to(index: int) -> np.ndarray:
        inner = (residual @ residual[index]) * (features @ features[index])
        return np.maximum(norms + norms[index] - 2 * inner, 0.0)

    first = int(np.argmax(norms))  # as in the paper: the largest gradient starts
    picked, nearest = [first], distances_to(first)
    while len(picked) < budget:
        total = nearest.sum()
        if total <= 1e-12:  # everything left is a copy of a pick: fall back to the largest gradients
            rest = np.setdiff1d(np.argsort(-norms, kind="stable"), picked)[: budget - len(picked)]
            picked += rest.tolist()
            break
        index = int(rng.choice(len(nearest), p=nearest / total))
        picked.append(index)
        nearest = np.minimum(nearest, distances_to(index))
    indices = np.array(picked, dtype=np.int64)
    return Picks(indices, np.sqrt(norms[indices]), "gradient norm")


@register_method("coreset", needs_model=False, summary="k-center greedy on features (Sener & Savarese 2018)")
def coreset(inputs: SelectionInputs, budget: int, rng: np.random.Generator) -> Picks:
    """k-center greedy: each pick is the pool image farthest from every labelled or picked image, so the
    labelled set covers the pool with the smallest radius. Without labels, the image nearest the pool's
    mean starts. Scores: the distance to the nearest labelled or picked image when picked."""
    pool = inputs.pool
    if len(inputs.labelled):
        nearest = squared_distances(pool, inputs.labelled).min(axis=1)
        picked: list[int] = []
    else:
        first = int(np.argmin(squared_distances(pool, pool.mean(0, keepdims=True))[:, 0]))
        picked, nearest = [first], squared_distances(pool, pool[first : first + 1])[:, 0]
    scores = [float("nan")] * len(picked)
    nearest[picked] = -1.0  # never again, even when every distance left is 0 (copies of labels)
    while len(picked) < budget:
        index = int(np.argmax(nearest))
        picked.append(index)
        scores.append(float(np.sqrt(max(nearest[index], 0.0))))
        nearest = np.minimum(nearest, squared_distances(pool, pool[index : index + 1])[:, 0])
        nearest[picked] = -1.0
    return Picks(np.array(picked, dtype=np.int64), np.array(scores), "distance to labelled")


@register_method(
    "typiclust", needs_model=False, summary="most typical image per uncovered cluster (Hacohen 2022)"
)
def typiclust(inputs: SelectionInputs, budget: int, rng: np.random.Generator) -> Picks:
    """TypiClust: k-means on pool and labelled images with |labelled| + budget clusters; repeatedly the
    largest cluster without a labelled or picked image gives its most typical image, typicality being
    1 / mean distance to the image's nearest neighbours in the cluster. Suits tiny budgets and cold starts.
    Scores: typicality of each pick."""
    everything = np.concatenate([inputs.pool, inputs.labelled]) if len(inputs.labelled) else inputs.pool
    clusters = min(len(inputs.labelled) + budget, MAX_CLUSTERS, len(everything))
    assignment = _kmeans(everything, clusters, rng).labels_
    pool_clusters, covered = assignment[: len(inputs.pool)], set(assignment[len(inputs.pool) :].tolist())
    sizes = np.bincount(pool_clusters, minlength=clusters)
    picked: list[int] = []
    scores: list[float] = []
    available = np.ones(len(inputs.pool), dtype=bool)
    while len(picked) < budget:
        # With more picks than clusters, every cluster is covered at some point: start a second round.
        uncovered = [
            c for c in range(clusters) if c not in covered and (available & (pool_clusters == c)).any()
        ]
        if not uncovered:
            covered.clear()
            uncovered = [c for c in range(clusters) if (available & (pool_clusters == c)).any()]
        cluster = max(uncovered, key=lambda c: (sizes[c], -c))
        members = np.flatnonzero((pool_clusters == cluster) & available)
        typicality = _typicality(inputs.pool[np.flatnonzero(pool_clusters == cluster)], inputs.pool[members])
        best = int(np.argmax(typicality))
        picked.append(int(members[best]))
        scores.append(float(typicality[best]))
        available[members[best]] = False
        covered.add(cluster)
    return Picks(np.array(picked, dtype=np.int64), np.array(scores), "typicality")


@register_method("random", needs_model=False, summary="uniformly at random: the baseline")
def random_pick(inputs: SelectionInputs, budget: int, rng: np.random.Generator) -> Picks:
    indices = rng.choice(len(inputs.pool), size=budget, replace=False).astype(np.int64)
    return Picks(indices, np.full(budget, np.nan), "none")


def _typicality(cluster: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """1 / mean distance of each candidate to its nearest neighbours among `cluster` (itself excluded)."""
    distances = np.sqrt(squared_distances(candidates, cluster))
    neighbours = min(TYPICALITY_NEIGHBOURS, len(cluster) - 1)
    if neighbours < 1:
        return np.ones(len(candidates))
    # Each candidate is in `cluster` at distance 0: skip the first (smallest) column.
    nearest = np.sort(distances, axis=1)[:, 1 : neighbours + 1]
    return 1.0 / (nearest.mean(axis=1) + 1e-8)


def _kmeans(
    features: np.ndarray, clusters: int, rng: np.random.Generator, weights: np.ndarray | None = None
) -> KMeans:
    seed = int(rng.integers(2**31 - 1))
    with warnings.catch_warnings():
        # Fewer distinct points than clusters (copies in a tiny pool): some clusters stay empty, as intended.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KMeans(clusters, n_init=1, max_iter=100, random_state=seed).fit(
            features, sample_weight=weights
        )


def _nearest_distinct(features: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """For each centre, the nearest feature row not already taken by an earlier centre."""
    distances = squared_distances(features, centres)
    taken: set[int] = set()
    chosen = []
    for centre in range(len(centres)):
        for row in np.argsort(distances[:, centre], kind="stable"):
            if int(row) not in taken:
                taken.add(int(row))
                chosen.append(int(row))
                break
    return np.array(chosen, dtype=np.int64)
