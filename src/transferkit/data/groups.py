"""Images that belong together: a manifest's groups (one patient, one module) and copies of one file.

Split apart, they let a test score partly measure memory; the splits and folds transferkit makes keep
each together (``data.keep_together``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from transferkit.data.source import ImageRecord, ImageSource
from transferkit.errors import DataError
from transferkit.files import sha256_of_file


def with_copies_together(source: ImageSource) -> ImageSource:
    """The source where files of identical bytes share a group, with every image of the groups they
    belonged to. Images a source loads itself (digits, Hugging Face sets) have no file to compare."""
    if source.loader is not None:
        return source
    digests = [_content(record.path) for record in source.records]
    linked = _linked(source.records, digests)
    copied = [members for members in linked if len({digests[i] for i in members}) < len(members)]
    if not copied:
        return source
    records = list(source.records)
    for members in copied:
        named = sorted({records[i].group for i in members} - {""})
        first = members[0]  # a file name alone may repeat across folders: the digest tells sets apart
        group = " + ".join(named) or f"copies of {Path(records[first].path).name} ({digests[first][:12]})"
        for index in members:
            records[index] = replace(records[index], group=group)
    note = (
        f"{len(digests) - len(set(digests))} file(s) are byte-for-byte copies of others: transferkit's "
        "splits and folds keep each image with its copies (and their groups)."
    )
    return replace(source, records=records, notes=[*source.notes, note])


def _content(path: str) -> str:
    # Missing and empty files are left out of training anyway: each counts as unlike any other.
    file = Path(path)
    return sha256_of_file(file) if file.is_file() and file.stat().st_size else f"no content: {path}"


def _linked(records: Sequence[ImageRecord], digests: Sequence[str]) -> list[list[int]]:
    """The records joined by a shared group or a shared digest, as connected components (union-find)."""
    parent = list(range(len(records)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    first: dict[str, int] = {}
    for index, (record, digest) in enumerate(zip(records, digests, strict=True)):
        keys = [f"file {digest}"] + ([f"group {record.group}"] if record.group else [])
        for key in keys:
            parent[root(index)] = root(first.setdefault(key, index))
    members: dict[int, list[int]] = {}
    for index in range(len(records)):
        members.setdefault(root(index), []).append(index)
    return list(members.values())


def split_keeping_groups(
    records: Sequence[ImageRecord], indices: Sequence[int], part: int, seed: int, key: str
) -> tuple[list[int], list[int]]:
    """(rest, about `part` of `indices`) where the images of one `group` always stay on one side.

    Groups are visited in a seeded random order: first a group joins the part while that brings the
    part's class counts closer to their share, then the groups of the classes furthest below their share
    fill it up to its size. A group never takes a class's last image from the rest.
    """
    blocks: dict[str, list[int]] = {}
    for position, record in enumerate(records):
        blocks.setdefault(record.group or f"\0{position}", []).append(position)  # no group: on its own
    shuffled = list(blocks.values())
    groups = [shuffled[i] for i in np.random.default_rng(seed).permutation(len(shuffled))]
    part_so_far = _Part(records, part)
    for block in groups:
        if part_so_far.may_take(block) and part_so_far.closer_to_share(block):
            part_so_far.take(block)
    passed = [block for block in groups if block[0] not in part_so_far.positions]
    for block in sorted(passed, key=part_so_far.shortfall, reverse=True):
        if part_so_far.may_take(block) and part_so_far.closer_to_size(block):
            part_so_far.take(block)
    if not part_so_far.positions:
        raise DataError(
            f"{len(records)} image(s) in {len(blocks)} group(s) cannot be split with {key}: the images of "
            "one group stay on one side. Add groups, or give the source its own split (a split column)."
        )
    rest = [indices[p] for p in range(len(records)) if p not in part_so_far.positions]
    return rest, [indices[p] for p in sorted(part_so_far.positions)]


class _Part:
    """The part being filled: its class counts against their share, and what the rest keeps."""

    def __init__(self, records: Sequence[ImageRecord], size: int) -> None:
        self.labels = [record.label for record in records]
        self.size = size
        self.left = Counter(self.labels)
        self.share = {label: count * size / len(records) for label, count in self.left.items()}
        self.taken: Counter[int] = Counter()
        self.positions: set[int] = set()

    def counts(self, block: list[int]) -> Counter[int]:
        return Counter(self.labels[position] for position in block)

    def may_take(self, block: list[int]) -> bool:
        return all(self.left[label] > count for label, count in self.counts(block).items())

    def closer_to_share(self, block: list[int]) -> bool:
        taken, share = self.taken, self.share
        return (
            sum(
                (taken[label] - share[label]) ** 2 - (taken[label] + count - share[label]) ** 2
                for label, count in self.counts(block).items()
            )
            > 0
        )

    def closer_to_size(self, block: list[int]) -> bool:
        return abs(len(self.positions) + len(block) - self.size) < abs(len(self.positions) - self.size)

    def shortfall(self, block: list[int]) -> float:
        return sum(self.share[self.labels[p]] - self.taken[self.labels[p]] for p in block)

    def take(self, block: list[int]) -> None:
        counts = self.counts(block)
        self.positions.update(block)
        self.taken.update(counts)
        self.left.subtract(counts)
