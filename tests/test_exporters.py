"""exporters/: PyTorch -> ONNX round trips, metadata, parity, and the ``scanner export`` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
typer = pytest.importorskip("typer")
from typer.testing import CliRunner  # noqa: E402

import exporters  # noqa: E402
from exporters import EXPORT_KEY, PRODUCER_KEY, ExportError, ExportWarning, ParityError  # noqa: E402
from exporters.cli import TORCH_MISSING, export_command  # noqa: E402
from scanner.model.spec import METADATA_KEY, spec_from_metadata  # noqa: E402

HERE = Path(__file__).resolve().parent
SHAPE = (3, 16, 16)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.247, 0.243, 0.261)

torch.set_num_threads(2)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")


@pytest.fixture(autouse=True)
def factories_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))


@pytest.fixture
def factories():
    import _export_factories

    return _export_factories


# -- helpers ------------------------------------------------------------------------------------
def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def torch_logits(model, x_nchw: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x_nchw)).numpy()


def normalized(x_nchw: np.ndarray, mean, std, scale: float = 1.0) -> np.ndarray:
    m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return ((x_nchw * np.float32(scale) - m) / s).astype(np.float32)


def images(n: int, seed: int = 1) -> np.ndarray:
    """Unit-range images, NCHW."""
    return np.random.default_rng(seed).random((n, *SHAPE), dtype=np.float32)


def cli_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test shell."""

    app.command("export")(export_command)
    return app


def invoke(*args: str):
    return CliRunner().invoke(cli_app(), ["export", *map(str, args)])


# -- library ------------------------------------------------------------------------------------
def test_import_does_not_import_torch():
    code = "import sys, exporters, exporters.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=HERE.parent)


@pytest.mark.parametrize("name", ["tiny_cnn", "tiny_resnet"])
def test_round_trip(tmp_path, factories, name):
    model = getattr(factories, name)()
    out = tmp_path / "model.onnx"
    names = [f"class{i}" for i in range(10)]
    report = exporters.export(model, out, input_shape=SHAPE, mean=CIFAR_MEAN, std=CIFAR_STD, pixel_range="unit",
                              class_names=names)

    assert report.exporter == "dynamo" and report.dynamo_error is None
    assert report.path == out and report.size_bytes == out.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # self-contained, no temp left
    onnx.checker.check_model(str(out))
    proto = onnx.load(str(out))
    assert report.opset == next(o.version for o in proto.opset_import if o.domain == "")
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value")

    # dynamic batch: 1, 7, 64 all run and match PyTorch on normalized input
    sess = session(out)
    assert [i.name for i in sess.get_inputs()] == ["input"]
    for n in (1, 7, 64):
        x = normalized(images(n, seed=n), CIFAR_MEAN, CIFAR_STD)
        got = sess.run(None, {"input": x})[0]
        assert got.shape == (n, 10)
        np.testing.assert_allclose(got, torch_logits(model, x), atol=1e-4)

    # parity figures: 3 batch sizes x (clean + 5 scales)
    assert len(report.parity) == 18
    assert {(r.batch_size, r.input_kind) for r in report.parity} == {
        (b, k) for b in (1, 7, 64) for k in ("clean", "x3", "x5", "x7", "x9", "x11")
    }
    assert report.max_abs_diff <= 1e-3 and report.argmax_agreement == 1.0

    # metadata read back with the scanner's own reader
    meta = metadata(out)
    spec = spec_from_metadata(meta)
    assert spec["layout"] == "nchw" and (spec["channels"], spec["height"], spec["width"]) == SHAPE
    assert spec["mean"] == pytest.approx(CIFAR_MEAN) and spec["std"] == pytest.approx(CIFAR_STD)
    assert spec["pixel_range"] == "unit" and spec["class_names"] == tuple(names)
    assert spec["input_name"] == "input" and spec["output_name"] == "logits"
    assert meta[PRODUCER_KEY].startswith("scaleup-scanner")
    record = json.loads(meta[EXPORT_KEY])
    assert record["exporter"] == "dynamo" and record["opset"] == report.opset
    assert record["parity"]["max_abs_diff"] == pytest.approx(report.max_abs_diff)
    assert len(record["parity"]["results"]) == 18 and record["parity"]["argmax_mismatches"] == 0
    assert all(key.startswith("scanner.") for key in meta)
    assert "parity" in str(report) and "dynamo" in str(report)


