"""Run folders: where a race's tables, plot and JSON summary are written.

Each run gets a new folder (``runs/demo-20261127-231500``, then ``-2``, ``-3``
on a clash); it appears complete or not at all, and never overwrites an
earlier run.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib

from ftkit.lab.race import RaceResult

__all__ = ["new_run_dir", "write_race"]


def new_run_dir(root: str | os.PathLike, prefix: str) -> Path:
    """A fresh, not-yet-existing folder path under ``root`` named by date and time."""
    root = Path(root)
    stem = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = root / stem, 2
    while path.exists():
        path, n = root / f"{stem}-{n}", n + 1
    return path


def write_race(result: RaceResult, root: str | os.PathLike = "runs", prefix: str = "race") -> Path:
    """Write curves.csv, runs.csv, steps.csv, summary.csv, summary.json and convergence.png.

    Everything is written into a hidden temporary folder first and renamed
    into place at the end, so an error leaves no half-written run.

    Returns:
        The folder written.
    """
    from ftkit.viz.plots import plot_race_panels  # matplotlib only when writing

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=root))
    try:
        result.curves.to_csv(tmp / "curves.csv", index=False)
        result.runs.to_csv(tmp / "runs.csv", index=False)
        result.steps.to_csv(tmp / "steps.csv", index=False)
        result.summary().to_csv(tmp / "summary.csv", index=False)
        (tmp / "summary.json").write_text(json.dumps(result.to_json_dict(), indent=2))
        with matplotlib.rc_context({"backend": "Agg"}):
            import matplotlib.pyplot as plt

            fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
            plot_race_panels(result, axes)
            fig.savefig(tmp / "convergence.png", dpi=110)
            plt.close(fig)
        final = new_run_dir(root, prefix)
        os.rename(tmp, final)  # atomic on one file system; fails rather than overwrite
        return final
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
