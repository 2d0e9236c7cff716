"""Transferability estimation: which pretrained model to start from, from one forward pass each.

Scores (higher is better), each registered in `transferability_scores`:
    logme   log marginal evidence of a linear model on the features (You et al., ICML 2021)
    hscore  between-class over total feature covariance (Bao et al., ICIP 2019)
    leep    log expected empirical prediction of the source head (Nguyen et al., ICML 2020)
    nce     negative conditional entropy of target given source labels (Tran et al., ICCV 2019)
    sfda    class separation by a shrunk Fisher discriminant, hard images made harder (Shao et al., ECCV 2022)
    knn     leave-one-out k-nearest-neighbour accuracy on the features (Renggli et al., WACV 2022)

    >>> from transferkit.ranking import rank
    >>> ranking = rank("digits", ["efficientnet_lite0", "efficientnet_lite1"])  # doctest: +SKIP
    >>> ranking.candidates[0].label  # doctest: +SKIP
"""

# Importing a score module registers it.
from transferkit.ranking import hscore as _hscore  # noqa: F401
from transferkit.ranking import knn as _knn  # noqa: F401
from transferkit.ranking import leep as _leep  # noqa: F401
from transferkit.ranking import logme as _logme  # noqa: F401
from transferkit.ranking import nce as _nce  # noqa: F401
from transferkit.ranking import sfda as _sfda  # noqa: F401
from transferkit.ranking.base import (
    ScoreInputs,
    TransferabilityScore,
    register_score,
    resolve_methods,
    transferability_scores,
)
from transferkit.ranking.candidates import Candidate, RankSettings
from transferkit.ranking.feature_cache import CachedFeatures, FeatureCache, cached_features, features_key
from transferkit.ranking.hscore import hscore
from transferkit.ranking.knn import knn_accuracy
from transferkit.ranking.leep import leep
from transferkit.ranking.logme import logme
from transferkit.ranking.nce import nce
from transferkit.ranking.ranking import CandidateResult, Ranking, rank
from transferkit.ranking.report import create_ranking_dir, plot_score_against_speed, write_ranking
from transferkit.ranking.sfda import sfda

__all__ = [
    "CachedFeatures",
    "Candidate",
    "CandidateResult",
    "FeatureCache",
    "RankSettings",
    "Ranking",
    "ScoreInputs",
    "TransferabilityScore",
    "cached_features",
    "create_ranking_dir",
    "features_key",
    "hscore",
    "knn_accuracy",
    "leep",
    "logme",
    "nce",
    "plot_score_against_speed",
    "rank",
    "register_score",
    "resolve_methods",
    "sfda",
    "transferability_scores",
    "write_ranking",
]
