"""One spec parser for every model source, and offline behaviour of the hub sources."""

from pathlib import Path

import pytest
import timm
import torch
from timm.models import save_for_hf

from transferkit import hub as hub_module
from transferkit.errors import ConfigError, ModelError, UnknownNameError
from transferkit.files import sha256_of_file
from transferkit.models import parse_model_spec, resolve_model
from transferkit.models.adapter import registration_groups


@pytest.mark.parametrize(
    ("spec", "source", "name"),
    [
        ("efficientnet_lite0", "packaged", "efficientnet_lite0"),
        ("efficientnet_lite2", "packaged", "efficientnet_lite2"),
        ("timm:resnet50.a1_in1k", "timm", "resnet50.a1_in1k"),
        (
            "timm:vit_base_patch16_224.augreg2_in21k_ft_in1k",
            "timm",
            "vit_base_patch16_224.augreg2_in21k_ft_in1k",
        ),
        ("hf:google/vit-base-patch16-224", "hf", "google/vit-base-patch16-224"),
        ("torchvision:resnet18", "torchvision", "resnet18"),
        ("torchvision:resnet50:IMAGENET1K_V2", "torchvision", "resnet50:IMAGENET1K_V2"),
        ("file:weights.safetensors", "file", "weights.safetensors"),
        ("file:C:\\models\\resnet.pth", "file", "C:\\models\\resnet.pth"),
        ("file:/data/w:1.bin", "file", "/data/w:1.bin"),
        ("run:runs/2026-11-30T06:00:00-elpv", "run", "runs/2026-11-30T06:00:00-elpv"),
        ("C:\\runs\\first", "path", "C:\\runs\\first"),
        ("D:/bundles/cats", "path", "D:/bundles/cats"),
        ("runs/2026-11-30T06:00:00-elpv/model", "path", "runs/2026-11-30T06:00:00-elpv/model"),
        ("./model.v2", "path", "./model.v2"),
        ("~/models/cats", "path", "~/models/cats"),
        ("weights.pth", "path", "weights.pth"),
    ],
)
def test_spec_parser(spec: str, source: str, name: str) -> None:
    parsed = parse_model_spec(spec)
    assert (parsed.source, parsed.name) == (source, name)


@pytest.mark.parametrize("spec", ["resnet18", "nosuch:thing", "efficientnet_lite9"])
def test_unparseable_specs_list_what_is_valid(spec: str) -> None:
    with pytest.raises(UnknownNameError, match=r"Valid model names: .*timm:<name>"):
        parse_model_spec(spec)


def test_a_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=f"No model at {tmp_path / 'gone'}"):
        resolve_model(str(tmp_path / "gone"))


def test_a_folder_of_unknown_content_says_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"hello": 1}')
    with pytest.raises(ModelError, match="run directory, a transferkit bundle, a timm folder"):
        resolve_model(str(tmp_path))


@pytest.fixture(scope="module")
def timm_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", num_classes=5)
    folder = tmp_path_factory.mktemp("timm_model")
    save_for_hf(model, folder, safe_serialization=True)
    return folder, model


@pytest.mark.parametrize("prefix", ["timm:", ""])
def test_a_timm_folder_loads_with_its_config(timm_folder: tuple[Path, torch.nn.Module], prefix: str) -> None:
    folder, original = timm_folder
    backbone = resolve_model(f"{prefix}{folder}")
    assert backbone.architecture == "test_efficientnet"
    assert backbone.family == "timm"
    assert backbone.preprocessing.input_size == (3, 160, 160)
    assert backbone.weights_sha256 == sha256_of_file(folder / "model.safetensors")
    assert torch.equal(
        backbone.model.state_dict()["conv_stem.weight"], original.state_dict()["conv_stem.weight"]
    )


def test_timm_weights_option_loads_a_local_file(timm_folder: tuple[Path, torch.nn.Module]) -> None:
    folder, original = timm_folder
    backbone = resolve_model("timm:test_efficientnet", weights=str(folder / "model.safetensors"))
    assert torch.equal(backbone.model.state_dict()["bn1.weight"], original.state_dict()["bn1.weight"])


def test_offline_timm_hub_fails_at_once_with_the_local_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError, match=r"not in the local cache .* offline.*--weights FILE"):
        resolve_model("timm:test_resnet.r160_in1k")
    assert constants.HF_HUB_OFFLINE is True  # restored, not left changed


def test_an_unreachable_hub_switches_to_offline_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://127.0.0.1:9")  # nothing listens on port 9
    hub_module.reachable.cache_clear()
    try:
        with hub_module.hf_hub_access("timm:x", "hint") as offline:
            assert offline
            assert constants.HF_HUB_OFFLINE is True
        assert constants.HF_HUB_OFFLINE is False
    finally:
        hub_module.reachable.cache_clear()


def _stage() -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3), torch.nn.ReLU())


def test_registration_groups_put_the_stem_first_and_split_the_stages_container() -> None:
    network = torch.nn.Sequential()
    network.add_module("conv", torch.nn.Conv2d(3, 4, 3))
    network.add_module("norm", torch.nn.BatchNorm2d(4))
    network.add_module("stages", torch.nn.Sequential(_stage(), _stage(), _stage()))
    groups = registration_groups(network)
    assert groups[0] == ["conv.weight", "conv.bias", "norm.weight", "norm.bias"]
    assert groups[1:] == [[f"stages.{i}.0.weight", f"stages.{i}.0.bias"] for i in range(3)]


def test_registration_groups_keep_stages_that_are_already_children() -> None:
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), _stage(), _stage(), _stage())
    assert len(registration_groups(network)) == 4


@pytest.mark.parametrize(
    ("spec", "options", "message"),
    [
        ("efficientnet_lite0", {"weights": "w.pth"}, "goes with timm: or torchvision:"),
        ("timm:resnet18", {"arch": "resnet18"}, "goes with file: weights"),
    ],
)
def test_options_for_another_source_are_refused(spec: str, options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_model(spec, **options)  # type: ignore[arg-type]


def test_a_timm_folder_with_label_names_is_not_taken_for_a_bundle(tmp_path: Path) -> None:
    model = timm.create_model("test_efficientnet", num_classes=2)
    save_for_hf(model, tmp_path, model_config={"label_names": ["ok", "defect"]}, safe_serialization=True)
    assert resolve_model(str(tmp_path)).spec == f"timm:{tmp_path}"


def test_a_four_band_model_adapts_back_to_three_bands() -> None:
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    backbone.adapt_input_channels(4)
    from transferkit.models.backbone import adapt_first_conv

    adapt_first_conv(backbone.model, 3)
    assert backbone.model.eval()(torch.rand(1, 3, 32, 32)).shape[1] == backbone.head().out_features


def test_every_declared_source_family_and_packaged_model_registers_when_named() -> None:
    """Built-in sources are declared with their module and imported on first use: each declaration
    must match what its module registers, or a spec naming it would fail only at run time."""
    from transferkit.models.sources import families, model_sources, packaged_models

    for registry in (model_sources, families, packaged_models):
        for name in registry.names():
            assert callable(registry.get(name)), f"{registry.kind} {name}"
