"""Print the zoo's table (markdown) from ``bench/zoo/*/manifest.json``.

    python -m bench.summarize [--zoo bench/zoo]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .attacks import ATTACKS
from .cifar import REPO_ROOT


def table(zoo: Path) -> str:
    rows = ["| attack | clean acc | ASR | epochs | train min | model | command |",
            "|---|---|---|---|---|---|---|"]
    found = {p.parent.name: p for p in zoo.glob("*/manifest.json")}
    order = [a for a in ATTACKS if a in found] + sorted(set(found) - set(ATTACKS))
    for name in order:
        m = json.loads(found[name].read_text())
        asr = "-" if m.get("attack_success_rate") is None else f"{100 * m['attack_success_rate']:.2f}%"
        rows.append(f"| {name} | {100 * m['clean_accuracy']:.2f}% | {asr} | {m['epochs']} | "
                    f"{m['train_minutes']:.1f} | {m['model_bytes'] / 1e6:.2f} MB | `{m['command']}` |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.summarize", description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", default=str(REPO_ROOT / "bench" / "zoo"))
    args = ap.parse_args(argv)
    print(table(Path(args.zoo)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
