"""The pool to pick from: unlabelled images, less those already labelled, their copies and bad files.

Copies are found by the data check's duplicate finder (`check_data`: same bytes or pixels, or a near
match in difference hash and thumbnail), run over the labelled images and the pool together, so an
image whose copy is in train, val or test is never suggested, and of several copies inside the pool
only the first may be.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from transferkit.active.paths import image_key, unique_paths
from transferkit.config import FitConfig
from transferkit.data.checks import CheckCache, DataReport, check_data
from transferkit.data.load import load_source, split_with_budget
from transferkit.data.source import ImageSource
from transferkit.data.splits import Splits, with_unlabeled
from transferkit.data.unlabeled import load_unlabeled
from transferkit.errors import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exclusion:
    """A pool image that will not be suggested, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Pool:
    """Labelled and pool images as one source, so one decode and one duplicate check cover both.

    Attributes:
        source: every labelled record the run knows, the extra labelled files, then the pool files.
        labelled: indices of the labelled images the model learned from (train, val, --labelled):
            the coverage that coreset and typiclust extend and the "nearest labelled" of each pick.
        eligible: indices of the pool images that may be suggested, in the pool's order.
        excluded: pool images left out, with the reason.
        split_of: the split each labelled index is in ("train", "val", "test", "labelled").
    """

    source: ImageSource
    labelled: list[int]
    eligible: list[int]
    excluded: list[Exclusion]
    split_of: dict[int, str]


@dataclass(frozen=True)
class Labelled:
    """Labelled images with their splits: a run's dataset, or files named with --labelled."""

    source: ImageSource
    splits: Splits


def run_labelled(run_dir: Path) -> Labelled | None:
    """The run's dataset split as the run split it (from its config.yaml); None for a bundle folder."""
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        logger.warning(
            "%s has no config.yaml (a bundle, not a run directory): copies of its training images cannot be "
            "recognised; name them with --labelled.",
            run_dir,
        )
        return None
    data = FitConfig.of_run(config_path).data
    try:
        source = load_source(data)
    except DataError as err:
        raise DataError(
            f"Cannot read the dataset the run {run_dir} was trained on ({err}). Suggestions must avoid its "
            "images: restore it, or pass the bundle folder (RUN/model) and name labelled images with "
            "--labelled."
        ) from err
    return Labelled(source, split_with_budget(source, data))


def build_pool(
    pool_spec: str,
    labelled: Labelled | None,
    labelled_specs: list[str],
    channels: int,
    cache: CheckCache | None = None,
) -> Pool:
    """The pool of `pool_spec` (folder or manifest) checked against every labelled image.

    Args:
        pool_spec: a folder of images (searched recursively) or a manifest with a path column.
        labelled: the run's dataset, if any.
        labelled_specs: more folders or manifests of images already labelled (e.g. labels.csv).
        channels: channels the model reads the images with.
        cache: where the data check of files checked before is read back (None: every file is decoded).
    """
    base, splits = _labelled_records(labelled, channels)
    in_run = {image_key(record.path) for record in base.records}
    named = [path for spec in labelled_specs for path in load_unlabeled(spec)]
    extra = unique_paths([path for path in named if image_key(path) not in in_run])
    pool_paths = load_unlabeled(pool_spec)
    known = in_run | {image_key(path) for path in extra}
    fresh = unique_paths([path for path in pool_paths if image_key(path) not in known])
    excluded = [Exclusion(path, "already labelled") for path in pool_paths if image_key(path) in known]
    source = with_unlabeled(base, [*extra, *fresh])
    extra_indices = list(range(len(base.records), len(base.records) + len(extra)))
    pool_indices = list(range(len(base.records) + len(extra), len(source.records)))
    splits = Splits(splits.train + extra_indices, splits.val, splits.test, pool_indices)
    report = check_data(source, splits, cache)
    split_of = {i: name for name, indices in splits.items() for i in indices}
    split_of.update({i: "labelled" for i in extra_indices})
    dropped = _copies_and_bad_files(report, set(pool_indices), split_of)
    excluded += [Exclusion(source.records[i].path, reason) for i, reason in sorted(dropped.items())]
    eligible = [i for i in pool_indices if i not in dropped]
    if not eligible:
        raise DataError(
            f"Every image of {pool_spec} is already labelled, a copy of a labelled image, or unreadable "
            f"({len(excluded)} left out): add new images to the pool."
        )
    return Pool(source, splits.train + splits.val, eligible, excluded, split_of)


def _labelled_records(labelled: Labelled | None, channels: int) -> tuple[ImageSource, Splits]:
    """The labelled records alone (images a label budget hid are neither labelled nor in the pool)."""
    if labelled is None:
        return ImageSource("labelled", [], [], channels=channels), Splits([], [], [])
    kept = [i for _, indices in labelled.splits.items() for i in indices]
    position = {old: new for new, old in enumerate(kept)}
    source = replace(labelled.source, records=[labelled.source.records[i] for i in kept], channels=channels)
    train, val, test = ([position[i] for i in indices] for _, indices in labelled.splits.items())
    return source, Splits(train, val, test)


def _copies_and_bad_files(report: DataReport, pool: set[int], split_of: dict[int, str]) -> dict[int, str]:
    """Pool indices to leave out, with the reason: unreadable, or a copy of a labelled or earlier image."""
    dropped = {bad.index: f"unreadable ({bad.reason})" for bad in report.bad_images if bad.index in pool}
    for group in report.duplicates:
        path_of = dict(zip(group.indices, group.paths, strict=True))
        members = [i for i in group.indices if i not in dropped]
        labelled = [i for i in members if i not in pool]
        pooled = [i for i in members if i in pool]
        if labelled:
            original = labelled[0]
            reason = f"{group.kind} copy of {path_of[original]} ({split_of.get(original, '')})"
            dropped.update({i: reason for i in pooled})
        elif len(pooled) > 1:
            first = min(pooled)
            reason = f"{group.kind} copy of {path_of[first]}, also in the pool"
            dropped.update({i: reason for i in pooled if i != first})
    return dropped
