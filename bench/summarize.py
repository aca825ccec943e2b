"""Print the zoo's table (markdown) from ``bench/zoo/*/manifest.json``, grouped by data set and network.

    python -m bench.summarize [--zoo bench/zoo]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .attacks import ATTACKS
from .cifar import REPO_ROOT

DATASET_ORDER = ("cifar10", "gtsrb", "mnist")


def load_manifests(zoo: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(zoo.glob("*/manifest.json"))}


def group_key(m: dict) -> tuple[str, str]:
    return m.get("dataset", "cifar10"), m.get("architecture", "resnet8-xs")


def ordered(manifests: dict[str, dict]) -> list[tuple[tuple[str, str], list[str]]]:
    """[((dataset, network), [entry names...]), ...]: data sets in DATASET_ORDER, then networks;
    inside a group attacks in ATTACKS order, target 0 (or none) before other targets."""
    groups: dict[tuple[str, str], list[str]] = {}
    for name, m in manifests.items():
        groups.setdefault(group_key(m), []).append(name)

    def entry_order(name: str):
        m = manifests[name]
        attack = m["attack"]
        return (ATTACKS.index(attack) if attack in ATTACKS else 99, m.get("target_class") or 0, name)

    def gorder(k):
        return (DATASET_ORDER.index(k[0]) if k[0] in DATASET_ORDER else 9, k[1] != "resnet8-xs", k[1])

    return [(k, sorted(groups[k], key=entry_order)) for k in sorted(groups, key=gorder)]


def table(zoo: Path) -> str:
    manifests = load_manifests(zoo)
    out = []
    for (dataset, arch), names in ordered(manifests):
        out += [f"**{dataset}, {arch}**", "",
                "| entry | attack | target | clean acc | ASR | epochs | train min | model | command |",
                "|---|---|---|---|---|---|---|---|---|"]
        for name in names:
            m = manifests[name]
            asr = "-" if m.get("attack_success_rate") is None else f"{100 * m['attack_success_rate']:.2f}%"
            if m.get("shortfall"):
                asr += " (short)"
            tgt = "-" if m.get("target_class") is None else f"{m['target_class']} {m.get('target_name', '')}"
            out.append(f"| {name} | {m['attack']} | {tgt} | {100 * m['clean_accuracy']:.2f}% | {asr} | {m['epochs']} | "
                       f"{m['train_minutes']:.1f} | {m['model_bytes'] / 1e6:.2f} MB | `{m['command']}` |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.summarize", description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", default=str(REPO_ROOT / "bench" / "zoo"))
    args = ap.parse_args(argv)
    print(table(Path(args.zoo)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
