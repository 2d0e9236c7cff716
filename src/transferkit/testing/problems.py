"""A folder with every kind of bad and odd image file, for tests of checks, skips and decoding."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from transferkit.testing.synthetic import make_image_folder

BAD_FILES = {  # file name -> the reason `check_data` gives
    "zero.png": "zero bytes",
    "cut.jpg": "truncated",
    "cut.png": "truncated",
    "notes.jpg": "not an image",
    "noise.png": "not an image",
}


def smooth_image(seed: int, size: tuple[int, int] = (40, 40)) -> Image.Image:
    """A photo-like image: smooth random shapes, unrelated to any other seed's."""
    coarse = np.random.default_rng(seed).integers(0, 256, (5, 5, 3), dtype=np.uint8)
    return Image.fromarray(coarse, mode="RGB").resize(size, Image.Resampling.BICUBIC)


def _jpeg_bytes(image: Image.Image, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **kwargs)
    return buffer.getvalue()


def _write_bad_files(root: Path) -> None:
    (root / "train/cat/zero.png").write_bytes(b"")
    jpeg = _jpeg_bytes(smooth_image(1, (64, 64)), quality=95)
    (root / "train/cat/cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    noisy = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(noisy).save(png, "PNG")
    (root / "train/dog/cut.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    (root / "train/dog/notes.jpg").write_text("meeting notes, saved with the wrong name\n")
    (root / "test/dog/noise.png").write_bytes(np.random.default_rng(3).bytes(2048))


def _write_duplicates(root: Path) -> None:
    shutil.copy(root / "train/cat/cat_000.png", root / "test/cat/copy_of_cat_000.png")  # leakage
    scene = smooth_image(4, (64, 48))
    scene.save(root / "train/dog/scene.png")
    brighter = Image.eval(scene, lambda value: min(255, value + 8))
    (root / "train/dog/scene_brighter.jpg").write_bytes(_jpeg_bytes(brighter, quality=90))


def _write_odd_but_good_files(root: Path) -> None:
    smooth_image(5).convert("L").save(root / "train/cat/gray.png")
    deep = np.asarray(smooth_image(6).convert("L"), dtype=np.uint16) * 250
    Image.fromarray(deep).save(root / "train/cat/deep.png")  # 16-bit
    smooth_image(7).quantize(16).save(root / "train/dog/palette.png", transparency=0)
    (root / "train/cat/cmyk.jpg").write_bytes(_jpeg_bytes(smooth_image(8).convert("CMYK")))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 56 x 24, shown rotated as 24 x 56
    (root / "test/dog/phone.jpg").write_bytes(_jpeg_bytes(smooth_image(9, (56, 24)), exif=exif))


def make_problem_folder(root: str | Path, per_class: int = 6) -> Path:
    """Cats and dogs in train/ and test/, plus every bad file in BAD_FILES, an exact copy of a train
    image in test (leakage), a brightened JPEG copy within train, and odd but readable files:
    grayscale, 16-bit, palette with transparency, CMYK and an EXIF-rotated phone photo."""
    root = make_image_folder(root, classes=("cat", "dog"), per_class=per_class, splits=("train", "test"))
    _write_bad_files(root)
    _write_duplicates(root)
    _write_odd_but_good_files(root)
    return root
