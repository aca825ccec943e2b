"""Property-based fuzzing (hypothesis), bounded to about a minute: mutated image and array files
and odd option values. Every input is scored or listed as failed with a reason, and nothing
raises outside the ScannerError family. The longer run is ``python -m bench.fuzz --minutes 10``.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bench.fuzz import check_scan, tiny_model, write_batch
from scanner import Scanner
from scanner.cli.app import app

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on broken files

FUZZ = settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("fuzz") / "model.onnx")


@pytest.fixture(scope="module")
def scanner(model):
    return Scanner(model, device="cpu")


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 30))
def test_mutated_files_are_scored_or_failed(scanner, tmp_path_factory, seed, count):
    folder = tmp_path_factory.mktemp("files")
    written = write_batch(folder, np.random.default_rng(seed), count)
    counts = check_scan(scanner, folder, written, hang_seconds=60)
    assert counts["crashes"] == 0, counts.get("crash")
    assert counts["hangs"] == 0 and counts["dropped"] == 0 and counts["scanner_errors"] == 0
    assert counts["scored"] + counts["failed"] == count


NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10**12, 10**12).map(str),
                    st.sampled_from(["nan", "inf", "-inf", "", "1e400", "0x10", "1,2", "1-1000000", "3x", "x3"]),
                    st.text(max_size=12))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(["--scales", "--threshold", "--size", "--mean", "--std", "--max-flagged-rate",
                               "--max-flagged", "--expected-fpr", "--batch-size", "--channels", "--timeout"]),
       value=NUMBERS)
def test_odd_option_values_are_usage_errors_or_work(model, tmp_path_factory, option, value):
    from PIL import Image

    folder = tmp_path_factory.mktemp("imgs")
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(folder / "a.png")
    result = CliRunner().invoke(app, ["-q", "scan", str(model), str(folder), option, value])
    assert result.exit_code in (0, 1, 2), (option, value, result.output)
    assert "Traceback" not in result.output + result.stderr
    if result.exit_code == 2:
        assert result.stderr.strip().splitlines()[-1].startswith("Error: "), result.stderr
