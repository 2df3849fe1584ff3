"""The lessons' checks: one module per notebook, ``lesson_NN.py``, each defining ``LESSON``.

A check receives the JSON that the notebook's last cell displayed (see
``ftkit.viz.notebook.show_results``) and asserts the lesson on its numbers.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class Lesson:
    notebook: str                       # file name in notebooks/
    parameters: dict                    # papermill parameters of the CI (fast) run
    check: Callable[[dict], None]       # asserts the lesson on the results JSON
    timeout_s: int = 900                # per-cell timeout
    extra: dict = field(default_factory=dict)


def all_lessons() -> dict[str, Lesson]:
    """Every ``LESSON`` in this package, keyed by notebook file name."""
    found: dict[str, Lesson] = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith("lesson_"):
            lesson = importlib.import_module(f"lessons.{info.name}").LESSON
            assert lesson.notebook not in found, f"two lesson modules for {lesson.notebook}"
            found[lesson.notebook] = lesson
    return found
