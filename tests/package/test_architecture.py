"""The package's shape (ARCHITECTURE.md): parts import only parts below them, no import cycles,
no module over 400 lines, and a scan never imports ``exporters`` or ``torch``."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "scanner"
MAX_LINES = 400
# The parts, lowest first: a module may import its own part and the parts before it, never one
# after it (data flows files -> inputs -> model outputs -> scores -> decisions -> reports).
LAYERS = [
    {"errors", "_validation", "_version"},
    {"inputs"},
    {"model"},
    {"detectors"},
    {"decide"},
    {"results"},
    {"core"},
    {"calibrating", "evaluation", "audit"},
    {"report"},
    {"engines"},
    {"cli"},
    {"__init__", "__main__"},
]


def _part(module: str) -> str:
    return module.split(".")[0]


def _rank(module: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if _part(module) in layer)


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def _imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports when it runs (function-level imports
    included; ``if TYPE_CHECKING:`` blocks, which never run, left out)."""
    me = _module_name(path).split(".")
    package = me[:-1] if me[-1] != "__init__" else me[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
               for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            target = [*base, *(node.module.split(".") if node.module else [])]
            if node.module is None:  # from . import a, b: each is a module
                found.update(".".join([*target, a.name]) for a in node.names)
            else:
                found.add(".".join(target))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("scanner."):
            found.add(node.module.removeprefix("scanner."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("scanner.") for a in node.names if a.name.startswith("scanner."))
    return {m for m in found if m and m != _module_name(path)}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}

    def known(name: str) -> str | None:  # a module, or a package's __init__
        return name if name in files else (f"{name}.__init__" if f"{name}.__init__" in files else None)

    return {m: {k for k in map(known, _imports(p)) if k} for m, p in files.items()}


def test_no_part_imports_a_part_above_it():
    upward = [(m, t) for m, targets in _graph().items() for t in targets
              if _part(t) != "__init__" and _rank(t) > _rank(m)]
    assert not upward, f"imports against the data's direction: {upward}"


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for t in sorted(graph[m]):
            if t.endswith("__init__") and t.count(".") == 0:
                continue  # the package's own __init__ is what imports everything
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, f"import cycles: {cycles}"


def test_no_module_over_the_size_limit():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_part_is_placed():
    parts = {_part(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert parts <= set().union(*LAYERS), f"parts missing from LAYERS: {parts - set().union(*LAYERS)}"


def test_a_scan_never_imports_exporters_or_torch(tmp_path):
    """The command line, run in-process in a fresh interpreter on the bundled sample: neither the
    ``exporters`` package nor torch is imported (``scanner export`` is added only when asked for)."""
    root = PACKAGE.parent
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from scanner.cli import app\n"
        f"r = CliRunner().invoke(app, ['-q', 'scan', r'{root / 'samples/model.onnx'}', r'{root / 'samples/triggered'}',\n"
        f"    '--calibration', r'{root / 'samples/calibration.json'}', '-f', 'json', '-o', r'{tmp_path / 'r.json'}'])\n"
        "assert r.exit_code == 0, r.output\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('exporters', 'torch'))\n"
        "print(' '.join(bad) or 'clean')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"
