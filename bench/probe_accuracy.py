"""How often ``scanner probe`` finds the right preprocessing, measured on models whose
preprocessing is known: the zoo's models, rewritten the ways third-party files come.

    python -m bench.probe_accuracy [--models clean,gtsrb-clean,...] [--sample 200]

Each zoo model takes unit-range pixels normalized outside the graph by its data set's mean/std.
Every variant is written without metadata (so the probe sees only the graph), by wrapping the
ONNX graph with nodes in front of its input, never by retraining:

* ``stats-outside``: the model as exported (right: [0, 1], its data set's mean/std);
* ``norm-inside``: ``(x - mean) / std`` inside the graph (right: [0, 1], no normalization);
* ``byte-inside``: ``x / 255`` then the normalization inside (right: [0, 255], none);
* ``nhwc-inside``: an NHWC input, transposed and normalized inside (right: [0, 1], none);
* ``bgr-inside``: channels reversed and normalized inside, 3-channel models only (right:
  [0, 1], none, BGR).

For each variant the probe runs twice on the same test images: without true labels (the
label-free ranking) and with them (accuracy). A choice counts as right when its accuracy is
within 2 points of the right preprocessing's (GTSRB's statistics are not among the candidates,
so a close one counts); "cannot tell" is counted apart (no recommendation is printed then). The
label-free rule before issue 27 (``diversity x confidence``, whose first choice was printed as
flags even when it could not tell) is scored on the same trials for comparison. Writes
``bench/results/probe.md``.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from scanner.inputs.find import InputSet, MemoryArray
from scanner.model.loader import load_model
from scanner.model.probe import probe

from . import cifar, datasets

REPO = Path(__file__).resolve().parent.parent
ZOO = REPO / "bench" / "zoo"
DEFAULT_MODELS = ("clean", "badnets", "wanet", "vgg8-bn-clean", "gtsrb-clean", "gtsrb-badnets-t41", "mnist-clean",
                  "mnist-badnets-white-t5")
VARIANTS = ("stats-outside", "norm-inside", "byte-inside", "nhwc-inside", "bgr-inside")
CLOSE = 0.02  # a choice within 2 accuracy points of the right preprocessing counts as right


def _spec(model: onnx.ModelProto) -> dict:
    import json

    meta = {p.key: p.value for p in model.metadata_props}
    return json.loads(meta["scanner.spec"])


def rewrite(src: Path, variant: str, out: Path) -> dict | None:
    """Write ``variant`` of the model at ``src`` to ``out`` without metadata; the right spec
    fields (pixel_range, mean, std, bgr), or None when the variant does not apply."""
    model = onnx.load(str(src))
    spec = _spec(model)
    c, h, w = spec["channels"], spec["height"], spec["width"]
    mean = np.asarray(spec["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(spec["std"], np.float32).reshape(1, -1, 1, 1)
    del model.metadata_props[:]
    if variant == "bgr-inside" and c != 3:
        return None
    if variant == "stats-outside":
        onnx.save(model, str(out))
        return {"pixel_range": "unit", "mean": spec["mean"], "std": spec["std"], "bgr": False}
    graph = model.graph
    inner = graph.input[0].name
    outer = "image"
    nodes, inits = [], []
    x = outer
    shape = ["batch", c, h, w]
    if variant == "nhwc-inside":
        shape = ["batch", h, w, c]
        nodes.append(helper.make_node("Transpose", [x], ["to_nchw"], perm=[0, 3, 1, 2]))
        x = "to_nchw"
    if variant == "byte-inside":
        inits.append(numpy_helper.from_array(np.float32(255.0).reshape(()), "byte_max"))
        nodes.append(helper.make_node("Div", [x, "byte_max"], ["to_unit"]))
        x = "to_unit"
    if variant == "bgr-inside":
        inits.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), "bgr_order"))
        nodes.append(helper.make_node("Gather", [x, "bgr_order"], ["to_rgb"], axis=1))
        x = "to_rgb"
    inits += [numpy_helper.from_array(mean, "norm_mean"), numpy_helper.from_array(std, "norm_std")]
    nodes += [helper.make_node("Sub", [x, "norm_mean"], ["centred"]),
              helper.make_node("Div", ["centred", "norm_std"], [inner])]
    new_input = helper.make_tensor_value_info(outer, TensorProto.FLOAT, shape)
    kept = [i for i in graph.input if i.name != inner]
    del graph.input[:]
    graph.input.extend([new_input, *kept])
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old)
    graph.initializer.extend(inits)
    onnx.save(model, str(out))
    return {"pixel_range": "byte" if variant == "byte-inside" else "unit", "mean": None, "std": None,
            "bgr": variant == "bgr-inside"}


def _test_images(dataset: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if dataset == "cifar10":
        x, y, _ = cifar.load_split(cifar.DEFAULT_DATA, "test")
    else:
        ds = datasets.load(dataset)
        x, y = ds.x_test, ds.y_test
    pick = np.sort(np.random.default_rng(seed).choice(len(x), size=min(n, len(x)), replace=False))
    return x[pick], y[pick]


def _dataset_of(name: str) -> str:
    return "gtsrb" if name.startswith("gtsrb") else "mnist" if name.startswith("mnist") else "cifar10"


def _same(fields: dict, right: dict) -> bool:
    if fields["pixel_range"] != right["pixel_range"] or bool(fields["bgr"]) != bool(right["bgr"]):
        return False
    if (fields["mean"] is None) != (right["mean"] is None):
        return False
    return fields["mean"] is None or np.allclose(fields["mean"], right["mean"], atol=0.02)


def run_one(path: Path, right: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """The probe without and with true labels on ``x``; what it chose and how good that is."""
    model = load_model(path, device="cpu")
    inputs = InputSet()
    inputs.add_array(MemoryArray(x, "test"))
    blind = probe(model, inputs, sample=len(x))
    labels_file = path.with_suffix(".labels.csv")
    labels_file.write_text("".join(f"test[{i}],{int(t)}\n" for i, t in enumerate(y)))
    told = probe(model, inputs, labels_file=labels_file, sample=len(x))
    channels = model.spec.channels
    acc = {str(t.candidate): float((t.labels == y).mean()) for t in blind.trials}
    right_acc = max((a for t, a in zip(blind.trials, acc.values())
                     if _same(t.candidate.fields(channels), right)), default=None)
    if right_acc is None:  # the right statistics are not a candidate (GTSRB): the closest one
        right_acc = max(acc.values())
    out = {"right_accuracy": right_acc, "old": _old_rule(blind, acc, right_acc)}
    for key, result in (("blind", blind), ("labels", told)):
        chosen = result.best.candidate
        out[key] = {"decided": result.decided, "choice": str(chosen), "accuracy": acc[str(chosen)],
                    "right": result.decided and acc[str(chosen)] >= right_acc - CLOSE,
                    "wrong": result.decided and acc[str(chosen)] < right_acc - CLOSE}
    return out


def _old_rule(result, acc: dict, right_acc: float) -> dict:
    """The label-free ranking before issue 27 on the same trials: ``diversity x confidence``,
    called when the first different runner-up scores under 90% of it; its first choice was
    printed as flags either way."""
    def old(t):
        return t.diversity * (1.0 if t.confidence is None else t.confidence)

    trials = sorted(result.trials, key=lambda t: -old(t))  # stable: the candidates' own order on ties
    best = trials[0]
    other = next((t for t in trials[1:] if not np.array_equal(t.labels, best.labels)), None)
    decided = old(best) > 0.05 and (other is None or old(other) < 0.9 * old(best))
    good = acc[str(best.candidate)] >= right_acc - CLOSE
    return {"decided": decided, "choice": str(best.candidate), "accuracy": acc[str(best.candidate)],
            "right": good, "wrong": not good}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.probe_accuracy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    ap.add_argument("--sample", type=int, default=200, help="test images per model (all are probed)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    started = time.time()
    rows = []
    data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            dataset = _dataset_of(name)
            if dataset not in data:
                data[dataset] = _test_images(dataset, args.sample, args.seed)
            x, y = data[dataset]
            for variant in VARIANTS:
                path = Path(tmp) / f"{name}-{variant}.onnx"
                right = rewrite(ZOO / name / "model.onnx", variant, path)
                if right is None:
                    continue
                r = run_one(path, right, x, y)
                rows.append((name, variant, r))
                print(f"{name:<24} {variant:<14} right {r['right_accuracy']:.3f}  "
                      f"blind {'decided' if r['blind']['decided'] else 'cannot tell':<11} {r['blind']['choice']:<40} "
                      f"{r['blind']['accuracy']:.3f}  labels {r['labels']['choice']:<40} {r['labels']['accuracy']:.3f}",
                      flush=True)
    seconds = time.time() - started
    write(rows, args, seconds)


def write(rows, args, seconds: float) -> None:
    def tally(key):
        n = len(rows)
        right = sum(r[key]["right"] for _, _, r in rows)
        wrong = sum(r[key]["wrong"] for _, _, r in rows)
        return n, right, wrong, n - right - wrong

    lines = ["# `scanner probe`: how often it finds the right preprocessing", "",
             f"Command: `python -m bench.probe_accuracy --models {args.models} --sample {args.sample}` "
             f"({time.strftime('%Y-%m-%d', time.gmtime())}, {platform.machine()}, "
             f"{__import__('os').cpu_count()} CPU cores, no GPU; {seconds:.0f} s).", "",
             "Zoo models rewritten without metadata (see the script's docstring for the variants); "
             f"{args.sample} test images of each model's data set, all probed. A choice is right when its "
             f"accuracy is within {CLOSE * 100:g} points of the right preprocessing's; `cannot tell` prints no "
             "recommendation.", ""]
    for key, what in (("blind", "without true labels"), ("labels", "with true labels")):
        n, right, wrong, undecided = tally(key)
        lines.append(f"- {what}: {right} of {n} right, {wrong} wrong, {undecided} cannot tell")
    first = sum(r["blind"]["accuracy"] >= r["right_accuracy"] - CLOSE for _, _, r in rows)
    lines.append(f"- without true labels, the first-ranked candidate (printed only when the probe can tell): "
                 f"right in {first} of {len(rows)}")
    n, right, wrong, _ = tally("old")
    called = sum(r["old"]["decided"] for _, _, r in rows)
    lines.append(f"- without true labels, the rule before issue 27 (`diversity x confidence`, its first choice "
                 f"printed as flags even when it could not tell): {right} of {n} first choices right, {wrong} wrong; "
                 f"it called {called} of them")
    lines += ["", "| model | variant | right prep. accuracy | without labels | accuracy | with labels | accuracy "
              "| before issue 27, without labels | accuracy |", "|---|---|---|---|---|---|---|---|---|"]
    for name, variant, r in rows:
        def cell(k):
            c = r[k]
            mark = "" if not c["decided"] else (" (right)" if c["right"] else " (**wrong**)")
            return (f"{c['choice']}{mark}" if c["decided"] else f"cannot tell (most likely {c['choice']})",
                    f"{c['accuracy']:.3f}")
        b, lab = cell("blind"), cell("labels")
        o = r["old"]
        before = f"{o['choice']}{'' if o['decided'] else ' (cannot tell, flags printed)'}" + (
            "" if o["right"] else " (**wrong**)")
        lines.append(f"| {name} | {variant} | {r['right_accuracy']:.3f} | {b[0]} | {b[1]} | {lab[0]} | {lab[1]} "
                     f"| {before} | {o['accuracy']:.3f} |")
    out = REPO / "bench" / "results" / "probe.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
