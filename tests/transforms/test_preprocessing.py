"""Preprocessing resizes and crops exactly as timm evaluates the weights, whatever their crop mode."""

from dataclasses import replace

import numpy as np
import pytest
import timm
import torch
from PIL import Image, ImageOps
from timm.data import create_transform, resolve_model_data_config
from timm.data.transforms_factory import transforms_imagenet_eval

from transferkit.transforms import Normalize, Preprocessing


def _photo(width: int, height: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(width * height)
    channels = len(mode)
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8).squeeze()
    return Image.fromarray(pixels, mode)


@pytest.mark.parametrize("crop_mode", ["center", "squash", "border"])
@pytest.mark.parametrize("size", [(300, 200), (200, 300), (256, 256)])
def test_pixels_equal_timms_own_eval_transform(crop_mode: str, size: tuple[int, int]) -> None:
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    model.pretrained_cfg = {**model.pretrained_cfg, "crop_mode": crop_mode, "crop_pct": 0.9}
    config = resolve_model_data_config(model)
    timm_pixels = create_transform(**config, is_training=False)(_photo(*size))
    prep = Preprocessing.from_timm(model)
    assert prep.crop_mode == crop_mode
    ours = Normalize(prep)(torch.from_numpy(prep.resize(_photo(*size)))[None])[0]
    torch.testing.assert_close(ours.contiguous(), timm_pixels, atol=1e-5, rtol=0)


