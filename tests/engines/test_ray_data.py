"""The Ray engine (scanner.engines.ray_data): a scan on a local Ray cluster gives the local scan's
results, in every output format; a killed actor loses and doubles nothing; without Ray, one line."""

import csv
import io
import json
import os
import signal
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

import onnx_models as om
from helpers import write_pngs
from scanner import Scanner, summarize
from scanner.cli.app import app
from scanner.errors import InputError

BATCH = 32  # small chunks: several per actor, so both actors work and a kill hits a live scan


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """300 PNGs (30% triggered), 3 unreadable files, a .npy and a .npz array: 363 inputs."""
    root = tmp_path_factory.mktemp("distributed")
    fx = om.trigger_nchw(root / "model", embed_spec=True)
    x = om.make_images(300, seed=11, triggered_fraction=0.3)
    folder = write_pngs(root / "imgs", x)
    (folder / "img_050_text.png").write_text("not an image")
    (folder / "img_100_empty.jpg").write_bytes(b"")
    (folder / "img_200_cut.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    arrays = root / "arrays"
    arrays.mkdir()
    np.save(arrays / "a.npy", om.to_bytes(om.make_images(40, seed=12)))
    np.savez(arrays / "b.npz", x=om.make_images(20, seed=13).astype(np.float32))
    paths = [folder, arrays / "a.npy", arrays / "b.npz"]
    local = Scanner(fx.path, batch_size=BATCH).scan(paths)
    assert local.n_found == 363 and local.n_scored == 360 and len(local.failures) == 3
    return fx, paths, local


def _same_scores(a, b):
    assert np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.scores.labels, b.scores.labels)
    assert np.array_equal(a.scores.query_labels, b.scores.query_labels)  # the label at every scale
    assert a.scores.named.keys() == b.scores.named.keys()
    for name, values in a.scores.named.items():
        other = b.scores.named[name]
        assert (values is None) == (other is None), name
        if values is not None:
            assert values.dtype == other.dtype and np.array_equal(values, other, equal_nan=True), name
    assert np.array_equal(a.scores.flagged, b.scores.flagged)
    assert a.failures == b.failures
    assert a.settings == b.settings


def _summary(result):
    doc = summarize(result).to_dict()
    doc.pop("seconds")
    return doc


def test_library_scan_matches_local(ray_cluster, case):
    from scanner.engines import ray_data as distributed

    fx, paths, local = case
    result = distributed.scan(fx.path, paths, batch_size=BATCH, workers=2)
    _same_scores(result, local)
    assert list(result.records()) == list(local.records())
    assert result.failure_records() == local.failure_records()
    assert _summary(result) == _summary(local)


def _mask_seconds(fmt, text):
    if fmt == "json":
        doc = json.loads(text)
        doc["summary"]["seconds"] = None
        return doc
    if fmt == "jsonl":
        lines = [json.loads(line) for line in text.splitlines()]
        lines[-1]["summary"]["seconds"] = None
        return lines
    return text


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "csv"])
def test_cli_reports_identical_to_local(ray_cluster, case, fmt):
    fx, paths, _ = case
    runner = CliRunner()
    common = ["-q", "scan", str(fx.path), *map(str, paths), "--batch-size", str(BATCH), "-f", fmt,
              "--max-flagged-rate", "0.2"]
    local = runner.invoke(app, common)
    ray_run = runner.invoke(app, common + ["--engine", "ray", "--workers", "2"])
    # the gate fails (30% triggered > 0.2): same exit code, same report
    assert local.exit_code == ray_run.exit_code == 1, (local.output, ray_run.output)
    assert _mask_seconds(fmt, ray_run.stdout) == _mask_seconds(fmt, local.stdout)
    if fmt == "table":
        assert "inputs found 363, scored 360, failed 3, flagged" in ray_run.stdout
        assert "gate: FAILED" in ray_run.stdout