@pytest.mark.parametrize("layout", ["nhwc", "flat"])
def test_channels_last_layouts(tmp_path, factories, layout):
    model = factories.tiny_cnn()
    out = tmp_path / "m.onnx"
    report = exporters.export(model, out, input_shape=SHAPE, layout=layout)
    assert report.spec.layout == layout and spec_from_metadata(metadata(out))["layout"] == layout

    x = images(7)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    feed = nhwc if layout == "nhwc" else nhwc.reshape(7, -1)
    sess = session(out)
    expected_shape = ["batch", 16, 16, 3] if layout == "nhwc" else ["batch", 768]
    assert [d if isinstance(d, int) else "batch" for d in sess.get_inputs()[0].shape] == expected_shape
    np.testing.assert_allclose(sess.run(None, {"input": feed})[0], torch_logits(model, x), atol=1e-4)


def test_embedded_normalization(tmp_path, factories):
    model = factories.tiny_resnet()
    mean, std = (125.3, 123.0, 113.9), (63.0, 62.1, 66.7)  # byte units
    plain = exporters.export(model, tmp_path / "plain.onnx", input_shape=SHAPE, pixel_range="byte", mean=mean, std=std)
    baked = exporters.export(
        model, tmp_path / "baked.onnx", input_shape=SHAPE, pixel_range="byte", mean=mean, std=std,
        embed_normalization=True,
    )
    assert plain.spec.pixel_range == "byte" and plain.spec.mean == pytest.approx(mean)
    assert baked.spec.pixel_range == "unit" and baked.spec.mean is None and baked.spec.std is None
    read = spec_from_metadata(metadata(baked.path))
    assert read["pixel_range"] == "unit" and read["mean"] is None and read["std"] is None
    assert json.loads(metadata(baked.path)[EXPORT_KEY])["embed_normalization"] is True

    raw = images(7)
    norm = normalized(raw, mean, std, scale=255.0)
    got_baked = session(baked.path).run(None, {"input": raw})[0]
    got_plain = session(plain.path).run(None, {"input": norm})[0]
    np.testing.assert_allclose(got_baked, got_plain, atol=1e-4)
    np.testing.assert_allclose(got_baked, torch_logits(model, norm), atol=1e-4)


def test_old_opset_falls_back_to_torchscript(tmp_path, factories):
    report = exporters.export(factories.tiny_resnet(), tmp_path / "m.onnx", input_shape=SHAPE, opset=13)
    assert report.exporter == "torchscript" and report.opset == 13
    assert "opset" in report.dynamo_error
    record = json.loads(metadata(report.path)[EXPORT_KEY])
    assert record["exporter"] == "torchscript" and record["dynamo_error"] == report.dynamo_error
    assert session(report.path).run(None, {"input": images(64)})[0].shape == (64, 10)


def test_unsupported_op_is_one_line_error(tmp_path, factories):
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError) as info:
        exporters.export(factories.Unexportable().eval(), out, input_shape=SHAPE)
    message = str(info.value)
    assert message.startswith("neither torch.onnx exporter can export Unexportable")
    assert "erf_inv" in message and "erfinv" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []


class HardCodedBatch(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 16 * 16, 4)

    def forward(self, x):
        return self.fc(x.reshape(2, -1))  # only works for the example batch of 2


