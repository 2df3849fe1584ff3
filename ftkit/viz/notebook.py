"""Notebook plumbing: the setup check at the top and the results at the bottom.

Every lesson ends with :func:`show_results`, which displays its numbers as
JSON tagged with metadata; tests/test_notebooks.py reads that output back
after papermill has run the notebook and asserts the lesson on it.
"""
from __future__ import annotations

import json
import math
import platform

__all__ = ["show_results", "versions", "environment", "RESULTS_METADATA", "WIDGET_NOTE"]

# Shown next to every widget: a saved notebook keeps the widget's view but not its kernel-side model.
WIDGET_NOTE = ("If you see *Error displaying widget: model not found* (a saved notebook reopened), "
               "re-run this cell.")

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


def environment():
    """What this lesson runs on and what works offline, as a two-column DataFrame (item, value).

    Versions, the device, whether downloads are allowed (``FTKIT_OFFLINE``), the
    embedded backbones' weight files and which data sets load without a network.
    """
    import os

    import pandas as pd
    import torch
    import torchvision

    import ftkit
    from ftkit.data.catalogue import list_datasets
    from ftkit.models.zoo import EMBEDDED_BACKBONES, list_backbones

    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    else:
        device = f"cpu, {torch.get_num_threads()} threads"
    offline = os.environ.get("FTKIT_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    backbones = list_backbones()
    embedded = backbones[backbones["name"].isin(EMBEDDED_BACKBONES)]
    others = backbones[~backbones["name"].isin(EMBEDDED_BACKBONES)]
    data = list_datasets()
    ready = ", ".join(data.loc[data["available_offline"], "name"]) or "none"
    missing = ", ".join(data.loc[~data["available_offline"], "name"]) or "none"
    rows = [
        ("python", platform.python_version()), ("ftkit", ftkit.__version__), ("torch", torch.__version__),
        ("torchvision", torchvision.__version__), ("device", device),
        ("downloads", "off (FTKIT_OFFLINE is set)" if offline else "allowed when a network is reachable"),
    ]
    rows += [(f"weights: {r.name}", "embedded, works offline" if r.available_offline else "missing: " + r.source)
             for r in embedded.itertuples()]
    rows += [("other torchvision weights in the cache", f"{int(others['available_offline'].sum())} of {len(others)}"),
             ("data sets offline", ready), ("data sets needing a download", missing)]
    return pd.DataFrame(rows, columns=["item", "value"])
