"""Print one of the README's two set-up commands, so that CI runs exactly what the README says.

    python .ci/readme_commands.py main    # the first ```bash block of "## Quick start"
    python .ci/readme_commands.py tests   # the second one

The README must hold exactly two one-line bash blocks under its "## Quick start" heading; any
other shape is an error here (exit 2), so the README and CI cannot drift apart silently.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def setup_commands(text: str) -> list[str]:
    section = re.search(r"^## Quick start\n(.*?)(?=^## )", text, re.S | re.M)
    if section is None:
        raise ValueError('no "## Quick start" section')
    blocks = re.findall(r"^```bash\n(.*?)^```", section.group(1), re.S | re.M)
    commands = [b.strip() for b in blocks]
    if len(commands) != 2 or any("\n" in c for c in commands):
        raise ValueError(f"expected two one-line bash blocks under Quick start, found {len(commands)}: {commands}")
    return commands


def main(argv: list[str]) -> int:
    which = {"main": 0, "tests": 1}
    if len(argv) != 1 or argv[0] not in which:
        print("usage: readme_commands.py main|tests", file=sys.stderr)
        return 2
    try:
        print(setup_commands(README.read_text(encoding="utf-8"))[which[argv[0]]])
    except ValueError as exc:
        print(f"README.md: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
