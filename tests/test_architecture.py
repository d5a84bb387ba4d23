"""The dependency rules of docs/architecture.md hold for every module of the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dargah"

# package → packages of dargah it must never import
FORBIDDEN = {
    "http": {
        "core",
        "store",
        "registry",
        "bus",
        "client",
        "console",
        "portal",
        "oversight",
        "sandbox",
        "demo",
        "cli",
        "server",
    },
    "core": {
        "store",
        "registry",
        "bus",
        "client",
        "console",
        "portal",
        "oversight",
        "sandbox",
        "demo",
        "cli",
        "server",
    },
    "sandbox": {
        "bus",
        "registry",
        "store",
        "console",
        "portal",
        "oversight",
        "demo",
        "cli",
        "server",
    },
    "client": {
        "bus",
        "registry",
        "store",
        "console",
        "portal",
        "oversight",
        "sandbox",
        "demo",
        "cli",
        "server",
    },
    "bus": {"console", "portal", "oversight", "sandbox", "demo", "cli", "server"},
    "portal": {"bus", "sandbox", "cli"},
    "oversight": {"portal", "sandbox", "cli", "demo"},
    "registry": {"bus", "console", "portal", "oversight", "sandbox", "demo", "cli", "server"},
    "store": {
        "registry",
        "bus",
        "console",
        "portal",
        "oversight",
        "sandbox",
        "demo",
        "cli",
        "server",
    },
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "dargah" and len(parts) > 1:
                found.add(parts[1])
    return found


def _modules() -> list[tuple[str, Path]]:
    return [
        (p.relative_to(PACKAGE).parts[0], p)
        for p in sorted(PACKAGE.rglob("*.py"))
        if len(p.relative_to(PACKAGE).parts) > 1
    ]


@pytest.mark.parametrize(("package", "path"), _modules(), ids=lambda v: str(v))
def test_no_module_imports_a_package_its_layer_must_not_know(package: str, path: Path) -> None:
    bad = _imports(path) & FORBIDDEN.get(package, set())
    assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


def test_nothing_imports_the_cli() -> None:
    offenders = [p for pkg, p in _modules() if pkg != "cli" and "cli" in _imports(p)]
    assert not offenders


def test_only_the_settings_module_reads_the_environment() -> None:
    readers = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "os.environ" in text or "os.getenv" in text:
            readers.append(path.relative_to(PACKAGE).as_posix())
    assert readers == ["core/settings.py"], readers
