"""The tree keeps its shape: layers import downwards only, no module imports another's private
names, and no source file grows past 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "advsec"
#: the layers, lowest first; a module may import from its own layer or a lower one (top-level
#: modules such as ``advsec.errors`` are below every layer; the package ``__init__`` only
#: re-exports). The feature schema is the vocabulary datasets are described in, so ``features``
#: sits below ``datasets`` although the data flows from datasets into a FeatureSpace.
LAYERS = ["features", "datasets", "models", "attacks", "verification", "defenses", "evaluation",
          "reporting", "experiments", "cli"]
MAX_LINES = 500


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _dotted(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, absolute module, imported names)`` of every import in ``path`` (nested ones
    included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _dotted(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            out.append((node.lineno, module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name, []) for a in node.names)
    return out


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else -1


def test_the_layers_are_known():
    found = {p.relative_to(SRC).parts[0] for p in _modules() if p.parent != SRC}
    assert found <= set(LAYERS), found - set(LAYERS)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_private_import_across_modules(path):
    here = _dotted(path)
    bad = [f"line {line}: from {module} import {name}"
           for line, module, names in _imports(path) if module.startswith("advsec")
           and module != here for name in names
           if name.startswith("_") and not (name.startswith("__") and name.endswith("__"))]
    assert not bad, f"{path.relative_to(SRC)} imports private names: {bad}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down_the_layers(path):
    if path in (SRC / "__init__.py", SRC / "__main__.py"):
        return  # the package's public re-exports; python -m advsec (the command)
    here = _layer(_dotted(path))
    bad = [f"line {line}: {module}" for line, module, _ in _imports(path)
           if module.startswith("advsec.") and _layer(module) > here]
    assert not bad, f"{path.relative_to(SRC)} (layer {LAYERS[here] if here >= 0 else 'top'}) " \
                    f"imports from a higher layer: {bad}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_files_stay_small(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(SRC)} has {n} lines (at most {MAX_LINES})"
