"""`file:PATH --arch NAME`: bare weight files, loaded safely, with a report of keys that do not fit."""

import pickle
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from transferkit.errors import ConfigError, ModelError
from transferkit.models import resolve_model

ARCH = "test_efficientnet"


@pytest.fixture(scope="module")
def source_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(ARCH, num_classes=7)


def _same_body(loaded: torch.nn.Module, original: torch.nn.Module) -> bool:
    theirs = original.state_dict()
    return all(
        torch.equal(v, theirs[k]) for k, v in loaded.state_dict().items() if not k.startswith("classifier")
    )


def test_safetensors_weights_load_onto_the_architecture(
    source_model: torch.nn.Module, tmp_path: Path
) -> None:
    path = tmp_path / "weights.safetensors"
    save_file(source_model.state_dict(), path)
    backbone = resolve_model(f"file:{path}", arch=ARCH)
    assert _same_body(backbone.model, source_model)
    assert backbone.preprocessing.input_size == (3, 160, 160)  # timm's pretrained config for the arch
    assert len(backbone.weights_sha256) == 64


def test_pth_checkpoints_with_wrappers_and_prefixes_load(
    source_model: torch.nn.Module, tmp_path: Path
) -> None:
    path = tmp_path / "checkpoint.pth"
    wrapped = {"state_dict": {f"module.{k}": v for k, v in source_model.state_dict().items()}, "epoch": 3}
    torch.save(wrapped, path)
    assert _same_body(resolve_model(f"file:{path}", arch=ARCH).model, source_model)


def test_keys_that_do_not_fit_are_reported(source_model: torch.nn.Module, tmp_path: Path) -> None:
    state = source_model.state_dict()
    del state["conv_stem.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "partial.safetensors"
    save_file(state, path)
    with pytest.raises(ModelError, match=r"1 missing \(conv_stem\.weight\), 1 unexpected \(extra\.weight\)"):
        resolve_model(f"file:{path}", arch=ARCH)


def test_the_architecture_is_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--arch NAME"):
        resolve_model(f"file:{tmp_path / 'w.safetensors'}")


class _Payload:
    """Unpickling this object would create a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


def test_a_malicious_pickle_is_refused_and_nothing_in_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pth"
    path.write_bytes(pickle.dumps({"conv_stem.weight": _Payload(marker)}, protocol=2))
    with pytest.raises(ModelError, match=r"Refused to load .*weights_only=True"):
        resolve_model(f"file:{path}", arch=ARCH)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the control: unpickling it unsafely does run the payload
    assert marker.exists()
