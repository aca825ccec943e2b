"""The HTML audit report: self-contained, the right content, small for 10,000 inputs, and rendered
by a real browser (headless Chromium: not blank, no console errors)."""

import base64
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import onnx_models as om
from helpers import write_pngs
from scanner.cli.app import app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    fx = om.trigger_nchw(root / "model", embed_spec=True)
    x = om.make_images(40, seed=7, triggered_fraction=0.25)
    folder = write_pngs(root / "imgs", x)
    (folder / "img_010b.png").write_text("not an image <b>")
    out = root / "report.html"
    run = CliRunner().invoke(app, ["-q", "scan", str(fx.path), str(folder), "-f", "html", "-o", str(out),
                                   "--max-flagged", "0"])
    assert run.exit_code == 1, run.output  # the gate fails; the report is written all the same
    return out, x


def _images(text):
    return re.findall(r"<img alt='([^']*)' src='data:image/(png|jpeg);base64,([^']+)'>", text)


def test_self_contained_no_script_no_network(report):
    text = report[0].read_text()
    assert text.startswith("<!DOCTYPE html>") and "<style>" in text and "<svg" in text
    assert "<script" not in text.lower()
    assert not re.search(r"""(src|href)\s*=\s*['"]?\s*(https?:)?//""", text)  # nothing fetched at view time
    assert "url(" not in text


def test_content_verdict_gate_chart_histograms_failures(report):
    text = report[0].read_text()
    # no calibration: no class named (issue 29), the most flagged one mentioned as such
    assert "suspected target class" not in text and "most flagged: class 0, 10 of 10" in text
    assert "gate: FAILED (10 flagged &gt; --max-flagged 0)" in text
    assert "Flagged rate per predicted class" in text and "aria-label='flagged rate per predicted class'" in text
    assert "aria-label='spc (decision) histogram'" in text and "threshold 0.5" in text
    assert "img_010b.png" in text and "not an image &lt;b&gt;" not in text  # the reason is Pillow's, escaped
    assert "Failed inputs" in text and "CPUExecutionProvider" in text and "scales 3,5,7,9,11" in text


def test_gallery_largest_score_first_with_amplified_copies(report):
    text = report[0].read_text()
    scores = [float(s) for s in re.findall(r"&middot; SPC ([0-9.e+-]+)<br>", text)]
    assert scores and scores == sorted(scores, reverse=True) and len(scores) <= 24
    images = _images(text)
    assert [alt for alt, _, _ in images[:6]] == ["x", "x3", "x5", "x7", "x9", "x11"]
    assert len(images) % 6 == 0 and "class='det'" not in text and "data-detector=" not in text  # SCALE-UP only
    decoded = [np.asarray(Image.open(io.BytesIO(base64.b64decode(data)))).astype(np.float64) / 255
               for _, _, data in images[:6]]
    for n, copy in zip((3, 5, 7, 9, 11), decoded[1:]):
        assert np.abs(copy - np.clip(n * decoded[0], 0, 1)).max() <= 3 / 255  # clip(n x, 0, 1), pixel space


