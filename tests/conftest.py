from pathlib import Path

import pytest

from transferkit.testing import make_image_folder


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three learnable classes, 12 images each, no predefined split."""
    return make_image_folder(tmp_path_factory.mktemp("animals"))
