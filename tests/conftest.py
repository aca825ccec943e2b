import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SCANNER_SHARED", REPO.parent / "shared"))
REFERENCE = SHARED / "reference" / "scaleup-official-spc"
CIFAR = SHARED / "data" / "cifar10"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.fixture
def reference_dir():
    if not REFERENCE.is_dir():
        pytest.skip(f"reference arrays not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="module")
def images():
    """24 images of the fixture models' world, half of them triggered (a module may override)."""
    import onnx_models as om

    return om.make_images(24, seed=3, triggered_fraction=0.5)


@pytest.fixture
def model(tmp_path):
    """The trigger fixture model with its spec in the metadata (scanned without flags)."""
    import onnx_models as om

    return om.trigger_nchw(tmp_path / "model", embed_spec=True)
