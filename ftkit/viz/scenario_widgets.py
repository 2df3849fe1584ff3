"""Widgets for the scenario lesson: pick a data set and a size, see that cell and the advice.

Only wiring: the cell's bars come from :func:`ftkit.viz.scenario_plots.plot_cell_bars`
and the advice from a function the notebook passes (``advise`` on the measured grid).
"""
from __future__ import annotations

import html
import io
from typing import Any, Callable

import ipywidgets as widgets
from matplotlib.figure import Figure

__all__ = ["ScenarioExplorer", "scenario_explorer"]


class ScenarioExplorer(widgets.VBox):
    """A data-set dropdown and a size slider over a measured grid; shows the cell and the advice.

    Attributes:
        controls: "dataset" and "n_per_class" widgets.
        advice: the last value ``advise_fn`` returned.
    """

    def __init__(self, result, advise_fn: Callable[[str, int], Any] | None = None) -> None:
        self.result, self._advise = result, advise_fn
        cells = result.summary()[["dataset", "n_per_class"]].drop_duplicates()
        self._sizes = {d: sorted(int(n) for n in g["n_per_class"]) for d, g in cells.groupby("dataset")}
        datasets = list(self._sizes)
        self.controls = {
            "dataset": widgets.Dropdown(options=datasets, value=datasets[0], description="data set"),
            "n_per_class": widgets.SelectionSlider(options=self._sizes[datasets[0]], description="images/class"),
        }
        self.image, self.text = widgets.Image(format="png"), widgets.HTML()
        self.advice = None
        self.controls["dataset"].observe(self._on_dataset, names="value")
        self.controls["n_per_class"].observe(lambda _: self.show(), names="value")
        super().__init__(children=[widgets.HBox(list(self.controls.values())), self.image, self.text])
        self.show()

    def _on_dataset(self, change) -> None:
        self.controls["n_per_class"].options = self._sizes[change["new"]]
        self.show()

    def show(self) -> None:
        """Draw the chosen cell and, with an advise function, the advice for it."""
        from ftkit.viz.scenario_plots import plot_cell_bars

        ds, n = self.controls["dataset"].value, self.controls["n_per_class"].value
        fig = Figure(figsize=(6, 3.2))
        plot_cell_bars(self.result, ds, n, fig.subplots())
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        self.image.value = buf.getvalue()
        if self._advise is not None:
            try:
                self.advice = self._advise(ds, n)
                self.text.value = "<br>".join(html.escape(r) for r in self.advice.reasons)
            except Exception as err:  # shown in the widget: a callback's traceback is easy to miss
                self.text.value = f"<b>error</b>: {html.escape(str(err))}"


def scenario_explorer(result, advise_fn: Callable[[str, int], Any] | None = None) -> ScenarioExplorer:
    """A dropdown (data set) and a slider (images per class) over a measured ``ScenarioResult``."""
    return ScenarioExplorer(result, advise_fn)