def test_parity_failure_raises_and_writes_nothing(tmp_path):
    with pytest.raises(ParityError) as info:
        exporters.export(HardCodedBatch().eval(), tmp_path / "m.onnx", input_shape=SHAPE)
    message = str(info.value)
    assert "hard-code its batch size" in message and "\n" not in message
    # torch 2.13's dynamo exporter silently fixes the batch; that counts as its failure
    assert "exporter: torchscript; dynamo exporter failed: it fixed the batch dimension to 2" in message
    assert list(tmp_path.iterdir()) == []


def test_training_mode_warns_and_is_restored(tmp_path, factories):
    model = factories.tiny_cnn().train()
    with pytest.warns(ExportWarning, match="training mode"):
        report = exporters.export(model, tmp_path / "m.onnx", input_shape=SHAPE, check_parity=False)
    assert model.training and report.parity == ()
    assert json.loads(metadata(report.path)[EXPORT_KEY])["parity"] is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"input_shape": (4, 16, 16)}, "1 or 3 channels"),
        ({"input_shape": (3, 16)}, "input_shape"),
        ({"mean": (0.5, 0.5)}, "mean has 2 values"),
        ({"std": (0.0,)}, "std must be positive"),
        ({"layout": "nhcw"}, "layout must be one of"),
        ({"pixel_range": "percent"}, "pixel_range must be one of"),
        ({"class_names": ["a", "b"]}, "2 class names given, but the model outputs 10"),
        ({"input_shape": (3, 8, 8)}, "model failed on a float32 batch of shape"),
    ],
)
def test_bad_arguments(tmp_path, factories, kwargs, match):
    kwargs = {"input_shape": SHAPE, **kwargs}
    with pytest.raises(ExportError, match=match):
        exporters.export(factories.tiny_cnn(), tmp_path / "m.onnx", **kwargs)
    assert list(tmp_path.iterdir()) == []


# -- command line -------------------------------------------------------------------------------
def test_cli_torchscript(tmp_path, factories):
    model = factories.tiny_cnn()
    scripted = tmp_path / "model.pt"
    torch.jit.trace(model, torch.rand(2, *SHAPE)).save(str(scripted))
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    out = tmp_path / "model.onnx"
    result = invoke("--torchscript", scripted, "-o", out, "--input-shape", "3,16,16",
                    "--mean", ",".join(map(str, CIFAR_MEAN)), "--std", ",".join(map(str, CIFAR_STD)),
                    "--class-names-file", names)
    assert result.exit_code == 0, result.output
    assert "exporter  torchscript" in result.stdout and "parity" in result.stdout and str(out) in result.stdout
    spec = spec_from_metadata(metadata(out))
    assert spec["class_names"] == tuple(f"c{i}" for i in range(10))
    assert spec["mean"] == pytest.approx(CIFAR_MEAN)
    assert json.loads(metadata(out)[EXPORT_KEY])["source"] == "torchscript model.pt"
    x = normalized(images(7), CIFAR_MEAN, CIFAR_STD)
    np.testing.assert_allclose(session(out).run(None, {"input": x})[0], torch_logits(model, x), atol=1e-4)


def test_cli_factory_with_weights(tmp_path, factories):
    trained = factories._randomize(factories.TinyCNN(), seed=42)  # differs from tiny_cnn()'s weights
    weights = tmp_path / "weights.pt"
    torch.save(trained.state_dict(), weights)
    out = tmp_path / "model.onnx"
    result = invoke("--factory", "_export_factories:tiny_cnn", "--weights", weights, "-o", out,
                    "--input-shape", "3,16,16", "--class-names", ",".join("abcdefghij"))
    assert result.exit_code == 0, result.output
    assert "exporter  dynamo" in result.stdout
    x = images(7)
    np.testing.assert_allclose(session(out).run(None, {"input": x})[0], torch_logits(trained, x), atol=1e-4)
    assert spec_from_metadata(metadata(out))["class_names"] == tuple("abcdefghij")


