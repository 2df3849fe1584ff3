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
from typing import Callable

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


def write_race(result: RaceResult, root: str | os.PathLike = "runs", prefix: str = "race", *,
               draw: Callable[[RaceResult, Path], None] | None = None) -> Path:
    """Write curves.csv, runs.csv, steps.csv, summary.csv, summary.json (and convergence.png).

    Everything is written into a hidden temporary folder first and renamed
    into place at the end, so an error leaves no half-written run.

    Args:
        result: the race.
        root, prefix: the run folder is ``root/prefix-<date>-<time>``.
        draw: writes the figure, called as ``draw(result, folder / "convergence.png")``
            (the CLI passes ``ftkit.viz.plots.save_race_figure``; this lab-level
            module does not import the plotting layer). None: no figure.

    Returns:
        The folder written.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=root))
    try:
        result.curves.to_csv(tmp / "curves.csv", index=False)
        result.runs.to_csv(tmp / "runs.csv", index=False)
        result.steps.to_csv(tmp / "steps.csv", index=False)
        result.summary().to_csv(tmp / "summary.csv", index=False)
        (tmp / "summary.json").write_text(json.dumps(result.to_json_dict(), indent=2))
        if draw is not None:
            draw(result, tmp / "convergence.png")
        final = new_run_dir(root, prefix)
        os.rename(tmp, final)  # atomic on one file system; fails rather than overwrite
        return final
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
