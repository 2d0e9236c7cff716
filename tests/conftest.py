from collections.abc import Iterator
from pathlib import Path

import pytest

from transferkit.testing import make_image_folder


@pytest.fixture(scope="session", autouse=True)
def image_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Decoded-image cache files go to a temporary folder, never the user's ~/.cache."""
    root = tmp_path_factory.mktemp("transferkit-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFERKIT_CACHE", str(root))
        yield root


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three learnable classes, 12 images each, no predefined split."""
    return make_image_folder(tmp_path_factory.mktemp("animals"))
