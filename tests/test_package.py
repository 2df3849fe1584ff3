"""The package's public face: every name in __all__ exists, and no export hides a submodule."""
import importlib
import pkgutil

import ftkit


def test_all_names_exist():
    missing = [n for n in ftkit.__all__ if not hasattr(ftkit, n)]
    assert not missing


def test_no_export_shadows_a_submodule():
    modules = {m.name for m in pkgutil.iter_modules(ftkit.__path__)}
    for name in modules:
        mod = importlib.import_module(f"ftkit.{name}")
        assert getattr(ftkit, name) is mod, f"ftkit.{name} is not the module ftkit/{name}.py"
