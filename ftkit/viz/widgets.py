"""ipywidgets glue: controls that call one ftkit function each and show its result.

Widgets here compute nothing themselves; every callback calls the functions of
``ftkit.lr.finder`` / ``ftkit.viz.plots``. Each widget has a ``run()`` method that
does exactly what its button does, so it can be driven (and tested) without a
kernel or a browser, e.g. by papermill.

>>> w = lr_finder_widget(model, train_ds, optimizer="adam")   # doctest: +SKIP
>>> w                     # in JupyterLab: sliders, a Run button, the plot
>>> result = w.run()      # same as clicking Run
"""
from __future__ import annotations

import html
import io
from typing import Any, Callable

import ipywidgets as widgets
from matplotlib.figure import Figure
from torch import nn

from ftkit.lr.finder import lr_find
from ftkit.lr.result import LRFindResult
from ftkit.training.optim import group_names
from ftkit.viz.plots import plot_lr_find

__all__ = ["LRFinderWidget", "lr_finder_widget", "RaceWidget", "race_widget"]

_ALL_GROUPS = "all groups (keep ratios)"


def _figure_png(result: LRFindResult) -> bytes:
    # A bare Figure (no pyplot): nothing is auto-displayed twice and no global state leaks.
    fig = Figure(figsize=(7.5, 4.5))
    plot_lr_find(result, ax=fig.subplots())
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


class LRFinderWidget(widgets.VBox):
    """Controls for ``lr_find`` + the plot and suggestion table of the last run.

    Attributes:
        controls: name -> widget, for each ``lr_find`` setting shown.
        result: the last ``LRFindResult`` (None before the first run).
    """

    def __init__(self, model_factory_or_model: nn.Module | Callable[[], Any], data,
                 **defaults: Any) -> None:
        self._source = model_factory_or_model
        self._data = data
        self._defaults = dict(defaults)
        self.result: LRFindResult | None = None
        d = self._defaults
        self.controls: dict[str, widgets.Widget] = {
            "start_lr": widgets.FloatLogSlider(value=d.get("start_lr", 1e-7), base=10, min=-9,
                                               max=-1, step=0.5, description="start_lr"),
            "end_lr": widgets.FloatLogSlider(value=d.get("end_lr", 10.0), base=10, min=-3, max=2,
                                             step=0.5, description="end_lr"),
            "num_iter": widgets.IntSlider(value=d.get("num_iter", 100), min=10, max=500, step=10,
                                          description="num_iter"),
            "step_mode": widgets.Dropdown(options=["exp", "linear"],
                                          value=d.get("step_mode", "exp"), description="step_mode"),
            "seeds": widgets.IntSlider(value=d.get("seeds", 1), min=1, max=5, description="seeds"),
            "group": widgets.Dropdown(options=self._group_options(), description="sweep"),
        }
        group = d.get("group")
        if group is not None and group not in [v for _, v in self.controls["group"].options]:
            self.controls["group"].options = [*self.controls["group"].options, (str(group), group)]
        self.controls["group"].value = group
        self.button = widgets.Button(description="Run LR finder", button_style="primary")
        self.button.on_click(self._on_click)
        self.status = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.table = widgets.HTML()
        rows = [widgets.HBox([self.controls["start_lr"], self.controls["end_lr"]]),
                widgets.HBox([self.controls["num_iter"], self.controls["seeds"]]),
                widgets.HBox([self.controls["step_mode"], self.controls["group"]]),
                widgets.HBox([self.button, self.status])]
        super().__init__(children=[*rows, self.image, self.table])

    def _group_options(self, names: list[str] | None = None) -> list[tuple[str, Any]]:
        if names is None:
            opt, groups = self._defaults.get("optimizer"), self._defaults.get("param_groups")
            names = group_names(getattr(opt, "param_groups", None) or groups or [])  # as lr_find names them
        return [(_ALL_GROUPS, None)] + [(n, n) for n in names]

    def settings(self) -> dict[str, Any]:
        """The keyword arguments the next run passes to ``lr_find``."""
        return {**self._defaults, **{k: w.value for k, w in self.controls.items()}}

    def run(self) -> LRFindResult:
        """Do what the Run button does: ``lr_find`` with the current settings, then draw."""
        model, kwargs = self._source, self.settings()
        if callable(model) and not isinstance(model, nn.Module):
            built = model()
            model, opt = built if isinstance(built, tuple) else (built, kwargs.get("optimizer"))
            if opt is not None:
                kwargs["optimizer"] = opt
        result = lr_find(model, self._data, **kwargs)
        self.result = result
        self.image.value = _figure_png(result)
        self.table.value = result.summary().to_html(float_format="{:.3g}".format, na_rep="")
        names = list(result.settings.group_names)
        if len(names) > 1 and [v for _, v in self.controls["group"].options][1:] != names:
            self.controls["group"].options = self._group_options(names)
        return result

    def _on_click(self, _button) -> None:
        self.button.disabled = True
        self.status.value = "running..."
        try:
            result = self.run()
            self.status.value = html.escape("; ".join(result.notes) or "ok")
        except Exception as err:  # shown in the widget: a callback's traceback is easy to miss
            self.status.value = f"<b>error</b>: {html.escape(str(err))}"
        finally:
            self.button.disabled = False


def lr_finder_widget(model_factory_or_model: nn.Module | Callable[[], Any], data,
                     **defaults: Any) -> LRFinderWidget:
    """An LR-finder panel: sliders for the sweep, a Run button, the plot and table.

    Args:
        model_factory_or_model: a model (restored exactly after each run, so it
            can be reused) or a callable returning a fresh model, or a
            ``(model, optimizer)`` pair, at every run.
        data: a Dataset or DataLoader, as for ``lr_find``.
        **defaults: any other ``lr_find`` keyword (optimizer, criterion,
            batch_size, val_data, ...) and starting values for the controls.

    Returns:
        The widget; ``.run()`` runs it without a click, ``.result`` holds the result.
    """
    return LRFinderWidget(model_factory_or_model, data, **defaults)


# --------------------------------------------------------------------------- race (lesson 01)


def _race_png(result) -> bytes:
    from ftkit.viz.plots import plot_race_panels

    fig = Figure(figsize=(12, 4.2))
    plot_race_panels(result, fig.subplots(1, 2))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


class RaceWidget(widgets.VBox):
    """Sliders for a scratch-vs-fine-tune race, a Run button, the curves and the table.

    The widget only wires values: ``run_race(**settings)`` computes (a thin
    wrapper around :func:`ftkit.lab.race.race` that returns its
    ``RaceResult``); ``.run()`` does what the button does, without a kernel.

    Attributes:
        controls: name -> widget for n_per_class, epochs, lr_finetune, lr_scratch, num_seeds.
        result: the last ``RaceResult`` (None before the first run).
    """

    def __init__(self, run_race: Callable[..., Any], **defaults: Any) -> None:
        self._run_race = run_race
        d = {"n_per_class": 30, "epochs": 4, "lr_finetune": 3e-4, "lr_scratch": 1e-3, "num_seeds": 2, **defaults}
        self.result = None
        log = dict(base=10, min=-6, max=-1, step=0.25, readout_format=".1e")
        self.controls: dict[str, widgets.Widget] = {
            "n_per_class": widgets.IntSlider(value=d["n_per_class"], min=5, max=200, step=5,
                                             description="images/class"),
            "epochs": widgets.IntSlider(value=d["epochs"], min=1, max=20, description="epochs"),
            "num_seeds": widgets.IntSlider(value=d["num_seeds"], min=1, max=5, description="seeds"),
            "lr_finetune": widgets.FloatLogSlider(value=d["lr_finetune"], description="LR finetune", **log),
            "lr_scratch": widgets.FloatLogSlider(value=d["lr_scratch"], description="LR scratch", **log),
        }
        self.button = widgets.Button(description="Run the race", button_style="primary")
        self.button.on_click(self._on_click)
        self.status = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.table = widgets.HTML()
        c = self.controls
        rows = [widgets.HBox([c["n_per_class"], c["epochs"], c["num_seeds"]]),
                widgets.HBox([c["lr_finetune"], c["lr_scratch"]]),
                widgets.HBox([self.button, self.status])]
        super().__init__(children=[*rows, self.image, self.table])

    def settings(self) -> dict[str, Any]:
        """The keyword arguments the next run passes to ``run_race``."""
        return {k: w.value for k, w in self.controls.items()}

    def run(self):
        """Do what the Run button does: run the race with the current settings, then draw."""
        result = self._run_race(**self.settings())
        self.result = result
        self.image.value = _race_png(result)
        self.table.value = result.summary().to_html(index=False, float_format="{:.3g}".format, na_rep="never")
        return result

    def _on_click(self, _button) -> None:
        self.button.disabled = True
        self.status.value = "running... (a minute or two on a laptop CPU)"
        try:
            self.run()
            self.status.value = "done"
        except Exception as err:  # shown in the widget: a callback's traceback is easy to miss
            self.status.value = f"<b>error</b>: {html.escape(str(err))}"
        finally:
            self.button.disabled = False


def race_widget(run_race: Callable[..., Any], **defaults: Any) -> RaceWidget:
    """A race panel: sliders, a Run button, the convergence curves and the summary table.

    Args:
        run_race: called as ``run_race(n_per_class=, epochs=, lr_finetune=,
            lr_scratch=, num_seeds=)``; returns a ``RaceResult``.
        **defaults: starting values of the sliders.
    """
    return RaceWidget(run_race, **defaults)
