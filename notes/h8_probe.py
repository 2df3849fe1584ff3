"""Run the rows of tests/test_bad_inputs.py against any ftkit checkout and print what happens.

Produces the before/after table of notes/h8.md:

    cd /work/wt/h8
    PYTHONPATH=/work/main:tests  python notes/h8_probe.py > /tmp/before.md   # today's main
    PYTHONPATH=/work/wt/h8:tests python notes/h8_probe.py > /tmp/after.md    # this branch

Names that only exist after the fix (BadImageError, AmbiguousHeadError,
CheckpointError, ftkit.data.images) get stand-in classes when missing, so
the table imports on main; a row then shows what main really raises.
"""
from __future__ import annotations

import importlib
import io
import os
import sys
import tempfile
import types
import warnings
from contextlib import redirect_stderr
from pathlib import Path

os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="h8-probe-torch-")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "netguard"))
import sitecustomize as guard  # noqa: E402  (blocks sockets, as conftest does)

os.environ["FTKIT_BLOCK_NETWORK"] = "1"
guard.install()


def _stub(module: str, name: str, base: type = ValueError) -> None:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        mod = types.ModuleType(module)
        sys.modules[module] = mod
    if not hasattr(mod, name):
        setattr(mod, name, type(name, (base,), {"__init__": lambda self, m="", *a, **k: ValueError.__init__(self, m)}))


_stub("ftkit.data.images", "BadImageError")
_stub("ftkit.models.heads", "AmbiguousHeadError")
_stub("ftkit.training.checkpoints", "CheckpointError")

import pytest  # noqa: E402
import test_bad_inputs as t  # noqa: E402

import ftkit  # noqa: E402


def outcome(case) -> tuple[str, str]:
    root = Path(tempfile.mkdtemp(prefix="h8-probe-"))
    with pytest.MonkeyPatch.context() as mp:
        ns = case.arrange(root, mp)
        before = t.snapshot(ns)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                case.act(ns)
                result = "no error"
            except BaseException as err:  # noqa: BLE001 - we report whatever happens
                result = f"{type(err).__name__}: {' '.join(str(err).split())}"
        shown = [w for w in caught if issubclass(w.category, UserWarning)
                 and "pickle protocol" not in str(w.message)]
        if shown:
            result += f" + warning: {' '.join(str(shown[0].message).split())}"
        try:
            t.assert_same(before, t.snapshot(ns))
            changed = "no"
        except AssertionError as e:
            changed = f"YES ({str(e) or 'state'})"
        if (root / "code-ran").exists():
            changed = "YES: the pickle ran code"
    return result, changed


def cli_outcome(argv: list[str]) -> str:
    from ftkit import cli
    from ftkit.lab.specs import DataSpec

    root = Path(tempfile.mkdtemp(prefix="h8-probe-cli-"))
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        def started(*a, **k):
            raise RuntimeError("(probe) work started: the data is being loaded")
        mp.setattr(DataSpec, "load", started)  # main after the run-unit commit loads data first
        with redirect_stderr(err):
            try:
                code = cli.main(["demo", *argv, "--out", str(root / "runs"), "--quiet"])
            except BaseException as e:  # noqa: BLE001
                return f"traceback: {type(e).__name__}: {' '.join(str(e).split())}"
    return f"exit {code}: {' '.join(err.getvalue().split())}"


def cut(text: str, n: int = 150) -> str:
    text = text.replace("|", "\\|").replace(str(Path(tempfile.gettempdir())), "/tmp")
    return text if len(text) <= n else text[: n - 3] + "..."


print(f"ftkit from {Path(ftkit.__file__).parent.parent}\n")
print("| case | expected | outcome | changed anything |")
print("|---|---|---|---|")
for case in t.CASES:
    result, changed = outcome(case)
    print(f"| {case.id} | {case.expect.__name__} | {cut(result)} | {changed} |")
for name, argv, _ in t.CLI_CASES:
    print(f"| cli: {name} (`ftkit demo {' '.join(argv)}`) | exit 2, one line | {cut(cli_outcome(argv))} | - |")
