"""The packages import only the layers below them (README: Development), checked on the source's import statements,
including the ones inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "benchmark"
# Bottom first; a module may import its own package and any package of a lower layer, nothing of its layer or above.
LAYERS = [
    {"errors", "redaction", "interrupts"},
    {"config"},
    {"search_space"},
    {"data", "models", "losses"},
    {"evaluation"},
    {"results"},
    {"training"},
    {"tuning"},
    {"report"},
    {"perf"},
    {"cli"},
    {"__main__", "__init__"},  # ``python -m benchmark`` and the package itself
]
LAYER = {name: level for level, names in enumerate(LAYERS) for name in names}


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)


def test_no_module_imports_a_higher_layer():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        own = parts[0]
        assert own in LAYER, f"{path}: benchmark.{own} is in no layer of this test; add it where it belongs"
        for line, module in _imports(path):
            target = module.split(".")
            if target[0] != "benchmark" or len(target) < 2 or target[1] == own:
                continue
            if LAYER[target[1]] >= LAYER[own]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert not upward, "imports of the same or a higher layer:\n" + "\n".join(upward)


def test_only_the_cli_reads_the_environment():
    """Environment variables are read at the edge (benchmark/cli/) and passed down as typed arguments."""
    readers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv") or \
                    isinstance(node, ast.Constant) and node.value in ("os.environ", "os.getenv"):
                readers.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not readers, "environment read or patched below the CLI:\n" + "\n".join(readers)


def test_no_module_is_over_400_lines():
    """The developer guide's bound: a module that grows past it holds more than one concept; split it by concept."""
    long = [f"{path.relative_to(PACKAGE.parent)}: {lines} lines" for path in sorted(PACKAGE.rglob("*.py"))
            if (lines := len(path.read_text(encoding="utf-8").splitlines())) > 400]
    assert not long, "modules over 400 lines:\n" + "\n".join(long)