@pytest.mark.parametrize("crop_mode", ["center", "squash", "border"])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])
def test_uint8_pixels_equal_timms_for_any_shape_band_count_and_crop(
    crop_mode: str, interpolation: str
) -> None:
    """The PIL-only resize and crop gives exactly timm's pixels: odd and tiny images (padded), extreme
    aspect ratios, grayscale and RGBA, several crop fractions."""
    shapes = [(300, 200), (201, 333), (17, 250), (250, 9), (40, 40), (8, 8), (61, 60)]
    for i, (width, height) in enumerate(shapes * 2):
        mode, crop_pct = ("RGB", "L", "RGBA")[i % 3], (0.875, 1.0, 0.95)[i // 3 % 3]
        bands = len(mode)
        prep = Preprocessing(
            (3, 48, 48), (0.485, 0.456, 0.406), (0.2,) * 3, interpolation, crop_pct, crop_mode
        )
        mean = prep.mean if bands == 3 else (sum(prep.mean) / 3,) * bands
        timm_eval = transforms_imagenet_eval(
            img_size=48,
            crop_pct=crop_pct,
            crop_mode=crop_mode,
            interpolation=interpolation,
            mean=mean,
            normalize=False,
        )
        photo = _photo(width, height, mode)
        expected = np.asarray(timm_eval(photo)).reshape(bands, 48, 48)
        np.testing.assert_array_equal(
            prep.resize(photo), expected, err_msg=f"{width}x{height} {mode} {crop_pct}"
        )


def test_crop_modes_differ_where_the_aspect_ratio_does() -> None:
    prep = Preprocessing((3, 64, 64), (0.5,) * 3, (0.5,) * 3, "bilinear", 1.0)
    wide = _photo(128, 64)
    center, squash = (replace(prep, crop_mode=mode).resize(wide) for mode in ("center", "squash"))
    assert center.shape == squash.shape == (3, 64, 64)
    assert not np.array_equal(center, squash)


def test_centre_crop_cuts_the_frame_as_timm_does() -> None:
    framed = ImageOps.expand(Image.new("L", (280, 280), 0), border=10, fill=255)  # 300 px, white frame
    cropped = Preprocessing((1, 224, 224), (0.5,), (0.5,), "bicubic", 0.875).resize(framed)
    whole = Preprocessing((1, 224, 224), (0.5,), (0.5,), "bicubic", 1.0).resize(framed)
    assert cropped.shape == whole.shape == (1, 224, 224)
    assert whole[0, 0].min() > 200  # the frame survives a plain resize
    assert cropped.max() < 30  # a 0.875 centre crop of 256 px cuts 16 px per side, frame included


def test_grayscale_images_keep_one_channel_in_every_mode() -> None:
    for mode in ("center", "squash", "border"):
        prep = Preprocessing((3, 32, 32), (0.5,) * 3, (0.5,) * 3, "bicubic", 0.875, mode)
        assert prep.resize(_photo(50, 40, "L")).shape == (1, 32, 32)


def test_the_cache_key_names_everything_the_pixels_depend_on() -> None:
    base = Preprocessing((3, 32, 32), (0.5,) * 3, (0.5,) * 3, "bicubic", 0.875)
    other_norm = Preprocessing((3, 32, 32), (0.4,) * 3, (0.2,) * 3, "bicubic", 0.875)
    assert base.resize_key() == other_norm.resize_key()  # normalization happens in the model
    changed = [
        base.resized(48),
        Preprocessing((3, 32, 32), (0.5,) * 3, (0.5,) * 3, "bilinear", 0.875),
        Preprocessing((3, 32, 32), (0.5,) * 3, (0.5,) * 3, "bicubic", 1.0),
        Preprocessing((3, 32, 32), (0.5,) * 3, (0.5,) * 3, "bicubic", 0.875, "squash"),
    ]
    assert len({base.resize_key(), *(p.resize_key() for p in changed)}) == 5


def test_bundles_without_a_crop_mode_read_as_centre() -> None:
    values = Preprocessing((3, 32, 32), (0.5,) * 3, (0.5,) * 3, "bicubic", 0.875, "squash").to_dict()
    assert Preprocessing.from_dict(values).crop_mode == "squash"
    del values["crop_mode"]
    assert Preprocessing.from_dict(values).crop_mode == "center"


@pytest.mark.parametrize(
    ("setting", "weights_mode", "elongation", "crop_pct", "expected"),
    [
        ("auto", "center", 4.0, None, ("squash", 1.0)),  # a strip: a centre crop would keep a quarter
        ("auto", "center", 16 / 9, None, ("squash", 1.0)),
        ("auto", "center", 4.0, 0.9, ("squash", 0.9)),  # a crop_pct given is kept
        ("auto", "center", 3 / 2, None, ("center", 0.875)),  # camera photos keep the weights' crop
        ("auto", "center", 4 / 3, 1.0, ("center", 1.0)),
        ("auto", "center", None, None, ("center", 0.875)),  # nothing readable: nothing to go by
        ("auto", "border", 4.0, None, ("border", 0.875)),  # weights that keep the whole image keep theirs
        ("weights", "center", 4.0, None, ("center", 0.875)),
        ("border", "center", 1.0, None, ("border", 0.875)),
        ("center", "squash", 4.0, 1.0, ("center", 1.0)),
    ],
)
def test_crop_auto_squashes_only_elongated_images_whole(
    setting: str, weights_mode: str, elongation: float | None, crop_pct: float | None, expected: tuple
) -> None:
    weights = Preprocessing((3, 32, 32), (0.5,) * 3, (0.5,) * 3, "bicubic", 0.875, weights_mode)
    chosen = weights.with_crop(setting, elongation, crop_pct)
    assert (chosen.crop_mode, chosen.crop_pct) == expected


def test_a_squashed_strip_keeps_its_ends() -> None:
    strip = Image.new("L", (400, 100), 128)
    strip.paste(255, (0, 0, 40, 100))  # a bright mark at the left end
    weights = Preprocessing((1, 32, 32), (0.5,), (0.5,), "bicubic", 0.875)
    assert weights.resize(strip).max() == 128  # the centre crop never sees the mark
    squashed = weights.with_crop("auto", 4.0).resize(strip)
    assert squashed[0, :, :2].min() == 255  # the mark's 10 % of the strip: 3 of 32 px, the first 2 intact
