from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.data import decode_image
from transferkit.errors import DataError


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
