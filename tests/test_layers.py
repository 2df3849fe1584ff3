"""The import layers: a module imports only from its own layer or a lower one.

core < data < models < training < {lr, analysis} < lab < viz < cli (and ``ftkit/__init__``,
the public API, on top). Every ``ftkit`` import counts, at module level or inside a
function: a lazy import from a higher layer is still a dependency on it.
"""
import ast
from pathlib import Path

import ftkit

LAYERS = {"core": 0, "data": 1, "models": 2, "training": 3, "lr": 4, "analysis": 4, "lab": 5, "viz": 6,
          "cli": 7, "__init__": 8}
ROOT = Path(ftkit.__file__).parent


def _layer(module: str) -> int:
    """Layer of a dotted ``ftkit.x.y`` module name (``ftkit`` itself is the API, on top)."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    assert top in LAYERS, f"{module}: unknown package {top!r}; give it a layer in tests/test_layers.py"
    return LAYERS[top]


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):  # a bare ``import ftkit`` reads ``__version__``: no layer
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("ftkit.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "ftkit":
            found.append((node.lineno, node.module))
    return found


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(("ftkit", *rel.parts))
        yield (name[: -len(".__init__")] if name.endswith(".__init__") and name != "ftkit.__init__"
               else name), path


def test_no_module_imports_a_higher_layer():
    modules = list(_modules())
    assert len(modules) > 30  # the walk found the package
    bad = []
    for name, path in modules:
        own = _layer(name)
        for line, target in _imports(path):
            if _layer(target) > own:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line} ({name}, layer {own}) imports "
                           f"{target} (layer {_layer(target)})")
    assert not bad, "imports from a higher layer:\n" + "\n".join(bad)


def test_named_dependencies_are_gone():
    """The ones the design review found: bn_stats -> freeze (head detection), freeze -> optim
    (audit), zoo -> data (ImageNet constants), plots computing (mean_curves)."""
    deps = {name: {t for _, t in _imports(path)} for name, path in _modules()}
    assert "ftkit.models.freeze" not in deps["ftkit.models.bn_stats"]
    assert "ftkit.models.heads" not in deps["ftkit.models.bn_stats"]
    assert "ftkit.models.groups" not in deps["ftkit.models.bn_stats"]
    assert "ftkit.training.optim" not in deps["ftkit.models.freeze"]
    assert not any(t.startswith("ftkit.data") for t in deps["ftkit.models.zoo"])
    assert not any(t.startswith("ftkit.lab") for t in deps["ftkit.viz.plots"])
    assert ftkit.audit.__module__ == "ftkit.analysis.diagnostics"
