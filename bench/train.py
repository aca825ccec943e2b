"""Train one backdoored (or clean) model of the zoo and export it to ONNX.

    python -m bench.train ATTACK [--dataset cifar10|gtsrb|mnist] [--target K] [--data DIR]
                                 [--epochs N] [--arch ARCH] [--out bench/zoo]

The zoo entry is named ``[DATASET-][ARCH-]ATTACK[-tK]``: the data set unless CIFAR-10, the
network unless the data set's default, and the target when ``--target`` is given (so the
original CIFAR-10 entries, target 0 by default, keep their names: ``badnets``, ``blended``...).

Poisons the training set (seeded), trains with random-crop (reflect pad 4) + horizontal-flip
augmentation, SGD with Nesterov momentum, a one-cycle (linear warm-up, linear decay) learning
rate and label smoothing, checkpointing every epoch to ``bench/.work/<attack>/`` so an
interrupted run resumes where it stopped. Then it measures clean accuracy on the test split and
the attack success rate (ASR: fraction of triggered non-target test images classified as the
target) and writes ``OUT/<attack>/{model.onnx, manifest.json, poisoned_test.npz}``.

``--sample`` instead writes the project's sample (``samples/model.onnx`` plus a few PNGs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import attacks as A
from . import cifar, datasets, nets

REPO = cifar.REPO_ROOT


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _norm_consts(mean=cifar.MEAN, std=cifar.STD):
    c = len(mean)
    return torch.tensor(mean).view(1, c, 1, 1), torch.tensor(std).view(1, c, 1, 1)


def _augment(xb: torch.Tensor, gen: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Per-sample random crop (reflect padding) and horizontal flip of a float NCHW batch."""
    n, c, h, w = xb.shape
    xp = F.pad(xb, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    out = xp[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    flips = torch.rand(n, generator=gen) < 0.5
    if flip:
        out[flips] = out[flips].flip(3)
    return out


@torch.no_grad()
def predict(model: torch.nn.Module, x_u8: np.ndarray, batch: int = 1000, mean=cifar.MEAN, std=cifar.STD) -> np.ndarray:
    """Predicted labels for uint8 HWC images."""
    model.eval()
    mean, std = _norm_consts(mean, std)
    out = []
    for i in range(0, len(x_u8), batch):
        xb = torch.from_numpy(x_u8[i:i + batch]).permute(0, 3, 1, 2).float().div_(255)
        xb = ((xb - mean) / std).contiguous(memory_format=torch.channels_last)
        out.append(model(xb).argmax(1).numpy())
    return np.concatenate(out)


def train(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, ckpt_dir: Path,
          seed: int, batch: int = 256, lr: float = 0.2, wd: float = 5e-4, smoothing: float = 0.2,
          physical_mask: np.ndarray | None = None, eval_fn=None, mean=cifar.MEAN, std=cifar.STD,
          pad: int = 4, flip: bool = True) -> float:
    """Train in place with checkpoints; returns training seconds (summed over resumed runs)."""
    torch.manual_seed(seed)
    model.to(memory_format=torch.channels_last)
    decay, no_decay = [], []
    for n_, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0}],
                          lr=lr, momentum=0.9, nesterov=True)
    steps_per_epoch = len(x) // batch
    total = epochs * steps_per_epoch
    warm = max(1, int(0.2 * total))

    def lr_at(step: int) -> float:
        if step < warm:
            return lr * (0.1 + 0.9 * step / warm)
        return lr * max(0.0, (total - step) / (total - warm))

    ckpt = ckpt_dir / "ckpt.pt"
    start, elapsed = 0, 0.0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        if state["epochs"] == epochs:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            start, elapsed = state["epoch"], state["elapsed"]
            _log(f"resumed from {ckpt} at epoch {start}/{epochs}")
        else:
            _log(f"ignoring {ckpt}: it was for {state['epochs']} epochs, not {epochs}")
    mean, std = _norm_consts(mean, std)
    xt = torch.from_numpy(x)  # uint8 NHWC
    yt = torch.from_numpy(y).long()
    pm = torch.from_numpy(physical_mask) if physical_mask is not None else None
    for epoch in range(start, epochs):
        t0 = time.time()
        model.train()
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        perm = torch.randperm(len(xt), generator=gen)
        tot_loss, correct, seen = 0.0, 0, 0
        for s in range(steps_per_epoch):
            idx = perm[s * batch:(s + 1) * batch]
            xb = xt[idx].permute(0, 3, 1, 2).float().div_(255)
            if pm is not None:
                sel = pm[idx]
                if sel.any():
                    xb[sel] = A.physical_transform(xb[sel], gen)
            xb = _augment(xb, gen, pad=pad, flip=flip)
            xb = ((xb - mean) / std).contiguous(memory_format=torch.channels_last)
            yb = yt[idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(epoch * steps_per_epoch + s)
            out = model(xb)
            loss = F.cross_entropy(out, yb, label_smoothing=smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot_loss += loss.item() * len(yb)
            correct += (out.argmax(1) == yb).sum().item()
            seen += len(yb)
        elapsed += time.time() - t0
        msg = (f"epoch {epoch + 1}/{epochs} loss {tot_loss / seen:.3f} train-acc {correct / seen:.3f} "
               f"({time.time() - t0:.0f}s, total {elapsed / 60:.1f} min)")
        if eval_fn is not None and (epoch + 1 == epochs or (epoch + 1) % 4 == 0):
            msg += " " + eval_fn()
        _log(msg)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch + 1,
                    "epochs": epochs, "elapsed": elapsed}, ckpt.with_suffix(".tmp"))
        ckpt.with_suffix(".tmp").replace(ckpt)
    model.eval()
    return elapsed


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_onnx(model: torch.nn.Module, path: Path, source: str | None = None, ds=None):
    """Export through the project's exporter (mean/std recorded as metadata, applied outside)."""
    from exporters import export  # the project's exporter; needs onnx + torch

    model = model.to(memory_format=torch.contiguous_format).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    if ds is None:
        return export(model, str(path), input_shape=(3, 32, 32), mean=cifar.MEAN, std=cifar.STD,
                      pixel_range="unit", class_names=list(cifar.CLASSES), source=source)
    return export(model, str(path), input_shape=ds.shape, mean=ds.mean, std=ds.std,
                  pixel_range="unit", class_names=list(ds.classes), source=source)