def test_cli_pickle_with_trust(tmp_path, factories):
    model = factories.tiny_resnet()
    pickled = tmp_path / "model.pkl"
    torch.save(model, pickled)
    out = tmp_path / "model.onnx"
    result = invoke("--pickle", pickled, "--trust-pickle", "-o", out, "--input-shape", "3,16,16",
                    "--layout", "nhwc", "--pixel-range", "byte", "--embed-normalization")
    assert result.exit_code == 0, result.output
    spec = spec_from_metadata(metadata(out))
    assert spec["layout"] == "nhwc" and spec["pixel_range"] == "unit"
    x = images(7)
    got = session(out).run(None, {"input": np.ascontiguousarray(x.transpose(0, 2, 3, 1))})[0]
    np.testing.assert_allclose(got, torch_logits(model, x * np.float32(255.0)), atol=1e-3)


def assert_cli_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # typer.Exit, not a traceback
    assert result.stdout == ""
    err = result.stderr.strip()
    assert err.startswith("Error: ") and "\n" not in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_cli_pickle_needs_trust(tmp_path, factories):
    pickled = tmp_path / "model.pkl"
    torch.save(factories.tiny_cnn(), pickled)
    result = invoke("--pickle", pickled, "-o", tmp_path / "m.onnx")
    assert_cli_error(result, "--trust-pickle", "arbitrary code")
    assert not (tmp_path / "m.onnx").exists()


def test_library_pickle_needs_trust(tmp_path, factories):
    pickled = tmp_path / "model.pkl"
    torch.save(factories.tiny_cnn(), pickled)
    with pytest.raises(ExportError, match="arbitrary code"):
        exporters.load_pickle(pickled)


def test_cli_state_dict_that_does_not_fit(tmp_path, factories):
    weights = tmp_path / "resnet.pt"
    torch.save(factories.tiny_resnet().state_dict(), weights)
    result = invoke("--factory", "_export_factories:tiny_cnn", "--weights", weights, "-o", tmp_path / "m.onnx",
                    "--input-shape", "3,16,16")
    assert_cli_error(result, "do not fit the model from _export_factories:tiny_cnn",
                     "missing keys features.0.weight", "unexpected keys stem.0.weight")


def test_cli_state_dict_size_mismatch(tmp_path, factories):
    weights = tmp_path / "wide.pt"
    torch.save(factories.TinyCNN(n_classes=5).state_dict(), weights)
    result = invoke("--factory", "_export_factories:tiny_cnn", "--weights", weights, "-o", tmp_path / "m.onnx",
                    "--input-shape", "3,16,16")
    assert_cli_error(result, "size mismatch for classifier.weight")


def test_cli_unsupported_op(tmp_path):
    result = invoke("--factory", "_export_factories:Unexportable", "-o", tmp_path / "m.onnx",
                    "--input-shape", "3,16,16")
    assert_cli_error(result, "neither torch.onnx exporter can export Unexportable", "erfinv")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args, fragments",
    [
        ([], ["give exactly one model source, got no model source"]),
        (["--torchscript", "a.pt", "--pickle", "b.pkl"], ["--torchscript and --pickle together"]),
        (["--torchscript", "missing.pt"], ["TorchScript file not found: missing.pt"]),
        (["--factory", "_export_factories"], ["package.module:callable"]),
        (["--factory", "no_such_module_xyz:build"], ["cannot import 'no_such_module_xyz'"]),
        (["--factory", "_export_factories:nope"], ["has no attribute 'nope'"]),
        (["--factory", "_export_factories:not_a_model"], ["returned a dict, not a torch.nn.Module"]),
        (["--factory", "_export_factories:tiny_cnn", "--input-shape", "3,16"], ["--input-shape expects 3"]),
        (["--factory", "_export_factories:tiny_cnn", "--mean", "a,b"], ["--mean expects comma-separated"]),
        (["--factory", "_export_factories:tiny_cnn", "--class-names", "a,b", "--class-names-file", "x"],
         ["not both"]),
        (["--torchscript", "m.pt", "--weights", "w.pt"], ["--weights goes with --factory"]),
    ],
)
def test_cli_usage_errors(tmp_path, monkeypatch, args, fragments):
    monkeypatch.chdir(tmp_path)
    for name in ("m.pt", "w.pt", "a.pt", "b.pkl"):
        (tmp_path / name).write_bytes(b"")
    assert_cli_error(invoke(*args, "-o", "out.onnx"), *fragments)


