"""Images that belong together stay on one side of the splits and folds transferkit makes."""

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from transferkit.config import DataConfig, FitConfig
from transferkit.data.folds import make_folds
from transferkit.data.load import load_source, split_with_budget
from transferkit.errors import DataError
from transferkit.testing import make_image_folder


def _side_of(splits) -> dict[int, str]:
    return {index: name for name, indices in splits.items() for index in indices}


def _copies(root: Path) -> Path:
    """A 3-class folder where 6 images have copies under other names in their class folder."""
    make_image_folder(root, per_class=16)
    for name in ("cat", "dog", "fox"):
        for n in range(2):
            for k in range(2):
                shutil.copy(root / name / f"{name}_{n:03d}.png", root / name / f"copy{k} of {n}.png")
    return root


def _splits_apart(source, splits) -> int:
    """How many sets of identical files have members on two sides."""
    by_bytes: dict[bytes, set[str]] = {}
    side = _side_of(splits)
    for index, record in enumerate(source.records):
        by_bytes.setdefault(Path(record.path).read_bytes(), set()).add(side[index])
    return sum(len(sides) > 1 for sides in by_bytes.values())


def test_copies_of_a_file_stay_on_one_side_of_every_split(tmp_path: Path) -> None:
    root = _copies(tmp_path / "copies")
    apart_before = 0
    for seed in range(6):
        config = DataConfig(name=str(root), split_seed=seed)
        source = load_source(config)
        splits = split_with_budget(source, config)
        assert _splits_apart(source, splits) == 0
        assert sorted(splits.train + splits.val + splits.test) == list(range(60))
        test_counts = Counter(source.records[i].label for i in splits.test)
        assert all(4 <= count <= 6 for count in test_counts.values())  # 5 each, within a set of copies
        unkept = DataConfig(name=str(root), split_seed=seed, keep_together=False)
        apart_before += _splits_apart(load_source(unkept), split_with_budget(load_source(unkept), unkept))
    assert "12 file(s) are byte-for-byte copies of others" in source.notes[-1]
    assert apart_before > 0  # without keep_together the same seeds put copies apart


def _grouped_manifest(root: Path, patients: int = 40, per_patient: int = 3) -> Path:
    """A manifest of `patients` with 3 images each, half of them ill; every image's bytes its own."""
    rng = np.random.default_rng(0)
    root.mkdir()
    rows = ["path,label,group"]
    for patient in range(patients):
        for k in range(per_patient):
            name = f"p{patient}_{k}.png"
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / name)
            rows.append(f"{name},{'ill' if patient % 2 else 'well'},patient{patient}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


@pytest.mark.parametrize("seed", range(3))
def test_a_manifests_groups_stay_whole_in_the_test_and_validation_splits(tmp_path: Path, seed: int) -> None:
    manifest = _grouped_manifest(tmp_path / "patients")
    config = DataConfig(name=str(manifest), split_seed=seed, val_fraction=0.2)
    source = load_source(config)
    splits = split_with_budget(source, config)
    side = _side_of(splits)
    sides_of_group: dict[str, set[str]] = {}
    for index, record in enumerate(source.records):
        sides_of_group.setdefault(record.group, set()).add(side[index])
    assert all(len(sides) == 1 for sides in sides_of_group.values())
    assert len(splits.test) == 30  # 25 % of 120: whole patients of 3 fill it exactly
    for name in ("val", "test"):
        labels = Counter(source.records[i].label for i in dict(splits.items())[name])
        assert abs(labels[0] - labels[1]) <= 3  # stratified as far as whole patients allow


def test_a_copy_joins_its_twin_and_both_their_groups(tmp_path: Path) -> None:
    manifest = _grouped_manifest(tmp_path / "patients", patients=10)
    folder = manifest.parent
    shutil.copy(folder / "p0_0.png", folder / "p5_copy.png")
    with manifest.open("a") as handle:
        handle.write("p5_copy.png,ill,patient5\n")
    source = load_source(DataConfig(name=str(manifest)))
    groups = Counter(record.group for record in source.records)
    assert groups["patient0 + patient5"] == 7
    assert "patient0" not in groups and "patient5" not in groups
    assert make_folds(source, list(range(len(source.records))), 2, seed=0)  # the folds take the groups too


def test_one_group_cannot_be_split_and_the_error_says_why(tmp_path: Path) -> None:
    manifest = _grouped_manifest(tmp_path / "patients", patients=1, per_patient=8)
    rows = manifest.read_text().splitlines()
    manifest.write_text(
        "\n".join([rows[0], *(r.replace(",well,", f",{'ab'[i % 2]},") for i, r in enumerate(rows[1:]))])
    )
    config = DataConfig(name=str(manifest))
    with pytest.raises(
        DataError, match=r"8 image\(s\) in 1 group\(s\) cannot be split with data\.test_fraction"
    ):
        split_with_budget(load_source(config), config)


def test_a_run_written_before_keep_together_is_rebuilt_as_it_was_made(tmp_path: Path) -> None:
    values = FitConfig().to_dict()
    del values["data"]["keep_together"]
    older = tmp_path / "config.yaml"
    older.write_text(yaml.safe_dump(values))
    assert FitConfig.of_run(older).data.keep_together is False
    assert FitConfig.from_yaml(older).data.keep_together is True  # a config given to a new run: the default
    newer = tmp_path / "new.yaml"
    newer.write_text(FitConfig().to_yaml())
    assert FitConfig.of_run(newer).data.keep_together is True


def test_two_sets_of_copies_with_one_file_name_stay_two_groups(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "two", per_class=4)
    for name in ("cat", "dog"):  # cat/0.png = cat/cat_000.png, dog/0.png = dog/dog_000.png: 0.png first
        shutil.copy(root / name / f"{name}_000.png", root / name / "0.png")
    source = load_source(DataConfig(name=str(root)))
    groups = Counter(record.group for record in source.records if record.group)
    assert sorted(groups.values()) == [2, 2]
