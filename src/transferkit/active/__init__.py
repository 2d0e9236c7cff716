"""Active learning: which unlabelled images to label next (`transferkit suggest`).

    >>> from transferkit.active import suggest
    >>> picks = suggest("runs/my-run", pool="photos/", budget=20, out="to_label.csv")  # doctest: +SKIP

`selection` holds the methods (margin, entropy, badge, coreset, typiclust, random), `pool` what may be
picked (no labelled image or copy of one), `scorer` the model's features and probabilities, `labels` the
labels.csv that `transferkit label` writes.
"""

from transferkit.active.selection import (
    Picks,
    SelectionInputs,
    SelectionMethod,
    register_method,
    select,
    selection_methods,
)
from transferkit.active.suggest import COLD_START_METHOD, DEFAULT_METHOD, Suggestion, Suggestions, suggest

__all__ = [
    "COLD_START_METHOD",
    "DEFAULT_METHOD",
    "Picks",
    "SelectionInputs",
    "SelectionMethod",
    "Suggestion",
    "Suggestions",
    "register_method",
    "select",
    "selection_methods",
    "suggest",
]
