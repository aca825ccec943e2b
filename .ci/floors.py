"""Print pip constraints that pin every base dependency to the lowest version its range allows
(``name>=X`` -> ``name==X``, markers kept), for CI's floor-versions step.

    python .ci/floors.py > floors.txt && pip install -c floors.txt .
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    sys.exit("floors.py needs Python 3.11 or newer (tomllib)")

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def floors(dependencies: list[str]) -> list[str]:
    pins = []
    for dep in dependencies:
        spec, _, marker = dep.partition(";")
        found = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(?:\[[^\]]*\])?\s*>=\s*([0-9][0-9A-Za-z.]*)\s*(?:,.*)?", spec)
        if found is None:
            raise ValueError(f"dependency without a >= floor: {dep!r}")
        pins.append(f"{found[1]}=={found[2]}" + (f"; {marker.strip()}" if marker.strip() else ""))
    return pins


if __name__ == "__main__":
    deps = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    print("\n".join(floors(deps)))
