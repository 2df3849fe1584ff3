"""Widgets for lessons 05, 06 and 08: controls, a Run button, a figure and a table.

Each widget only wires values: ``run(**settings)`` computes (a thin wrapper
around a function of ``ftkit.lab``), ``draw(result, fig)`` draws it with
``ftkit.viz.prescription_plots``, ``table(result)`` gives the DataFrame shown
under it. ``.run()`` does what the button does, so a test (or papermill) can
drive the widget without a browser.

>>> w = freeze_widget(run, datasets=["photo_crops", "digits"], n_per_class=20, k=4, max_k=9)   # doctest: +SKIP
>>> w.run()                                                                                     # doctest: +SKIP
"""
from __future__ import annotations

import html
import io
from typing import Any, Callable, Sequence

import ipywidgets as widgets
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["StudyWidget", "freeze_widget", "classical_widget", "cv_widget"]


class StudyWidget(widgets.VBox):
    """Controls, a Run button, the figure ``draw`` makes and the table ``table`` makes.

    Attributes:
        controls: name -> widget; their values are ``run``'s keyword arguments.
        result: what the last ``run`` returned (None before the first).
    """

    def __init__(self, run: Callable[..., Any], draw: Callable[[Any, Figure], None],
                 table: Callable[[Any], pd.DataFrame], controls: dict[str, widgets.Widget], *,
                 label: str = "Run", figsize=(11, 4)) -> None:
        self._run, self._draw, self._table, self._figsize = run, draw, table, figsize
        self.controls = controls
        self.result = None
        self.button = widgets.Button(description=label, button_style="primary")
        self.button.on_click(self._on_click)
        self.status = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.html = widgets.HTML()
        boxes = list(controls.values())
        rows = [widgets.HBox(boxes[i:i + 3]) for i in range(0, len(boxes), 3)]
        super().__init__(children=[*rows, widgets.HBox([self.button, self.status]), self.image, self.html])

    def settings(self) -> dict[str, Any]:
        """The keyword arguments the next run passes to ``run``."""
        return {k: w.value for k, w in self.controls.items()}

    def run(self):
        """Do what the button does: compute with the current settings, then draw and tabulate."""
        result = self._run(**self.settings())
        self.result = result
        fig = Figure(figsize=self._figsize)
        self._draw(result, fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
        self.image.value = buf.getvalue()
        self.html.value = self._table(result).to_html(index=False, float_format="{:.3g}".format)
        return result

    def _on_click(self, _button) -> None:
        self.button.disabled = True
        self.status.value = "running... (a minute or more on a laptop CPU)"
        try:
            self.run()
            self.status.value = "done"
        except Exception as err:  # shown in the widget: a callback's traceback is easy to miss
            self.status.value = f"<b>error</b>: {html.escape(str(err))}"
        finally:
            self.button.disabled = False


def _dropdown(options: Sequence[str], value: str, description: str) -> widgets.Dropdown:
    options = list(options)
    if value not in options:
        raise ValueError(f"{description} {value!r} is not one of the options {options}")
    return widgets.Dropdown(options=options, value=value, description=description)


def freeze_widget(run: Callable[..., Any], draw: Callable[[Any, Figure], None], table: Callable[[Any], pd.DataFrame],
                  *, datasets: Sequence[str], data: str, n_per_class: int, k: int, max_k: int,
                  max_n: int = 100) -> StudyWidget:
    """Lesson 05: pick a data set, a data size and k; ``run(data=, n_per_class=, k=)`` compares freezing k groups."""
    controls = {
        "data": _dropdown(datasets, data, "data set"),
        "n_per_class": widgets.IntSlider(value=n_per_class, min=5, max=max_n, step=5, description="images/class"),
        "k": widgets.IntSlider(value=k, min=0, max=max_k, description="k frozen"),
    }
    return StudyWidget(run, draw, table, controls, label="Compare")


def classical_widget(run: Callable[..., Any], draw: Callable[[Any, Figure], None],
                     table: Callable[[Any], pd.DataFrame], *, datasets: Sequence[str], data: str,
                     n_per_class: int, max_n: int = 150) -> StudyWidget:
    """Lesson 06: pick a data set and a size; ``run(data=, n_per_class=)`` races feature vectors against fine-tuning."""
    controls = {
        "data": _dropdown(datasets, data, "data set"),
        "n_per_class": widgets.IntSlider(value=n_per_class, min=5, max=max_n, step=5, description="images/class"),
    }
    return StudyWidget(run, draw, table, controls, label="Compare")


def cv_widget(run: Callable[..., Any], draw: Callable[[Any, Figure], None], table: Callable[[Any], pd.DataFrame],
              *, datasets: Sequence[str], data: str, n_per_class: int, k: int, val_frac: float) -> StudyWidget:
    """Lesson 08: data set, pool size, k and the single split's size; ``run(...)`` repeats both estimates."""
    controls = {
        "data": _dropdown(datasets, data, "data set"),
        "n_per_class": widgets.IntSlider(value=n_per_class, min=5, max=100, step=5, description="images/class"),
        "k": widgets.IntSlider(value=k, min=2, max=10, description="folds k"),
        "val_frac": widgets.FloatSlider(value=val_frac, min=0.1, max=0.5, step=0.05, description="val fraction"),
    }
    return StudyWidget(run, draw, table, controls, label="Estimate")
