"""Test setup: the network is blocked for the suite and for notebook kernels."""
import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

NETGUARD = Path(__file__).parent / "netguard"

# Child processes (papermill kernels) inherit these and load the guard at start-up.
os.environ["FTKIT_BLOCK_NETWORK"] = "1"
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(NETGUARD)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)
os.environ.setdefault("MPLBACKEND", "Agg")
# Torch's hub cache points at a fresh folder for this test session (notebook kernels
# inherit it): tests neither depend on nor write into the user's ~/.cache/torch.
os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="ftkit-test-torch-home-")

# This process: install the same guard now (start-up ran before we set the variable).
_spec = importlib.util.spec_from_file_location("ftkit_netguard", NETGUARD / "sitecustomize.py")
_guard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_guard)
_guard.install()


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keep tests light on the shared 2-core machines."""
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield
