"""torchvision:<arch>[:<enum>] from torch hub's cache or a local file, with the enum's preprocessing."""

import json
from pathlib import Path

import pytest
import torch
import torchvision

import transferkit
from transferkit.errors import ModelError
from transferkit.files import sha256_of_file
from transferkit.models import resolve_model
from transferkit.testing import tiny_fit_config

ARCH = "mobilenet_v3_small"


@pytest.fixture(scope="module")
def original() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.get_model(ARCH, weights=None).eval()


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def test_weights_in_the_hub_cache_load_offline(original: torch.nn.Module, torch_home: Path) -> None:
    enum = torchvision.models.get_model_weights(ARCH).DEFAULT
    torch_home.mkdir(parents=True)
    torch.save(original.state_dict(), torch_home / Path(enum.url).name)
    backbone = resolve_model(f"torchvision:{ARCH}")
    assert backbone.family == "torchvision"
    assert backbone.weights_sha256 == sha256_of_file(torch_home / Path(enum.url).name)
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(backbone.model.eval()(images), original(images), atol=1e-6)


def test_preprocessing_comes_from_the_weight_enum(torch_home: Path) -> None:
    backbone = resolve_model(f"torchvision:{ARCH}:IMAGENET1K_V1", pretrained=False)
    prep = backbone.preprocessing
    assert prep.input_size == (3, 224, 224)
    assert prep.mean == (0.485, 0.456, 0.406)
    assert prep.crop_pct == pytest.approx(224 / 256)
    assert prep.interpolation == "bilinear"


def test_a_local_weights_file_with_another_head_loads(original: torch.nn.Module, tmp_path: Path) -> None:
    state = original.state_dict()
    state["classifier.3.weight"] = torch.zeros(7, 1024)
    state["classifier.3.bias"] = torch.zeros(7)
    torch.save(state, tmp_path / "finetuned.pth")
    backbone = resolve_model(f"torchvision:{ARCH}", weights=str(tmp_path / "finetuned.pth"))
    got = backbone.model.state_dict()["body.features.0.0.weight"]
    assert torch.equal(got, original.state_dict()["features.0.0.weight"])


def test_missing_weights_offline_fail_with_the_cache_path(
    torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("transferkit.models.torchvision_source.reachable", lambda url: False)
    with pytest.raises(ModelError, match=r"not in torch hub's cache .*--weights FILE"):
        resolve_model(f"torchvision:{ARCH}")


def test_unknown_architecture_and_enum_list_valid_names() -> None:
    with pytest.raises(ModelError, match=r"Closest: .*resnet18"):
        resolve_model("torchvision:resnet81", pretrained=False)
    with pytest.raises(ModelError, match="Valid: DEFAULT, IMAGENET1K_V1"):
        resolve_model(f"torchvision:{ARCH}:IMAGENET22K", pretrained=False)


def test_layer_groups_follow_the_features_stages() -> None:
    backbone = resolve_model(f"torchvision:{ARCH}", pretrained=False)
    backbone.reset_head(3)
    groups = backbone.layer_groups()
    flat = [id(p) for group in groups for p in group]
    assert len(flat) == len(set(flat)) == len(list(backbone.model.parameters()))
    assert len(groups) == len(backbone.model.body.features) + 2  # features stages, the classifier's MLP, head
    assert [id(p) for p in groups[-1]] == [id(p) for p in backbone.head().parameters()]


def test_fit_and_chain_a_torchvision_model(image_folder: Path, tmp_path: Path) -> None:
    config = tiny_fit_config(image_folder, tmp_path).with_overrides({"model.name": f"torchvision:{ARCH}"})
    first = transferkit.fit(config)
    chained = resolve_model(f"run:{first.dir}")
    assert (chained.family, chained.architecture) == ("torchvision", ARCH)
    assert chained.preprocessing.mean == (0.485, 0.456, 0.406)
    # the head the run kept: between the fitted and the fine-tuned one, at the alpha WiSE-FT chose
    start, trained = (
        torch.load(first.dir / "checkpoints" / name, weights_only=True) for name in ("start.pt", "trained.pt")
    )
    alpha = json.loads((first.dir / "metrics.json").read_text())["weight_choice"]["alpha"]
    kept = start["head.weight"] + alpha * (trained["head.weight"] - start["head.weight"])
    assert torch.allclose(chained.model.state_dict()["head.weight"], kept, atol=1e-7)
