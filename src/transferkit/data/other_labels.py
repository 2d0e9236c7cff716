"""Another label of the same images (ELPV's module type, a manifest's further column): the classes an
auxiliary head learns beside the task, and each image's class among them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from transferkit.data.source import ImageSource
from transferkit.errors import DataError

MISSING = -1  # an image without this label: the auxiliary loss leaves it out


@dataclass(frozen=True)
class AuxiliaryLabels:
    """Attributes:
    name: the label's name, as ``data.aux_label`` gives it.
    class_names: its sorted values.
    targets: each source record's class, (records,), `MISSING` where the image has no value.
    """

    name: str
    class_names: list[str]
    targets: torch.Tensor

    def of(self, indices: Sequence[int]) -> torch.Tensor:
        """The classes of the records `indices` (a split's), in that order."""
        return self.targets[torch.as_tensor(list(indices), dtype=torch.long)]


def auxiliary_labels(source: ImageSource, name: str) -> AuxiliaryLabels:
    """The other label `name` of `source`'s images.

    Raises:
        DataError: no image has that label, or it takes a single value (nothing to learn).
    """
    values = [record.other_label(name) for record in source.records]
    class_names = sorted({value for value in values if value is not None})
    if not class_names:
        available = sorted({key for record in source.records for key, _ in record.other_labels})
        offered = f"its other labels are {available}" if available else "it has none"
        raise DataError(
            f"Data {source.name} has no label {name!r} for data.aux_label: {offered}. A manifest gives an "
            "image further labels as further columns."
        )
    if len(class_names) < 2:
        raise DataError(
            f"Label {name!r} of {source.name} has the single value {class_names[0]!r}: there is nothing "
            "for an auxiliary head to learn; choose another label or leave data.aux_label unset."
        )
    index = {value: i for i, value in enumerate(class_names)}
    targets = torch.tensor([MISSING if v is None else index[v] for v in values], dtype=torch.long)
    return AuxiliaryLabels(name, class_names, targets)
