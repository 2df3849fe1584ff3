"""Notebook plumbing: the setup check at the top and the results at the bottom.

Every lesson ends with :func:`show_results`, which displays its numbers as
JSON tagged with metadata; tests/test_notebooks.py reads that output back
after papermill has run the notebook and asserts the lesson on it.
"""
from __future__ import annotations

import json
import math
import platform

__all__ = ["show_results", "versions", "RESULTS_METADATA"]

RESULTS_METADATA = {"ftkit": {"name": "results"}}


def _jsonable(value):
    """Replace NaN/inf (not valid JSON) with None, recursively; numpy scalars to Python."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def show_results(results: dict) -> dict:
    """Display ``results`` as the notebook's machine-readable result and return it."""
    from IPython.display import display

    clean = _jsonable(results)
    json.dumps(clean)  # fail here, in the notebook, if something is not JSON-able
    display({"application/json": clean}, raw=True, metadata=RESULTS_METADATA)
    return clean


def versions() -> str:
    """One line with the versions that matter for reproducing a lesson."""
    import torch
    import torchvision

    import ftkit

    device = "cuda" if torch.cuda.is_available() else f"cpu, {torch.get_num_threads()} threads"
    return (f"ftkit {ftkit.__version__} | python {platform.python_version()} | torch {torch.__version__} | "
            f"torchvision {torchvision.__version__} | {device}")