def entry_name(dataset: str, attack: str, target: int | None, arch: str, default_arch: str = "resnet8-xs",
               seed: int = 0) -> str:
    """``[DATASET-][ARCH-]ATTACK[-tK][-sS]`` (see the module docstring); ``-sS`` only for a seed other than 0."""
    parts = [] if dataset == "cifar10" else [dataset]
    if arch != default_arch:
        parts.append(arch)
    parts.append(attack)
    if target is not None and attack != "clean":
        parts.append(f"t{target}")
    if seed:
        parts.append(f"s{seed}")
    return "-".join(parts)


def load_clean_model(arch: str, work: Path, zoo: Path, clean_name: str = "clean") -> torch.nn.Module:
    """The clean model: its training checkpoint, or else rebuilt from the committed zoo ONNX."""
    path = work / clean_name / "final.pt"
    if path.exists():
        m = nets.build(arch)
        m.load_state_dict(torch.load(path)["model"])
        return m.eval()
    onnx_path = zoo / clean_name / "model.onnx"
    if arch == "resnet8-xs" and onnx_path.exists():
        _log(f"clean model rebuilt from {onnx_path} ({path} missing)")
        return nets.from_onnx(onnx_path, arch)
    raise SystemExit(f"this attack needs the clean model first: run `python -m bench.train clean` ({path} missing)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("attack", choices=A.ATTACKS)
    ap.add_argument("--dataset", default="cifar10", choices=datasets.NAMES)
    ap.add_argument("--data", default=None, help="data location (default: ../shared/data/<data set>)")
    ap.add_argument("--split-seed", type=int, default=0, help="seed of the stratified split (GTSRB, MNIST)")
    ap.add_argument("--target", type=int, default=None,
                    help=f"target class (default {A.TARGET}; when given, the entry name ends in -t<K>)")
    ap.add_argument("--patch", type=int, default=3, help="side of the BadNets / PhysicalBA square (default 3)")
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--arch", default=None, choices=sorted(nets.ARCHS), help="default: the data set's (resnet8-xs; MNIST vgg-mnist)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "bench" / "zoo"), help="zoo root (default: %(default)s)")
    ap.add_argument("--n-test", type=int, default=1000, help="triggered test images saved in poisoned_test.npz (0: all)")
    ap.add_argument("--sample", action="store_true", help="also write samples/ (model.onnx, clean/, triggered/)")
    ap.add_argument("--no-export", action="store_true", help="train and evaluate only")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    work = cifar.WORK_DIR
    ds = datasets.load(args.dataset, args.data, args.split_seed)
    arch = args.arch or ds.default_arch
    name = entry_name(args.dataset, args.attack, args.target, arch, ds.default_arch, args.seed)
    target = A.TARGET if args.target is None else args.target
    if not 0 <= target < ds.num_classes:
        raise SystemExit(f"--target {target}: {args.dataset} has classes 0..{ds.num_classes - 1}")
    # the original CIFAR-10 entries kept their run directories: <attack> or <attack>-<arch>
    run_dir = work / (name if args.dataset != "cifar10" or args.target is not None or arch == "resnet8-xs" or args.seed
                      else f"{args.attack}-{arch}")
    x_tr, y_tr, x_te, y_te = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    c, h, _ = ds.shape
    attack = A.make_attack(args.attack, seed=args.seed, target=target, size=h, channels=c, patch=args.patch)
    if attack.physical and args.dataset != "cifar10":
        raise SystemExit("physicalba is CIFAR-10 only here")
    norm = {"mean": ds.mean, "std": ds.std}

    clean_model = None
    if attack.needs_clean_model:
        if args.dataset != "cifar10":
            raise SystemExit(f"{args.attack} needs a clean model and is CIFAR-10 only here")
        clean_model = load_clean_model(arch, work, Path(args.out), entry_name(args.dataset, "clean", None, arch))
        prep = run_dir / "trigger.npy"
        if attack.name == "tuap":
            if prep.exists():
                attack.trigger = A.AdditiveTrigger(np.load(prep))
            else:
                t0 = time.time()
                attack.prepare(clean_model, x_tr, y_tr)
                run_dir.mkdir(parents=True, exist_ok=True)
                np.save(prep, attack.trigger.delta)
                _log(f"TUAP computed in {time.time() - t0:.0f}s")
            nt = np.flatnonzero(y_te != attack.target)
            asr0 = float((predict(clean_model, attack.trigger(x_te[nt]), **norm) == attack.target).mean())
            attack.params["uap_fooling_rate_on_clean_model"] = round(asr0, 4)
            _log(f"TUAP fooling rate on the clean model (test, non-target): {asr0:.3f}")

    t0 = time.time()
    poison_cache = run_dir / "poisoned_train.npz"
    if attack.needs_clean_model and poison_cache.exists():
        z = np.load(poison_cache)
        xp, yp, mask = z["x"], z["y"], z["mask"]
    else:
        xp, yp, mask = attack.poison_training_set(x_tr, y_tr, clean_model)
        if attack.needs_clean_model:
            run_dir.mkdir(parents=True, exist_ok=True)
            np.savez(poison_cache, x=xp, y=yp, mask=mask)
    _log(f"{name}: {int(mask.sum())} poisoned training images ({time.time() - t0:.0f}s)")

    nontarget = np.flatnonzero(y_te != attack.target)
    x_trig = attack.trigger(x_te[nontarget]) if attack.trigger is not None else None

    model = nets.build(arch, num_classes=ds.num_classes, in_channels=c)

    def evaluate() -> str:
        acc = float((predict(model, x_te, **norm) == y_te).mean())
        s = f"clean-acc {acc:.4f}"
        if x_trig is not None:
            s += f" ASR {float((predict(model, x_trig, **norm) == attack.target).mean()):.4f}"
        model.train()
        return s

    _log(f"training {name}: {arch} ({nets.n_params(model)} params) for {args.epochs} epochs on {len(xp)} images")
    secs = train(model, xp, yp, epochs=args.epochs, ckpt_dir=run_dir, seed=args.seed, batch=args.batch,
                 lr=args.lr, physical_mask=mask if attack.physical else None, eval_fn=evaluate,
                 pad=ds.pad, flip=ds.flip, **norm)
    torch.save({"model": model.state_dict(), "arch": arch}, run_dir / "final.pt")

    acc = float((predict(model, x_te, **norm) == y_te).mean())
    asr = float((predict(model, x_trig, **norm) == attack.target).mean()) if x_trig is not None else None
    _log(f"{name}: clean accuracy {acc:.4f}" + (f", ASR {asr:.4f}" if asr is not None else ""))
    metrics = {"clean_accuracy": round(acc, 4), "attack_success_rate": None if asr is None else round(asr, 4),
               "train_minutes": round(secs / 60, 2)}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if args.no_export:
        return 0

    out_dir = Path(args.out) / name
    out_dir.mkdir(parents=True, exist_ok=True)
    source = f"bench.train {args.attack} ({args.dataset}, {arch}, {args.epochs} epochs, seed {args.seed}" + \
             ("" if attack.trigger is None else f", target {attack.target}") + ")"
    report = export_onnx(model, out_dir / "model.onnx", source, ds)
    _log(f"exported {out_dir / 'model.onnx'}: {report}")
    command = f"python -m bench.train {args.attack}"
    if args.dataset != "cifar10":
        command += f" --dataset {args.dataset}"
    if args.split_seed:
        command += f" --split-seed {args.split_seed}"
    if args.target is not None:
        command += f" --target {args.target}"
    if args.patch != 3:
        command += f" --patch {args.patch}"
    command += f" --epochs {args.epochs}"
    if arch != ds.default_arch:
        command += f" --arch {arch}"
    for flag, val, default in (("--batch", args.batch, 256), ("--lr", args.lr, 0.2), ("--seed", args.seed, 0)):
        if val != default:
            command += f" {flag} {val}"
    n_nontarget = len(nontarget)
    manifest = {
        "attack": args.attack,
        "entry": name,
        "dataset": args.dataset,
        "data_source": ds.source,
        "split": datasets.split_record(ds),
        "target_class": None if attack.trigger is None else attack.target,
        "target_name": None if attack.trigger is None else ds.classes[attack.target],
        "poison_rate": float(mask.mean()),
        "n_poisoned": int(mask.sum()),
        "clean_label": attack.clean_label,
        "attack_params": attack.params,
        "seed": args.seed,
        "architecture": arch,
        "network": arch,
        "n_params": nets.n_params(model),
        "epochs": args.epochs,
        "optimizer": f"SGD nesterov momentum 0.9, batch {args.batch}, one-cycle peak lr {args.lr}, "
                     f"wd 5e-4, label smoothing 0.2; augmentation: random crop (reflect pad {ds.pad})"
                     + (" + flip" if ds.flip else ", no flip"),
        "input": {"shape": list(ds.shape), "pixel_range": "unit", "mean": list(ds.mean), "std": list(ds.std)},
        "class_names": list(ds.classes),
        "clean_accuracy": metrics["clean_accuracy"],
        "clean_accuracy_definition": f"all {len(y_te)} images of the test split",
        "attack_success_rate": metrics["attack_success_rate"],
        "asr_definition": f"fraction of triggered non-target test images (all {n_nontarget:,}) classified as the target",
        "train_minutes": metrics["train_minutes"],
        "hardware": "2 CPU cores (torch CPU build)",
        "model_sha256": _sha256(out_dir / "model.onnx"),
        "model_bytes": (out_dir / "model.onnx").stat().st_size,
        "export": {"exporter": getattr(report, "exporter", None), "opset": getattr(report, "opset", None),
                   "parity_max_abs_diff": getattr(report, "max_abs_diff", None),
                   "parity_argmax_agreement": getattr(report, "argmax_agreement", None)},
        "command": command,
        "date": time.strftime("%Y-%m-%d"),
    }
    if x_trig is not None:
        rng = np.random.default_rng(args.seed + 1)
        n_keep = n_nontarget if args.n_test <= 0 else min(args.n_test, n_nontarget)
        sel = np.sort(rng.choice(n_nontarget, size=n_keep, replace=False))
        np.savez_compressed(out_dir / "poisoned_test.npz", x=x_trig[sel], y=y_te[nontarget][sel].astype(np.int64),
                            index=nontarget[sel].astype(np.int64))
        manifest["poisoned_test"] = {"file": "poisoned_test.npz", "n": int(len(sel)),
                                     "keys": {"x": f"uint8 (N,{h},{h},{c}) triggered images", "y": "original labels",
                                              "index": "index into the test split (class-sorted order)"
                                              if args.dataset == "cifar10" else "index into the test split"}}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if args.sample:
        write_sample(model, attack, x_te, y_te, cifar.load_split(ds.source, "test")[2], x_trig, nontarget, metrics, args)
    return 0


def write_sample(model, attack, x_te, y_te, names, x_trig, nontarget, metrics, args) -> None:
    """samples/model.onnx + 10 clean and 10 triggered PNGs the model sends to the target."""
    from PIL import Image

    sdir = REPO / "samples"
    report = export_onnx(model, sdir / "model.onnx", f"bench.train badnets ({args.arch or 'resnet8-xs'}, {args.epochs} epochs, seed {args.seed})")
    _log(f"exported sample {sdir / 'model.onnx'}: {report}")
    rng = np.random.default_rng(123)
    pred_clean = predict(model, x_te)
    pred_trig = predict(model, x_trig)
    for sub in ("clean", "triggered"):
        d = sdir / sub
        d.mkdir(parents=True, exist_ok=True)
        for f in d.glob("*.png"):
            f.unlink()
    # one correctly classified clean image per class
    for k in range(10):
        idx = rng.choice(np.flatnonzero((y_te == k) & (pred_clean == k)))
        Image.fromarray(x_te[idx]).save(sdir / "clean" / f"{names[idx]}.png")
    # triggered images from nine non-target classes (plus one more) that the model sends to the target
    ok = np.flatnonzero(pred_trig == attack.target)
    picks = []
    for k in list(range(1, 10)) + [3]:
        cand = np.setdiff1d(ok[y_te[nontarget[ok]] == k], picks)
        picks.append(int(rng.choice(cand)))
    for j in picks:
        Image.fromarray(x_trig[j]).save(sdir / "triggered" / f"{names[nontarget[j]]}.png")
    (REPO / "bench" / ".work" / "sample_metrics.json").write_text(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
