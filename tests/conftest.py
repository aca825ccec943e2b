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