def test_shards_hold_the_local_records(ray_cluster, case, tmp_path):
    from scanner.engines import ray_data as distributed
    from scanner.report.render import Format, render_scan
    from scanner.engines.shards import read_shards

    fx, paths, local = case
    summary = summarize(local)
    stream = io.StringIO()
    render_scan(local, summary, None, Format.jsonl, stream)
    local_lines = [json.loads(line) for line in stream.getvalue().splitlines()[:-1]]
    stream = io.StringIO()
    render_scan(local, summary, None, Format.csv, stream)
    local_csv = list(csv.DictReader(io.StringIO(stream.getvalue())))

    distributed.scan(fx.path, paths, batch_size=BATCH, output_dir=tmp_path / "jsonl", shard_format="jsonl")
    rows = read_shards(tmp_path / "jsonl")
    assert len(rows) == 363 and len(list((tmp_path / "jsonl").glob("part-*.jsonl"))) == -(-363 // BATCH)
    # each shard lists its chunk's scored inputs, then its failed ones
    assert [r for r in rows if r["type"] == "result"] == [r for r in local_lines if r["type"] == "result"]
    assert [r for r in rows if r["type"] == "failure"] == [r for r in local_lines if r["type"] == "failure"]

    result = distributed.scan(fx.path, paths, batch_size=BATCH, output_dir=tmp_path / "pq")
    rows = read_shards(tmp_path / "pq")
    assert len(rows) == 363 and not list(tmp_path.glob("pq/.*"))  # no temporary files left
    by_name = {r["input"]: r for r in rows}
    for want in local_csv:
        got = by_name[want["input"]]
        assert got["status"] == want["status"] and (got["reason"] or "") == want["reason"]
        if want["status"] == "scored":
            assert got["predicted_label"] == int(want["predicted_label"]) and got["flagged"] == bool(int(want["flagged"]))
            assert f"{got['spc']:.6g}" == want["spc"]
            assert [got[f"label_x{n}"] for n in (3, 5, 7, 9, 11)] == [int(want[f"label_x{n}"]) for n in (3, 5, 7, 9, 11)]
    _same_scores(result, local)


def test_cli_output_dir_report_keeps_the_summary(ray_cluster, case, tmp_path):
    fx, paths, local = case
    out = tmp_path / "results"
    run = CliRunner().invoke(app, ["-q", "scan", str(fx.path), *map(str, paths), "--engine", "ray", "-f", "json",
                                   "--output-dir", str(out)])
    assert run.exit_code == 0, run.output
    doc = json.loads(run.stdout)
    assert "results" not in doc and doc["results_dir"] == str(out)
    assert doc["summary"]["inputs_found"] == 363 and doc["summary"]["failed"] == 3
    summary = _summary(local)
    doc["summary"].pop("seconds")
    assert doc["summary"] == summary
    assert len(list(out.glob("part-*.parquet"))) >= 1


def _actor_pids(since):
    """Scoring actors started after ``since`` (not a previous scan's actor on its way out)."""
    import psutil

    pids = []
    for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
        try:
            if "ScoreActor" in " ".join(proc.info["cmdline"] or []) and proc.info["create_time"] >= since:
                pids.append(proc.info["pid"])
        except psutil.Error:
            continue
    return pids


def test_killed_actor_loses_and_doubles_nothing(ray_cluster, case):
    """SIGKILL one scoring actor as soon as the first chunk is back: Ray restarts it and retries its
    chunks; every input is counted exactly once (the engine checks) and the results are the same."""
    from scanner.engines import ray_data as distributed

    fx, paths, local = case
    killed = []
    started = time.time() - 1

    def kill_once(done, total):
        if not killed:
            pids = _actor_pids(started)
            assert pids, "no scoring actor process found"
            os.kill(pids[0], signal.SIGKILL)
            killed.append((pids[0], done, total))

    result = distributed.scan(fx.path, paths, batch_size=8, workers=2, progress=kill_once)
    assert killed and killed[0][1] < killed[0][2]  # killed in the middle of the scan
    assert result.n_found == 363 and result.n_scored + len(result.failures) == 363
    assert len(set(result.indices.tolist()) | {i for i, _ in result.failures}) == 363
    _same_scores(result, local)  # batch size 8 vs 32 locally: same scores on this model


def test_in_memory_arrays_need_the_local_engine(ray_cluster, case):
    from scanner.engines import ray_data as distributed
    from scanner.inputs.find import InputSet, MemoryArray

    fx, _, _ = case
    inputs = InputSet()
    inputs.add_array(MemoryArray(om.make_images(4, seed=1)))
    with pytest.raises(InputError, match="numpy.save"):
        distributed.scan(fx.path, inputs)


def test_ray_options_need_the_ray_engine(case):
    fx, paths, _ = case
    run = CliRunner().invoke(app, ["scan", str(fx.path), str(paths[0]), "--workers", "2"])
    assert run.exit_code == 2 and run.stderr.strip().splitlines()[-1] == (
        "Error: --ray-address, --workers and --output-dir need --engine ray")


def test_without_ray_one_line_and_exit_2(case, monkeypatch):
    fx, paths, _ = case
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    run = CliRunner().invoke(app, ["scan", str(fx.path), str(paths[0]), "--engine", "ray"])
    assert run.exit_code == 2
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines == ['Error: the Ray engine needs Ray, which is not installed: pip install -e ".[ray]"']


def test_uris_are_refused_in_one_line(case):
    pytest.importorskip("ray")
    fx, _, _ = case
    run = CliRunner().invoke(app, ["scan", str(fx.path), "s3://bucket/images", "--engine", "ray"])
    assert run.exit_code == 2
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: s3:/bucket/images: the Ray engine reads paths"), lines


def test_actor_that_cannot_load_the_model_is_one_line(ray_cluster, case, monkeypatch, tmp_path):
    """The driver reads the model but the nodes do not (no shared file system): the actors'
    constructor fails; the scan ends with one ScannerError line instead of hanging."""
    from scanner.engines import ray_data as distributed
    from scanner.errors import ScannerError

    fx, paths, _ = case
    real = distributed._pipeline
    missing = tmp_path / "elsewhere" / "model.onnx"
    monkeypatch.setattr(distributed, "_pipeline", lambda ray, chunks, shape, model, *rest: real(
        ray, chunks, shape, str(missing), *rest))
    with pytest.raises(ScannerError) as err:
        distributed.scan(fx.path, [paths[1]], workers=1)
    text = str(err.value)
    assert text.startswith("distributed scan failed: ") and str(missing) in text and "\n" not in text, text


def test_calibrated_scan_with_every_detector_matches_local(ray_cluster, case, tmp_path):
    """A format-2 calibration travels to the actors with STRIP's images: the same scores, flags, verdict."""
    from scanner.engines import ray_data as distributed
    from scanner.calibrating import calibrate

    fx, paths, _ = case
    np.save(tmp_path / "clean.npy", om.to_bytes(om.make_images(60, seed=41, triggered_fraction=0.0)))
    run = calibrate(fx.path, [tmp_path / "clean.npy"], detector_params={"strip": {"n_blends": 4},
                                                                          "teco": {"severities": 2}})
    cal = run.calibration
    local = Scanner(fx.path, batch_size=BATCH, calibration=cal).scan(paths)
    result = distributed.scan(fx.path, paths, batch_size=BATCH, workers=2, calibration=cal)
    assert result.settings.score == "q-fisher"  # small classes: the default falls back from q-profile
    assert result.scores.named["q_profile"] is not None  # still computed on the actors, compared below
    assert result.scores.named["transplant"] is not None  # the held images travel for it as for STRIP
    _same_scores(result, local)
    assert _summary(result) == _summary(local)


def test_rays_own_log_lines_stay_off_the_terminal_unless_vv(tmp_path):
    """Issue 29, point 7: a scan that starts its own Ray cluster prints none of Ray's C++ log lines
    (``[... E 123 123] core_worker.cc: ...``) on stderr; -vv lets them through."""
    import re
    import subprocess

    pytest.importorskip("ray")
    fx = om.trigger_nchw(tmp_path / "model", embed_spec=True)
    folder = write_pngs(tmp_path / "imgs", om.make_images(8, seed=2, triggered_fraction=0.25))
    native = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+ [IWEF] \d+ \d+\] ", re.M)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}

    def scan(*flags):
        return subprocess.run([sys.executable, "-m", "scanner", *flags, "scan", fx.path, str(folder), "--engine", "ray",
                               "--show", "none"], capture_output=True, text=True, timeout=300, env=env)

    quiet = scan()
    assert quiet.returncode == 0, quiet.stderr
    assert not native.search(quiet.stderr), quiet.stderr
    assert "inputs found 8" in quiet.stdout
    loud = scan("-vv")  # Ray 2.60 logs an E line for every actor pool (max_restarts > 0)
    assert loud.returncode == 0 and native.search(loud.stderr), loud.stderr[-2000:]
