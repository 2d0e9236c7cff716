"""Each recipe of docs/architecture.md ("How to add ..."), followed by a test: a toy component added in the
test itself, with one registration and no edit anywhere else, works end to end."""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
import yaml
from PIL import Image
from torch import nn

import transferkit
from transferkit.config import AT_LEAST_1, ModelConfig, option
from transferkit.data.resolve import data_sources
from transferkit.data.source import ImageRecord, ImageSource
from transferkit.export.formats import ExportReport, export_formats, export_model
from transferkit.models.backbone import Backbone
from transferkit.models.sources import model_sources
from transferkit.ranking import rank
from transferkit.ranking.base import ScoreInputs, register_score, transferability_scores
from transferkit.registry import Registry
from transferkit.testing import tiny_fit_config
from transferkit.training.regularizers import Regularizer, regularizers
from transferkit.training.semi import SemiMethod, semi_methods
from transferkit.training.strategies import FinetuneStrategy, Phase, strategies
from transferkit.transforms import Preprocessing


@pytest.fixture
def registered() -> Iterator[list[tuple[Registry[Any], str]]]:
    """(registry, name) pairs a test adds; they are removed again afterwards."""
    added: list[tuple[Registry[Any], str]] = []
    yield added
    for registry, name in added:
        registry.remove(name)


