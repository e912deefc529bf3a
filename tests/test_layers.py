"""The packages import downward only: no circle between packages, no generic code that knows the CNN.

Every ``import`` of the project's own modules is read from the source (function-level imports
included), so a lazy import cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("caviar", "optimizer", "worker", "neural_net")

# Each unit may import its own modules and units of lower layers only.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("caviar", "caviar.errors"),
    ("caviar.imports", "caviar.config", "caviar.files", "caviar.growing"),
    ("caviar.objective", "caviar.family", "caviar.reporting"),
    ("caviar.store", "caviar.schedulers"),
    ("caviar.cv", "caviar.runner"),
    ("caviar.output",),
    ("neural_net", "worker"),
    ("optimizer",),
)
# What a model family may use of Caviar: the public contract, nothing of the machinery.
PLUGIN_CONTRACT = {
    "caviar", "caviar.errors", "caviar.config", "caviar.objective", "caviar.family", "caviar.reporting", "caviar.cv",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    """The layer unit of a module: a top-level package, a subpackage of caviar, or a root module of caviar."""
    parts = module.split(".")
    if parts[0] != "caviar" or len(parts) == 1:
        return parts[0]
    return ".".join(parts[:2])


def package_of(module: str, is_package: bool) -> str:
    """The package a module belongs to (a package belongs to itself)."""
    return module if is_package else module.rpartition(".")[0] or module


def project_imports(path: Path, module: str) -> set[str]:
    """The project's modules that ``path`` imports, resolved to their full names."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] in PACKAGES and _exists(name))
    return found


def _exists(module: str) -> bool:
    base = ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def sources() -> dict[str, tuple[Path, set[str]]]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = module_name(path)
            found[name] = (path, project_imports(path, name))
    return found


SOURCES = sources()


def layer_of(unit: str) -> int:
    for index, units in enumerate(LAYERS):
        if unit in units:
            return index
    raise AssertionError(f"{unit} is in no layer: add it to LAYERS in {__file__}")


def test_every_module_is_in_a_layer() -> None:
    assert SOURCES, "no source found"
    for module in SOURCES:
        layer_of(unit_of(module))


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_imports_go_downward_only(module: str) -> None:
    path, imports = SOURCES[module]
    unit = unit_of(module)
    for target in imports:
        other = unit_of(target)
        if other == unit:
            continue
        assert layer_of(other) < layer_of(unit), (
            f"{module} imports {target}: {unit} (layer {layer_of(unit)}) may import only lower layers, "
            f"not {other} (layer {layer_of(other)})"
        )


def test_no_circle_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for module, (path, imports) in SOURCES.items():
        source = package_of(module, path.name == "__init__.py")
        for target in imports:
            target_path = ROOT.joinpath(*target.split("."))
            dest = package_of(target, (target_path / "__init__.py").exists())
            if dest != source and not source.startswith(dest + ".") and not dest.startswith(source + "."):
                graph.setdefault(source, set()).add(dest)

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            raise AssertionError("packages import each other in a circle: " + " -> ".join(trail[trail.index(node):] + [node]))
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, trail + [node])

    for start in sorted(graph):
        visit(start, [])


def test_model_family_uses_only_the_public_contract() -> None:
    for module, (_, imports) in SOURCES.items():
        if unit_of(module) != "neural_net":
            continue
        machinery = {t for t in imports if t.split(".")[0] != "neural_net" and unit_of(t) not in PLUGIN_CONTRACT}
        assert not machinery, f"{module} imports {sorted(machinery)}: a model family may import only {sorted(PLUGIN_CONTRACT)}"


def test_generic_code_never_imports_the_cnn() -> None:
    for module, (_, imports) in SOURCES.items():
        if unit_of(module) == "neural_net":
            continue
        assert not {t for t in imports if t.startswith("neural_net")}, f"{module} imports the CNN plugin"


def test_the_walk_sees_lazy_imports() -> None:
    """A function-level import counts: the master's runner is found inside optimizer.master."""
    assert "caviar.runner" in SOURCES["optimizer.master"][1]
    assert "caviar.store.mongo" in SOURCES["worker.__main__"][1]
