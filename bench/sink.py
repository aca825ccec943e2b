"""The amplification sink: where clip(n * x, 0, 1) sends a model's benign test images.

    python -m bench.sink [--entry clean] [--zoo bench/zoo] [--scales 3,5,7,9,11]

For one zoo entry (default: the clean CIFAR-10 model) and every image of its data set's test
split, the predicted label unscaled and at each scale n (amplified in pixel space, then
normalized with the manifest's mean / std, run through ONNX Runtime directly). Writes
``bench/results/sink_<entry>.{md,json}``: per class, the share of all test images predicted as
that class at each scale, and the class that amplified images reach least often (lowest mean
share over the scales), the non-sink target of the zoo's retrained attacks.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from . import datasets

REPO = Path(__file__).resolve().parent.parent


def predict_scaled(model: Path, x_u8: np.ndarray, mean, std, scales, batch: int = 500) -> dict[int, np.ndarray]:
    """{n: labels} for n = 1 (unscaled) and every scale; x is uint8 (N, H, W, C)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    mean = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    out = {n: [] for n in (1, *scales)}
    for i in range(0, len(x_u8), batch):
        xb = x_u8[i:i + batch].astype(np.float32).transpose(0, 3, 1, 2) / np.float32(255)
        for n in out:
            xn = np.clip(xb * np.float32(n), 0, 1)
            logits = sess.run(None, {name: (xn - mean) / std})[0]
            out[n].append(logits.argmax(1))
    return {n: np.concatenate(v) for n, v in out.items()}


def sink_table(labels: dict[int, np.ndarray], num_classes: int) -> dict:
    share = {n: (np.bincount(v, minlength=num_classes) / len(v)).tolist() for n, v in labels.items()}
    scales = [n for n in labels if n != 1]
    mean_share = np.mean([share[n] for n in scales], axis=0)
    least = int(np.argmin(mean_share))
    most = int(np.argmax(mean_share))
    return {"share": {str(n): s for n, s in share.items()}, "mean_share_over_scales": mean_share.tolist(),
            "least_reached": least, "most_reached": most,
            "least_reached_per_scale": {str(n): int(np.argmin(share[n])) for n in scales},
            "most_reached_per_scale": {str(n): int(np.argmax(share[n])) for n in scales}}


def render(doc: dict) -> str:
    classes, t = doc["class_names"], doc["table"]
    cols = ["1 (unscaled)"] + [str(n) for n in doc["scales"]]
    lines = [f"# Amplification sink: {doc['entry']} ({doc['dataset']})", "",
             f"Command: `{doc['command']}` ({doc['date']}, {doc['machine']}, {doc['seconds']} s).", "",
             f"Share of all {doc['n_images']:,} test images predicted as each class, unscaled and after "
             "clip(n * x, 0, 1) in pixel space (then the model's normalization).", "",
             "| class | " + " | ".join(f"n = {c}" for c in cols) + " | mean over scales |",
             "|---|" + "---|" * (len(cols) + 1)]
    keys = ["1"] + [str(n) for n in doc["scales"]]
    for k, name in enumerate(classes):
        cells = [f"{100 * t['share'][key][k]:.2f}%" for key in keys]
        lines.append(f"| {k} {name} | " + " | ".join(cells) + f" | {100 * t['mean_share_over_scales'][k]:.2f}% |")
    least, most = t["least_reached"], t["most_reached"]
    lines += ["",
              f"Sink (most reached, mean over scales): **{most} {classes[most]}** "
              f"({100 * t['mean_share_over_scales'][most]:.1f}%; {100 * t['share'][str(doc['scales'][-1])][most]:.1f}% "
              f"at n = {doc['scales'][-1]}).",
              f"Least reached (mean over scales): **{least} {classes[least]}** "
              f"({100 * t['mean_share_over_scales'][least]:.2f}%). Least reached at each scale: "
              + ", ".join(f"n = {n}: {classes[c]}" for n, c in t["least_reached_per_scale"].items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sink", description=__doc__.split("\n\n")[0])
    ap.add_argument("--entry", default="clean")
    ap.add_argument("--zoo", type=Path, default=REPO / "bench" / "zoo")
    ap.add_argument("--data", default=None)
    ap.add_argument("--scales", default="3,5,7,9,11")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    started = time.time()
    scales = [int(s) for s in args.scales.split(",")]
    entry = args.zoo / args.entry
    manifest = json.loads((entry / "manifest.json").read_text())
    dataset = manifest.get("dataset", "cifar10")
    ds = datasets.load(dataset, args.data, manifest.get("split", {}).get("seed", 0) or 0)
    labels = predict_scaled(entry / "model.onnx", ds.x_test, manifest["input"]["mean"], manifest["input"]["std"], scales)
    doc = {"command": "python -m bench.sink " + " ".join(argv if argv is not None else sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} CPU cores",
           "entry": args.entry, "dataset": dataset, "model_sha256": manifest["model_sha256"],
           "n_images": int(len(ds.y_test)), "scales": scales, "class_names": list(ds.classes),
           "test_accuracy_unscaled": float((labels[1] == ds.y_test).mean()),
           "table": sink_table(labels, ds.num_classes)}
    doc["seconds"] = round(time.time() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"sink_{args.entry}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / f"sink_{args.entry}.md").write_text(render(doc))
    print(render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