def _stripes(index: int) -> Image.Image:
    """Class 0: horizontal stripes, class 1: vertical ones, at a phase that varies with the index."""
    stripes = (np.indices((32, 32))[index % 2] + index // 2) % 4 < 2
    return Image.fromarray((stripes * 255).astype(np.uint8), mode="L")


def test_a_dataset_format(registered: list[tuple[Registry[Any], str]], tmp_path: Path) -> None:
    @data_sources.register("toy-stripes")
    def load_stripes(spec: str) -> ImageSource:
        records = [ImageRecord(f"stripes/{i:03d}", i % 2) for i in range(60)]
        return ImageSource(
            spec,
            ["horizontal", "vertical"],
            records,
            channels=1,
            loader=lambda r, _: _stripes(int(r.path[-3:])),
        )

    registered.append((data_sources, "toy-stripes"))
    run = transferkit.fit(tiny_fit_config("toy-stripes", tmp_path, epochs=2))
    assert run.metrics["num_samples"] == 15  # 25 % of 60 held out for test
    assert run.headline["accuracy"] >= 0.9  # stripes are easy: a broken loader could not reach this


def test_a_model_source(
    registered: list[tuple[Registry[Any], str]], image_folder: Path, tmp_path: Path
) -> None:
    built: list[str] = []

    @model_sources.register("toy")
    def load_toy(name: str, config: ModelConfig) -> Backbone:
        built.append(name)
        model = timm.create_model("test_efficientnet", pretrained=False)
        return Backbone(f"toy:{name}", "test_efficientnet", model, Preprocessing.from_timm(model), None)

    registered.append((model_sources, "toy"))
    config = tiny_fit_config(image_folder, tmp_path).with_overrides({"model.name": "toy:small"})
    run = transferkit.fit(config)
    assert built == ["small"]
    bundle = json.loads((run.dir / "model" / "config.json").read_text())
    assert bundle["source_model"]["spec"] == "toy:small"
    assert transferkit.load(run.dir).predict([next(image_folder.rglob("*.png"))])[0].label in {
        "cat",
        "dog",
        "fox",
    }


def test_a_strategy_with_its_own_option(
    registered: list[tuple[Registry[Any], str]], image_folder: Path, tmp_path: Path
) -> None:
    @strategies.register("top-only")
    class TopOnly(FinetuneStrategy):
        """The head on frozen features, then the top `groups` layer groups."""

        @dataclass
        class Options:
            groups: int = option(1, "layer groups below the head that train", within=AT_LEAST_1)

        name = "top-only"
        argument = "groups"

        def phases(self) -> list[Phase]:
            return [*super().phases(), Phase("top", self.config.epochs, f"top {self.options.groups} groups")]

        def thawed_groups(self, total: int, epoch: int) -> int:
            return self.options.groups + 1

    registered.append((strategies, "top-only"))
    config = tiny_fit_config(image_folder, tmp_path).with_overrides({"train.strategy": "top-only:2"})
    run = transferkit.fit(config)
    written = yaml.safe_load((run.dir / "config.yaml").read_text())
    assert written["train"]["strategy"] == {"name": "top-only", "groups": 2}
    assert "top 2 groups" in (run.dir / "report.md").read_text()
    with pytest.raises(transferkit.errors.ConfigError, match=r"'train\.strategy\.groups' must be at least 1"):
        transferkit.fit(config.with_overrides({"train.strategy": {"name": "top-only", "groups": 0}}))


def test_a_semi_supervised_method(
    registered: list[tuple[Registry[Any], str]], image_folder: Path, tmp_path: Path
) -> None:
    @semi_methods.register("pool-census")
    class PoolCensus(SemiMethod):
        """Counts the pool before training and says so in the report; trains on nothing more."""

        name = "pool-census"
        needs_pool = True

        def pseudo_label(
            self, backbone: Backbone, normalize: nn.Module, data: Any, run_dir: Path, *, save: bool
        ):
            return data, len(data["unlabeled"].labels)

        def note(self, history: list[dict[str, Any]], summary: Any) -> str | None:
            return f"The pool held {summary} images."

    registered.append((semi_methods, "pool-census"))
    config = tiny_fit_config(image_folder, tmp_path).with_overrides(
        {"train.semi": "pool-census", "data.labels_per_class": 3}
    )
    report = (transferkit.fit(config).dir / "report.md").read_text()
    counted = re.search(r"The pool held (\d+) images", report)
    budget = re.search(r"(\d+) images form the unlabeled pool", report)
    assert counted and budget and int(counted[1]) == int(budget[1]) > 0


def test_a_regularizer(
    registered: list[tuple[Registry[Any], str]], image_folder: Path, tmp_path: Path
) -> None:
    calls: list[float] = []

    @regularizers.register("l1-sp")
    class L1SP(Regularizer):
        """|w - w0| summed over the backbone (the head is fitted first: it has no start to keep)."""

        @dataclass
        class Options:
            strength: float = option(1e-3, "weight of the penalty")

        name = "l1-sp"

        def bind(self, model: nn.Module, head: nn.Module) -> None:
            head_ids = {id(p) for p in head.parameters()}
            self.start = {n: p.detach().clone() for n, p in model.named_parameters() if id(p) not in head_ids}

        def penalty(self, model: nn.Module) -> torch.Tensor:
            trained = [(n, p) for n, p in model.named_parameters() if n in self.start and p.requires_grad]
            value = (
                self.options.strength
                * torch.stack([(p - self.start[n]).abs().sum() for n, p in trained]).sum()
            )
            calls.append(float(value.detach()))
            return value

    registered.append((regularizers, "l1-sp"))
    config = tiny_fit_config(image_folder, tmp_path).with_overrides(
        {"train.regularizer": {"name": "l1-sp", "strength": 0.5}}
    )
    run = transferkit.fit(config)
    assert calls and calls[0] == 0.0 and max(calls) > 0.0  # zero at the start, then the weights move
    written = yaml.safe_load((run.dir / "config.yaml").read_text())
    assert written["train"]["regularizer"] == {"name": "l1-sp", "strength": 0.5}


def test_a_transferability_score(registered: list[tuple[Registry[Any], str]], image_folder: Path) -> None:
    @register_score("toy-spread", reference="a toy: the spread of the class means")
    def class_mean_spread(inputs: ScoreInputs) -> float:
        means = [inputs.features[inputs.labels == c].mean(0) for c in range(inputs.num_classes)]
        return float(np.std(means))

    registered.append((transferability_scores, "toy-spread"))
    model = ModelConfig("timm:test_efficientnet", pretrained=False)
    ranking = rank(str(image_folder), [model], ["toy-spread"], image_size=32, cache=False)
    (result,) = ranking.candidates
    assert result.scores["toy-spread"] is not None and result.scores["toy-spread"] > 0


def test_an_export_format(
    registered: list[tuple[Registry[Any], str]], image_folder: Path, tmp_path: Path
) -> None:
    @export_formats.register("npz")
    def export_npz(bundle: Path, target: Path, quantize: str | None) -> ExportReport:
        weights = transferkit.load(bundle).network.state_dict()  # type: ignore[union-attr]
        target.mkdir(parents=True, exist_ok=True)
        np.savez(target / "weights.npz", **{k: v.numpy() for k, v in weights.items()})
        return ExportReport(target, [target / "weights.npz"])

    registered.append((export_formats, "npz"))
    run = transferkit.fit(tiny_fit_config(image_folder, tmp_path))
    report = export_model(run.dir, out=tmp_path / "npz", format="npz")
    saved = np.load(report.files[0])
    assert any(key.endswith("classifier.weight") for key in saved.files)