def test_ten_thousand_inputs_stay_small(tmp_path):
    fx = om.trigger_nchw(tmp_path / "model", embed_spec=True)
    np.save(tmp_path / "many.npy", om.to_bytes(om.make_images(10_000, seed=2, triggered_fraction=0.1)))
    out = tmp_path / "report.html"
    run = CliRunner().invoke(app, ["-q", "scan", str(fx.path), str(tmp_path / "many.npy"), "-f", "html", "-o", str(out)])
    assert run.exit_code == 0, run.output
    size = out.stat().st_size
    assert size < 3_000_000, size
    assert len(_images(out.read_text())) == 24 * 6


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_a_real_browser_renders_it_without_errors(report, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium found (Debian package `chromium`; .ci/run installs it when apt-get can)")
    page = report[0]
    if (ROOT / "samples" / "model.onnx").exists():  # the bundled sample: real images in the screenshot
        page = tmp_path / "sample.html"
        run = CliRunner().invoke(app, ["-q", "scan", str(ROOT / "samples/model.onnx"), str(ROOT / "samples/clean"),
                                       str(ROOT / "samples/triggered"), "--max-flagged", "3", "-f", "html", "-o", str(page)])
        assert run.exit_code == 1, run.output
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr",
         "--v=0", f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--window-size=1200,1700", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=180)
    assert shot.exists(), proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    not_white = (np.abs(pixels - 255).sum(axis=2) > 30).mean()
    assert 0.03 < not_white < 0.9, not_white  # text, charts and thumbnails drawn, not a blank page
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200  # images and colours, not a flat error page
    if os.environ.get("SCANNER_SCREENSHOT"):  # docs/report-html.png is made this way
        shutil.copyfile(shot, os.environ["SCANNER_SCREENSHOT"])


def test_evaluate_writes_a_self_contained_page(tmp_path):
    fx = om.trigger_nchw(tmp_path / "model", embed_spec=True)
    x = om.make_images(30, seed=9, triggered_fraction=0.0)
    benign = write_pngs(tmp_path / "benign", x[:20])
    poisoned = write_pngs(tmp_path / "poisoned", om.make_images(10, seed=10, triggered_fraction=1.0))
    page = tmp_path / "eval.html"
    run = CliRunner().invoke(app, ["-q", "evaluate", str(fx.path), "--benign", str(benign), "--poisoned", str(poisoned),
                                   "--html", str(page)])
    assert run.exit_code == 0, run.output
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<script" not in text and "aria-label='ROC curves'" in text
    auroc = next(line for line in run.stdout.splitlines() if line.startswith("SPC (decision): AUROC ")).split()[3].rstrip(";")
    assert f"<td>spc</td><td>{auroc}</td>" in text and "benign spc histogram" in text
    assert "poisoned prob_consistency histogram" in text and "operating point" in text


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """The bundled sample's calibrated report: four detectors, q-profile decides, ties at the top."""
    out = tmp_path_factory.mktemp("sample") / "report.html"
    run = CliRunner().invoke(app, ["-q", "scan", str(ROOT / "samples/model.onnx"), str(ROOT / "samples/clean"),
                                   str(ROOT / "samples/triggered"), "--calibration",
                                   str(ROOT / "samples/calibration.json"), "-f", "html", "-o", str(out)])
    assert run.exit_code == 0, run.output
    return out.read_text()


def test_title_says_what_decided(calibrated):
    """Issue 29, point 6: not "SCALE-UP" when four detectors and a calibrated score decide."""
    assert "<h1>Backdoor-input scan: decided by Q-PROFILE (scaleup + strip + teco + transplant)</h1>" in calibrated
    assert "SCALE-UP backdoor-input scan" not in calibrated


def test_deciding_histogram_first_and_a_threshold_on_every_calibrated_score(calibrated):
    names = re.findall(r"aria-label='([\w ()-]+) histogram'", calibrated)
    assert names[0] == "q_profile (decision)", names
    calibrated_names = [n for n in names if n.startswith("q_")]
    assert len(calibrated_names) >= 5  # q_spc, q_prob_consistency, q_strip, q_teco, q_profile, q_fisher
    cards = calibrated.split("<div class='card'><b>")[1:]
    for card in cards:
        name = card.split("<")[0].lower()
        if name.startswith(("q_", "nspc")):
            assert "threshold " in card, name
    assert calibrated.index("<h2>Scores</h2>") < calibrated.index("<h2>Model and settings</h2>")


def test_ties_broken_by_the_other_calibrated_scores(calibrated):
    cards = re.findall(r"&middot; Q-PROFILE ([0-9.e+-]+)<br><span class='muted'>(.*?)</span>", calibrated)
    assert len(cards) == 20
    top = [float(score) for score, _ in cards]
    assert top == sorted(top, reverse=True)
    tied = [others for score, others in cards if float(score) == top[0]]
    assert len(tied) > 2  # the sample's triggered inputs share the top score

    def mean_q(others):
        values = [float(v) for k, v in re.findall(r"(q_\w+) ([0-9.e+-]+)", others)]
        return sum(values) / len(values)

    keys = [mean_q(o) for o in tied]
    assert keys == sorted(keys, reverse=True), keys


def test_preprocessing_is_a_table_with_its_sources(calibrated):
    table = calibrated.split("<table class='prep'>")[1].split("</table>")[0]
    assert "<th>field</th><th>value</th><th>from</th>" in table
    assert "<th>mean</th><td class='mono'>0.4914, 0.4822, 0.4465</td><td class='muted'>model metadata</td>" in table
    assert "schema_version" not in table and "input_name=" not in calibrated


def _decoded(data):
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")).astype(np.float64) / 255


def test_gallery_shows_each_deciding_detectors_queries(calibrated):
    """Issue 29, point 6: every detector that decided shows its queries of a suspicious input,
    under its own heading; only SCALE-UP's carry the labels the scan kept."""
    from scanner.decide.calibration import Calibration
    from scanner.detectors import from_settings

    cards = calibrated.split("<div class='card'><div class='name mono'>")[1:]
    assert len(cards) == 20
    first = cards[0]
    heads = re.findall(r"data-detector='(\w+)'><b>([^<]+)</b>", first)
    assert heads == [("scaleup", "SCALE-UP"), ("strip", "STRIP"), ("teco", "TeCo"), ("transplant", "Region transplant")]
    alts = [alt for alt, _, _ in _images(first)]
    assert alts[:6] == ["x", "x3", "x5", "x7", "x9", "x11"]
    assert alts[6:10] == ["blend 1", "blend 2", "blend 3", "blend 4"]
    assert alts[10:22] == [f"{c.replace('_', ' ')} 2" for c in
                           ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "gaussian_blur",
                            "defocus_blur", "motion_blur", "contrast", "brightness", "saturate", "pixelate",
                            "jpeg_compression")]
    assert alts[22:] == [f"region {i},{j}" for i in (1, 2, 3) for j in (1, 2, 3)]
    labelled = re.findall(r"<img alt='([^']*)'[^>]*>[^<]*<br><span", first)
    assert labelled == ["x", "x3", "x5", "x7", "x9", "x11"]  # the report runs no model: no other labels
    # what is drawn is the query: STRIP's blend j is clip(x + held image j, 0, 1), the held images
    # being the calibration's, as the scan took them
    cal = Calibration.load(ROOT / "samples/calibration.json")
    strip, transplant = [p for p in from_settings(cal.detectors, cal.clean_images).parts
                         if p.name in ("strip", "transplant")]
    pictures = {alt: _decoded(data) for alt, _, data in _images(first)}
    x = pictures["x"]
    for j in (1, 2, 3, 4):
        np.testing.assert_allclose(pictures[f"blend {j}"], np.clip(x + strip.held_images[j - 1], 0, 1), atol=1.5 / 255)
    corner = np.array(transplant.held_images[0], np.float64)
    corner[-11:, -11:] = x[-11:, -11:]  # the 32x32 image's region 3,3 (rows and columns 21..31)
    np.testing.assert_allclose(pictures["region 3,3"], corner, atol=1.5 / 255)
    # every detector for the first eight, SCALE-UP's copies only for the others (the page stays small)
    assert [len(_images(c)) for c in cards] == [31] * 8 + [6] * 12
    assert len(calibrated) < 1_500_000


def test_queries_of_a_detector_fit_by_hand_are_left_out_and_said_so(tmp_path):
    from scanner import Scanner
    from scanner.detectors import Combined, ScaleUp, Strip
    from scanner.report.html import write_html

    fx = om.trigger_nchw(tmp_path / "model", embed_spec=True)
    folder = write_pngs(tmp_path / "imgs", om.make_images(6, seed=4, triggered_fraction=0.5))
    strip = Strip.from_images(om.make_images(4, seed=5, triggered_fraction=0.0))
    result = Scanner(fx.path, device="cpu", detector=Combined([ScaleUp(), strip])).scan(folder)
    page = io.StringIO()
    write_html(result, result.summary(), None, page)
    text = page.getvalue()
    assert "not drawn: the queries of strip (the clean images it uses are not in the scan's calibration)" in text
    assert "data-detector='scaleup'" in text and "data-detector='strip'" not in text
    assert [alt for alt, _, _ in _images(text)][:6] == ["x", "x3", "x5", "x7", "x9", "x11"]
