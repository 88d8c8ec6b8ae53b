"""The package's shape stays what the README's Layout section says: imports point inward only, and
every folder the section names exists (and every package of ``telepi/`` is named there)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.cli import REPO

PACKAGE = REPO / "telepi"

# Layers from the inside out: a module may import its own layer and those before it. The sandbox stands
# apart: the engine never sees it, and it sees nothing of telepi but itself.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "core",
        (
            "telepi",
            "telepi.config",
            "telepi.chatref",
            "telepi.errors",
            "telepi.secret_files",
            "telepi.rules",
            "telepi.routes",
        ),
    ),
    ("adapters", ("telepi.checkpoint", "telepi.telegram")),
    ("engine", ("telepi.engine",)),
    ("service", ("telepi.service",)),
    ("entry", ("telepi.commands", "telepi.cli", "telepi.__main__")),
]
SANDBOX = "telepi.sandbox"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    if module == SANDBOX or module.startswith(SANDBOX + "."):
        return "sandbox"
    best = ("", "")
    for layer, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best[1]):
                best = (layer, prefix)
    assert best[0], f"{module} belongs to no layer: add it to LAYERS and to the README's Layout section"
    return best[0]


def telepi_imports(path: Path) -> set[str]:
    """Every telepi module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "telepi")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "telepi":
            found.add(str(node.module))
    return found


RANK = {layer: rank for rank, (layer, _) in enumerate(LAYERS)}
MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_imports_point_inward(path: Path) -> None:
    importer = module_name(path)
    own = layer_of(importer)
    wrong = []
    for imported in sorted(telepi_imports(path)):
        theirs = layer_of(imported)
        if own == "sandbox":
            allowed = theirs == "sandbox"
        elif theirs == "sandbox":
            allowed = own == "entry"  # only `telepi demo` and `telepi sandbox` start the local Telegram
        else:
            allowed = RANK[theirs] <= RANK[own]
        if not allowed:
            wrong.append(f"{importer} ({own}) imports {imported} ({theirs})")
    assert not wrong, "; ".join(wrong)


def test_the_walk_sees_function_level_imports() -> None:
    # run_session imports the transfer lazily; the walk must see such imports or the test above proves nothing.
    assert "telepi.engine.transfer" in telepi_imports(PACKAGE / "engine" / "session.py")


def layout_section() -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"^## Layout\n(.*?)^## ", readme, flags=re.MULTILINE | re.DOTALL)
    assert match, "the README has no '## Layout' section"
    return match.group(1)


def test_readme_layout_names_only_what_exists() -> None:
    named = re.findall(r"^(\S+/)\s", layout_section(), flags=re.MULTILINE)
    assert named, "the Layout section lists no folders"
    missing = [folder for folder in named if not (REPO / folder).is_dir()]
    assert not missing, f"the README's Layout section names folders that do not exist: {missing}"


def test_readme_layout_names_every_package() -> None:
    named = set(re.findall(r"^(\S+/)\s", layout_section(), flags=re.MULTILINE))
    packages = {f"{init.parent.relative_to(REPO).as_posix()}/" for init in PACKAGE.rglob("__init__.py")}
    assert not packages - named, f"packages missing from the README's Layout section: {sorted(packages - named)}"


def test_engine_has_no_module_named_after_a_sibling_package() -> None:
    engine = PACKAGE / "engine"
    packages = {p.name for p in engine.iterdir() if (p / "__init__.py").exists()}
    prefixed = [m.name for m in engine.glob("*.py") if any(m.stem.startswith(f"{p}_") for p in packages)]
    assert not prefixed
