"""Fuzzing the decoder: any bytes give an image or a DataError, never another exception or a hang."""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from transferkit.data import decode_image
from transferkit.errors import DataError
from transferkit.testing.hangs import time_limit

SECONDS_PER_FILE = 5
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about the corrupt EXIF it skips


def _valid_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    files = {}
    for name, kind, options in [
        ("png", "PNG", {}),
        ("jpeg", "JPEG", {"exif": exif}),
        ("gif", "GIF", {}),
        ("bmp", "BMP", {}),
        ("tiff", "TIFF", {}),
        ("webp", "WEBP", {}),
        ("ico", "ICO", {}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, kind, **options)
        files[name] = buffer.getvalue()
    return files


VALID = _valid_files()
random_bytes = st.binary(max_size=4096)
header_then_noise = st.tuples(st.sampled_from(sorted(VALID)), st.floats(0, 1), st.binary(max_size=2048)).map(
    lambda case: VALID[case[0]][: int(case[1] * len(VALID[case[0]]))] + case[2]
)
mutated = st.tuples(
    st.sampled_from(sorted(VALID)), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=8)
).map(lambda case: _mutate(VALID[case[0]], case[1]))


def _mutate(data: bytes, edits: list[tuple[float, int]]) -> bytes:
    mutable = bytearray(data)
    for where, value in edits:
        mutable[min(int(where * len(mutable)), len(mutable) - 1)] = value
    return bytes(mutable)


@pytest.fixture(scope="module")
def fuzz_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # A malformed header may claim up to PIL's 89-megapixel limit; a lower one keeps the test light.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", 4_000_000)
        yield tmp_path_factory.mktemp("fuzz") / "input.img"


def _decodes_or_refuses(path: Path, data: bytes, channels: int) -> None:
    path.write_bytes(data)
    with time_limit(SECONDS_PER_FILE):
        try:
            image = decode_image(path, channels)
        except DataError as err:
            assert str(path) in str(err)
            return
    assert image.mode == {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    assert image.width > 0 and image.height > 0


@pytest.mark.fuzz
@settings(max_examples=200, deadline=None)
@given(data=random_bytes, channels=st.sampled_from([1, 3, 4]))
def test_random_bytes(fuzz_file: Path, data: bytes, channels: int) -> None:
    _decodes_or_refuses(fuzz_file, data, channels)


@pytest.mark.fuzz
@settings(max_examples=200, deadline=None)
@given(data=header_then_noise, channels=st.sampled_from([1, 3, 4]))
def test_a_valid_header_followed_by_random_bytes(fuzz_file: Path, data: bytes, channels: int) -> None:
    _decodes_or_refuses(fuzz_file, data, channels)


@pytest.mark.fuzz
@settings(max_examples=200, deadline=None)
@given(data=mutated, channels=st.sampled_from([1, 3, 4]))
def test_valid_files_with_bytes_changed(fuzz_file: Path, data: bytes, channels: int) -> None:
    _decodes_or_refuses(fuzz_file, data, channels)


@pytest.mark.parametrize("name", sorted(VALID))
def test_the_unchanged_seed_files_decode(fuzz_file: Path, name: str) -> None:
    _decodes_or_refuses(fuzz_file, VALID[name], 3)
    assert decode_image(fuzz_file).size in {(10, 12), (12, 10)}


def _tiff_with_strip_offsets_as_bytes() -> bytes:
    """A valid TIFF whose StripOffsets tag is typed UNDEFINED, so PIL reads bytes where it wants ints."""
    buffer = io.BytesIO()
    Image.new("L", (10, 12), 90).save(buffer, "TIFF")
    data = bytearray(buffer.getvalue())
    directory = struct.unpack_from("<I", data, 4)[0]
    for entry in range(directory + 2, directory + 2 + 12 * struct.unpack_from("<H", data, directory)[0], 12):
        if struct.unpack_from("<H", data, entry)[0] == 273:  # StripOffsets
            struct.pack_into("<H", data, entry + 2, 7)
    return bytes(data)


def test_a_tiff_with_mistyped_strip_offsets_is_refused(fuzz_file: Path) -> None:
    # _decodes_or_refuses accepts either outcome; this file must be refused, with its path named.
    fuzz_file.write_bytes(_tiff_with_strip_offsets_as_bytes())
    with time_limit(SECONDS_PER_FILE), pytest.raises(DataError, match=re.escape(str(fuzz_file))):
        decode_image(fuzz_file, 3)
