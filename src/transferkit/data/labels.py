"""Label groupings: coarser tasks a dataset defines over its classes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabelGrouping:
    """Classes merged into a coarser task, e.g. ELPV's functional/defective split of defect probabilities.

    Attributes:
        name: Key of the grouping in the metrics output, e.g. ``"binary"``.
        group_names: Display name of each group, e.g. ``("functional", "defective")``.
        group_of_class: For each fine class index, the index of its group in ``group_names``.
    """

    name: str
    group_names: tuple[str, ...]
    group_of_class: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("LabelGrouping.name is empty; give the grouping a key such as 'binary'.")
        if len(self.group_names) < 2:
            raise ValueError(
                f"LabelGrouping {self.name!r} has {len(self.group_names)} group name(s); "
                "a grouping needs at least two groups."
            )
        bad = [g for g in self.group_of_class if not 0 <= g < len(self.group_names)]
        if bad:
            raise ValueError(
                f"LabelGrouping {self.name!r}: group_of_class contains {bad}, "
                f"but group indices must lie in [0, {len(self.group_names) - 1}]."
            )
