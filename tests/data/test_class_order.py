"""data.class_order: the classes in a given order, labels and groupings renumbered, and the flags that
set it and the ordinal options from the command line."""

from pathlib import Path

import pytest
import yaml

from transferkit.api.fit import ordinal_classes
from transferkit.cli.main import main
from transferkit.config import DataConfig, FitConfig
from transferkit.data.class_map import natural_order, with_class_order
from transferkit.data.labels import LabelGrouping
from transferkit.data.load import load_source
from transferkit.data.source import ImageRecord, ImageSource
from transferkit.errors import ConfigError
from transferkit.testing import make_image_folder


def _source() -> ImageSource:
    records = [ImageRecord(f"{name}.png", label) for label, name in enumerate(["high", "low", "mid"])]
    grouping = LabelGrouping("alarm", ("quiet", "alarm"), (1, 0, 0))
    return ImageSource(
        "levels", ["high", "low", "mid"], [*records, ImageRecord("pool.png", -1)], groupings=(grouping,)
    )


def test_labels_and_groupings_follow_the_new_order() -> None:
    ordered = with_class_order(_source(), ["low", "mid", "high"])
    assert ordered.class_names == ["low", "mid", "high"] and ordered.ordered
    assert [(r.path, r.label) for r in ordered.records] == [
        ("high.png", 2),
        ("low.png", 0),
        ("mid.png", 1),
        ("pool.png", -1),  # unlabeled stays unlabeled
    ]
    assert ordered.groupings[0].group_of_class == (0, 0, 1)


@pytest.mark.parametrize("order", [["low", "mid"], ["low", "mid", "high", "top"], ["low", "low", "high"]])
def test_an_order_must_name_each_class_once(order: list[str]) -> None:
    with pytest.raises(
        ConfigError, match=r"data.class_order.*--class-order.*the classes are \['high', 'low', 'mid'\]"
    ):
        with_class_order(_source(), order)


def test_a_folder_source_takes_the_configured_order(tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path, classes=("high", "low", "mid"), per_class=1, size=8)
    source = load_source(DataConfig(name=str(folder), class_order=["low", "mid", "high"]))
    assert source.class_names == ["low", "mid", "high"]
    assert {Path(r.path).parent.name: r.label for r in source.records} == {"low": 0, "mid": 1, "high": 2}


def test_the_flags_set_task_order_and_recall_target(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["fit", "--print-config", "--task", "ordinal", "--class-order", "low", "mid", "high"]
    assert main([*argv, "--recall-target", "high:0.9"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["task"] == "ordinal"
    assert printed["data"]["class_order"] == ["low", "mid", "high"]
    assert printed["decision"]["recall_target"] == "high:0.9"


def test_natural_order_compares_numbers_by_value() -> None:
    names = ["grade_10", "grade_2", "grade_1", "Grade_3", "9", "10", "x²"]
    assert natural_order(names) == ["9", "10", "Grade_3", "grade_1", "grade_2", "grade_10", "x²"]


def test_an_ordinal_fit_orders_numbered_folders_by_value_and_records_the_order(tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path, classes=("1", "2", "10"), per_class=1, size=8)
    config = FitConfig().with_overrides({"data.name": str(folder), "train.task": "ordinal"})
    resolved, source = ordinal_classes(config, load_source(config.data))
    assert source.class_names == ["1", "2", "10"] and source.ordered
    assert resolved.data.class_order == ["1", "2", "10"]  # evaluate and --resume rebuild the same
    assert load_source(resolved.data).class_names == ["1", "2", "10"]
    plain, _ = ordinal_classes(config.with_overrides({"train.task": "classification"}), source)
    assert plain.data.class_order is None