def test_cli_weights_that_are_a_pickled_module(tmp_path, factories):
    weights = tmp_path / "whole.pt"
    torch.save(factories.tiny_cnn(), weights)
    result = invoke("--factory", "_export_factories:tiny_cnn", "--weights", weights, "-o", tmp_path / "m.onnx")
    assert_cli_error(result, "is not a plain state_dict")


def test_cli_without_torch(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    result = invoke("--torchscript", "m.pt", "-o", tmp_path / "m.onnx")
    assert result.exit_code == 2
    assert result.stderr.strip() == TORCH_MISSING


def test_cli_help():
    result = CliRunner().invoke(cli_app(), ["export", "--help"])
    assert result.exit_code == 0
    for flag in ("--torchscript", "--factory", "--weights", "--pickle", "--trust-pickle", "--input-shape",
                 "--layout", "--embed-normalization", "--class-names-file", "--opset", "--output"):
        assert flag in result.output
    assert "arbitrary" in result.output


# -- end to end: PyTorch -> scanner export -> scanner scan -------------------------------------
def test_scanner_labels_equal_pytorch_labels_at_every_scale(tmp_path, factories):
    """A PyTorch model exported (plain and with embedded normalization) and scanned gives the
    same label at every scale as the PyTorch model on clip(n * x, 0, 1), normalized."""
    from scanner import Scanner

    model = factories.tiny_resnet()
    plain = exporters.export(model, tmp_path / "plain.onnx", input_shape=SHAPE, mean=CIFAR_MEAN, std=CIFAR_STD)
    baked = exporters.export(model, tmp_path / "baked.onnx", input_shape=SHAPE, mean=CIFAR_MEAN, std=CIFAR_STD,
                             embed_normalization=True)
    x_u8 = np.random.default_rng(7).integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    x = x_u8.astype(np.float32) / np.float32(255)
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    expected = np.stack([torch_logits(model, normalized(np.clip(nchw * np.float32(n), 0, 1), CIFAR_MEAN, CIFAR_STD)).argmax(1)
                         for n in (3, 5, 7, 9, 11)], axis=1)
    unscaled = torch_logits(model, normalized(nchw, CIFAR_MEAN, CIFAR_STD)).argmax(1)
    for report in (plain, baked):
        scores = Scanner(report.path, device="cpu").score_arrays(x_u8)
        np.testing.assert_array_equal(scores.labels, unscaled)
        np.testing.assert_array_equal(scores.scaled_labels, expected)


# -- issue 11: standard-layout parity inputs, output named after what it holds ---------------------
class ViewNet(torch.nn.Module):
    """Flattens with .view(): fails on a tensor with channels-last strides (also for 1 channel,
    where the permuted tensor counts as contiguous but convolutions keep channels-last)."""

    def __init__(self, channels: int, softmax: bool = False):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 16 * 16, 10)
        self.softmax = softmax

    def forward(self, x):
        y = torch.relu(self.conv(x))
        y = self.fc(y.view(y.size(0), -1))
        return torch.softmax(y, dim=1) if self.softmax else y


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_model_that_flattens_with_view_exports_and_passes_parity(tmp_path, channels, layout):
    torch.manual_seed(0)
    model = ViewNet(channels).eval()
    out = tmp_path / "view.onnx"
    report = exporters.export(model, out, input_shape=(channels, 16, 16), layout=layout,
                              parity_batch_sizes=(1, 7), parity_scales=(3,))
    assert report.parity and all(r.argmax_mismatches == 0 for r in report.parity)
    x = images(5)[:, :channels]
    feed = x if layout == "nchw" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(session(out).run(["logits"], {"input": feed})[0], torch_logits(model, x), atol=1e-4)


