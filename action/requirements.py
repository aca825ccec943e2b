"""What the action installs: the scanner's run-time dependencies from pyproject.toml, one per line,
with the ONNX Runtime the action needs: ``onnxruntime`` (CPU, about 15 MB) unless ``gpu`` is asked
for (``onnxruntime-gpu``, about 255 MB, which the package's markers pick on Linux x86_64).

    python action/requirements.py [cpu|gpu] > requirements.txt

Read from pyproject.toml, never repeated here, so the action cannot drift from the package.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def requirements(runtime: str = "cpu", pyproject: Path = PYPROJECT) -> list[str]:
    deps = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    out, runtimes = [], {}
    for dep in deps:
        spec = dep.split(";")[0].strip()
        name = re.match(r"[A-Za-z0-9_.-]+", spec).group(0).lower()
        if name in ("onnxruntime", "onnxruntime-gpu"):
            runtimes[name] = spec
        else:
            out.append(spec)
    wanted = "onnxruntime-gpu" if runtime == "gpu" else "onnxruntime"
    return [runtimes[wanted], *out]


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    if which not in ("cpu", "gpu"):
        sys.exit("usage: requirements.py [cpu|gpu]")
    print("\n".join(requirements(which)))
