from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.data import decode_image
from transferkit.errors import DataError
from transferkit.transforms.preprocessing import Preprocessing


def _save(image: Image.Image, path: Path, **kwargs: object) -> Path:
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGB", "RGBA", "I;16"])
def test_every_mode_becomes_the_channel_count(tmp_path: Path, mode: str, channels: int) -> None:
    image = (
        Image.new("RGB", (9, 7), (120, 60, 30)).convert(mode)
        if mode != "I;16"
        else Image.new("I;16", (9, 7), 900)
    )
    decoded = decode_image(_save(image, tmp_path / "image.png"), channels)
    assert decoded.size == (9, 7)
    assert decoded.mode == ("L" if channels == 1 else "RGB")


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (
            Image.new("RGBA", (3, 3), (10, 20, 30, 40)),
            (10, 20, 30, 40),
        ),  # the fourth band kept, not composited
        (Image.new("CMYK", (3, 3), (1, 2, 3, 4)), (1, 2, 3, 4)),  # four stored bands, not colour-converted
        (Image.new("RGB", (3, 3), (10, 20, 30)), (10, 20, 30, 255)),  # an opaque fourth band added
    ],
)
def test_four_channels_keep_the_stored_bands(
    tmp_path: Path, image: Image.Image, expected: tuple[int, ...]
) -> None:
    path = _save(image, tmp_path / "image.tiff")
    decoded = decode_image(path, 4)
    assert decoded.mode == "RGBA"
    assert decoded.getpixel((1, 1)) == expected


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.linspace(1000, 3000, 64, dtype=np.uint16).reshape(8, 8)
    decoded = np.asarray(decode_image(_save(Image.fromarray(ramp), tmp_path / "ramp.png"), 1))
    assert decoded.min() == 0
    assert decoded.max() == 255


def test_transparency_is_composited_on_black(tmp_path: Path) -> None:
    clear = Image.new("RGBA", (4, 4), (255, 255, 255, 0))
    decoded = decode_image(_save(clear, tmp_path / "clear.png"), 3)
    assert np.asarray(decoded).max() == 0


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (20, 10), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    decoded = decode_image(_save(image, tmp_path / "phone.jpg", exif=exif), 3)
    assert decoded.size == (10, 20)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_bad_files_raise_a_data_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"broken\.png"):
        decode_image(path)


def test_decompression_bombs_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(Image.new("L", (100, 100)), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6_000)  # 10,000 pixels: between 1x and 2x the limit
    with pytest.raises(DataError, match=r"bomb\.png"):
        decode_image(path)


def _photo(width: int, height: int) -> Image.Image:
    """Smooth colour gradients with grain, as a camera photo holds: JPEG's DCT scaling has detail to lose."""
    rng = np.random.default_rng(0)
    coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((width, height))
    grain = rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(coarse) + grain, 0, 255).astype(np.uint8))


def test_a_large_jpeg_decodes_at_a_reduced_scale_with_the_pixels_of_a_full_decode(tmp_path: Path) -> None:
    path = _save(_photo(1600, 1200), tmp_path / "photo.jpg", quality=90)
    preprocessing = Preprocessing((3, 96, 96), (0.5,) * 3, (0.5,) * 3, "bicubic", 0.875)
    reduced = decode_image(path, resized_to=preprocessing.scaled_size)
    assert reduced.size == (400, 300)  # a quarter: the smallest of libjpeg's scales >= 2 x 109 px a side
    full = preprocessing.resize(decode_image(path))
    difference = np.abs(preprocessing.resize(reduced).astype(int) - full)
    assert difference.mean() < 0.3 and difference.max() <= 2
    png = _save(_photo(1600, 1200), tmp_path / "photo.png")
    assert decode_image(png, resized_to=preprocessing.scaled_size).size == (1600, 1200)  # JPEG alone


def test_sharp_edges_stay_close_to_a_full_decode(tmp_path: Path) -> None:
    blocks = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    path = _save(Image.fromarray(blocks).resize((1600, 1200), Image.Resampling.NEAREST), tmp_path / "e.jpg")
    preprocessing = Preprocessing((3, 224, 224), (0.5,) * 3, (0.5,) * 3, "bicubic", 0.875)
    full = preprocessing.resize(decode_image(path)).astype(int)
    difference = np.abs(preprocessing.resize(decode_image(path, resized_to=preprocessing.scaled_size)) - full)
    assert difference.mean() < 1.0 and np.percentile(difference, 99) <= 8


@pytest.mark.parametrize(("mode", "format"), [("L", "JPEG"), ("CMYK", "JPEG"), ("RGB", "MPO")])
def test_grey_cmyk_and_multi_picture_jpegs_decode_reduced_in_their_mode(
    tmp_path: Path, mode: str, format: str
) -> None:
    photo = _photo(1600, 1200).convert(mode)
    frames = {"save_all": True, "append_images": [photo]} if format == "MPO" else {}  # as phones write
    path = _save(photo, tmp_path / f"photo-{mode}.jpg", format=format, **frames)
    with Image.open(path) as opened:
        assert opened.format == format and opened.mode == mode
    channels = 1 if mode == "L" else 3
    reduced = decode_image(path, channels, resized_to=100)
    assert reduced.size == (400, 300)
    full = decode_image(path, channels).resize(reduced.size, Image.Resampling.BOX)
    assert np.abs(np.asarray(reduced, int) - np.asarray(full)).mean() < 2


def test_a_reduced_decode_keeps_the_orientation_and_still_fails_on_a_damaged_file(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(_photo(1600, 1200), tmp_path / "phone.jpg", exif=exif)
    assert decode_image(path, resized_to=100).size == (300, 400)
    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=r"damaged\.jpg"):
        decode_image(damaged, resized_to=100)