def test_export_output_is_named_after_what_it_holds(tmp_path):
    torch.manual_seed(0)
    probs = tmp_path / "probs.onnx"
    report = exporters.export(ViewNet(3, softmax=True).eval(), probs, input_shape=(3, 16, 16),
                              parity_batch_sizes=(2,), parity_scales=(3,))
    assert report.spec.output_name == "probabilities"
    assert [o.name for o in onnx.load(str(probs)).graph.output] == ["probabilities"]
    assert spec_from_metadata(metadata(probs))["output_name"] == "probabilities"
    from scanner.model.loader import load_model

    assert load_model(probs, device="cpu").output.tensor.name == "probabilities"
    logits = tmp_path / "logits.onnx"
    exporters.export(ViewNet(3).eval(), logits, input_shape=(3, 16, 16), parity_batch_sizes=(2,), parity_scales=(3,))
    assert [o.name for o in onnx.load(str(logits)).graph.output] == ["logits"]


def test_output_name_from_values():
    from exporters.pytorch_side import output_name

    logits = np.array([[1.0, -2.0, 0.5], [0.1, 0.2, 0.3]])
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert output_name(logits) == "logits"
    assert output_name(probs) == "probabilities"
    assert output_name(np.log(probs)) == "log_probabilities"


def test_metadata_records_only_what_was_stated(tmp_path, factories):
    """Issue 27, point 3: exporting without --pixel-range/--mean/--std wrote "[0, 1], no
    normalization" as a fact, and later scans trusted it silently. The range (and the
    normalization) not given are recorded as unknown, and a scan warns that they are guessed."""
    from scanner import Scanner

    model = factories.tiny_cnn()
    plain = tmp_path / "plain.onnx"
    report = exporters.export(model, plain, input_shape=SHAPE, parity_batch_sizes=(2,), parity_scales=(3,))
    meta = metadata(plain)
    written = json.loads(meta["scanner.spec"])
    assert written["pixel_range"] is None and written["mean"] is None and written["std"] is None
    assert json.loads(meta[EXPORT_KEY])["unknown"] == ["pixel_range", "normalization"]
    assert report.unknown == ("pixel_range", "normalization") and "unknown range" in str(report)
    assert "pixel range and normalization not given" in str(report)
    scanner = Scanner(plain, device="cpu")
    assert scanner.resolved.sources["pixel_range"] == "default"  # as for a model without metadata
    np.save(tmp_path / "x.npy", (images(6) * 255).astype(np.uint8).transpose(0, 2, 3, 1))
    warnings = scanner.scan([tmp_path / "x.npy"]).summary().warnings
    assert any(w.startswith("preprocessing guessed: pixel range and normalization") for w in warnings), warnings

    stats = tmp_path / "stats.onnx"
    exporters.export(model, stats, input_shape=SHAPE, mean=CIFAR_MEAN, std=CIFAR_STD, parity_batch_sizes=(2,),
                     parity_scales=(3,))
    written = json.loads(metadata(stats)["scanner.spec"])
    assert written["pixel_range"] is None and written["mean"] == pytest.approx(CIFAR_MEAN)
    assert json.loads(metadata(stats)[EXPORT_KEY])["unknown"] == ["pixel_range"]

    stated = tmp_path / "stated.onnx"
    result = invoke("--factory", "_export_factories:tiny_cnn", "-o", stated, "--input-shape", "3,16,16",
                    "--pixel-range", "unit")
    assert result.exit_code == 0, result.output
    assert json.loads(metadata(stated)["scanner.spec"])["pixel_range"] == "unit"
    assert json.loads(metadata(stated)[EXPORT_KEY])["unknown"] == []
    assert Scanner(stated, device="cpu").resolved.sources["pixel_range"] == "model metadata"
