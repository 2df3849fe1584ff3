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
import math
from typing import Any, Callable

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure
from torch import nn

from ftkit.lr.finder import lr_find
from ftkit.lr.result import LRFindResult
from ftkit.training.optim import group_names
from ftkit.viz.plots import plot_lr_find
from ftkit.viz.tables import table

__all__ = ["LRFinderWidget", "lr_finder_widget", "RaceWidget", "race_widget", "PredictWidget",
           "predict_widget", "lr_slider", "figure_to_image"]

_ALL_GROUPS = "all groups (keep ratios)"
_ALL = "__all__"  # the dropdown's value for "all groups": ipywidgets shows None as a blank selection
_WIDE = {"description_width": "initial"}  # labels at their natural width, never cut ("images/cl...")
PNG_DPI = 150      # rendered at 1.5x the displayed size: crisp on ordinary and high-density screens
SHOWN_DPI = 100    # displayed size = figure inches x this (like an inline matplotlib figure)


def figure_to_image(fig: Figure, image: widgets.Image) -> None:
    """Put ``fig`` into ``image`` as a crisp PNG shown at its natural size (never stretched), and show it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PNG_DPI)
    w, h = fig.get_size_inches()
    image.value = buf.getvalue()
    image.width = str(int(round(w * SHOWN_DPI)))
    image.height = str(int(round(h * SHOWN_DPI)))
    image.layout.display = ""  # hidden until there is something to show: no broken-image icon


def _image() -> widgets.Image:
    """An empty image widget, hidden until its first PNG (an empty Image shows a broken-image icon)."""
    return widgets.Image(format="png", layout=widgets.Layout(display="none", max_width="100%", height="auto"))


def lr_slider(value: float, description: str, lo: float = 1e-6, hi: float = 1e-1) -> widgets.SelectionSlider:
    """A slider over learning rates whose starting value is exactly ``value``.

    A ``FloatLogSlider`` snaps its value to its step grid (3e-4 becomes 3.16e-4 on a
    quarter-decade grid), so the button would run an LR the lesson did not choose. This
    slider's options are 1, 2 and 5 per decade from ``lo`` to ``hi`` plus ``value`` itself.
    """
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{description}: a learning rate must be a positive number, got {value!r}")
    lo, hi = min(lo, value), max(hi, value)
    grid = {value}
    for decade in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            x = float(f"{m}e{decade}")
            if lo <= x <= hi:
                grid.add(x)
    options = [(f"{x:.2g}" if x >= 0.01 else f"{x:.1e}", x) for x in sorted(grid)]
    return widgets.SelectionSlider(options=options, value=value, description=description, style=_WIDE,
                                   continuous_update=False, layout=widgets.Layout(width="340px"))


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
        int_slider = dict(style=_WIDE, continuous_update=False)
        self.controls: dict[str, widgets.Widget] = {
            "start_lr": lr_slider(d.get("start_lr", 1e-7), "start_lr", 1e-9, 1e-1),
            "end_lr": lr_slider(d.get("end_lr", 10.0), "end_lr", 1e-3, 1e2),
            "num_iter": widgets.IntSlider(value=d.get("num_iter", 100), min=min(10, d.get("num_iter", 100)),
                                          max=max(500, d.get("num_iter", 100)), step=1,
                                          description="num_iter", **int_slider),
            "step_mode": widgets.Dropdown(options=["exp", "linear"], value=d.get("step_mode", "exp"),
                                          description="step_mode", style=_WIDE),
            "seeds": widgets.IntSlider(value=d.get("seeds", 1), min=1, max=max(5, d.get("seeds", 1)),
                                       description="seeds", **int_slider),
            "group": widgets.Dropdown(options=self._group_options(), description="sweep", style=_WIDE),
        }
        group = d.get("group")
        if group is not None and group not in [v for _, v in self.controls["group"].options]:
            self.controls["group"].options = [*self.controls["group"].options, (str(group), group)]
        self.controls["group"].value = _ALL if group is None else group
        self.button = widgets.Button(description="Run LR finder", button_style="primary")
        self.button.on_click(self._on_click)
        self.status = widgets.HTML()
        self.image = _image()
        self.table = widgets.HTML()
        self.progress_area = widgets.Output()  # progress bars of the running sweep
        rows = [widgets.HBox([self.controls["start_lr"], self.controls["end_lr"]]),
                widgets.HBox([self.controls["num_iter"], self.controls["seeds"]]),
                widgets.HBox([self.controls["step_mode"], self.controls["group"]]),
                widgets.HBox([self.button, self.status])]
        super().__init__(children=[*rows, self.progress_area, self.image, self.table])

    def _group_options(self, names: list[str] | None = None) -> list[tuple[str, Any]]:
        if names is None:
            opt, groups = self._defaults.get("optimizer"), self._defaults.get("param_groups")
            names = group_names(getattr(opt, "param_groups", None) or groups or [])  # as lr_find names them
        return [(_ALL_GROUPS, _ALL)] + [(n, n) for n in names]

    def settings(self) -> dict[str, Any]:
        """The keyword arguments the next run passes to ``lr_find``."""
        values = {k: w.value for k, w in self.controls.items()}
        values["group"] = None if values["group"] == _ALL else values["group"]
        return {**self._defaults, **values}

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
        fig = Figure(figsize=(8, 4.5))  # a bare Figure: no pyplot, nothing auto-displayed twice
        plot_lr_find(result, ax=fig.subplots())
        fig.tight_layout()
        figure_to_image(fig, self.image)
        self.table.value = table(result.summary(), index=True, lr_columns=["seed_min", "seed_max"]).html()
        names = list(result.settings.group_names)
        if len(names) > 1 and [v for _, v in self.controls["group"].options][1:] != names:
            current = self.controls["group"].value
            self.controls["group"].options = self._group_options(names)
            self.controls["group"].value = current if current in [_ALL, *names] else _ALL
        return result

    def _on_click(self, _button) -> None:
        self.button.disabled = True
        self.status.value = "running... (a sweep takes under half a minute per seed on a laptop CPU)"
        try:
            with self.progress_area:
                result = self.run()
            self.progress_area.clear_output()
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

_RACE_DEFAULTS = {"n_per_class": 30, "epochs": 4, "num_seeds": 2, "lr_finetune": 3e-4, "lr_scratch": 1e-3}


class RaceWidget(widgets.VBox):
    """Sliders for a scratch-vs-fine-tune race, a Run button, the curves and the table.

    The widget only wires values: ``run_race(**settings)`` computes (a thin
    wrapper around :func:`ftkit.lab.race.race` that returns its
    ``RaceResult``); ``.run()`` does what the button does, without a kernel.
    Every keyword of ``defaults`` whose name starts with ``lr_`` gets an LR
    slider that starts exactly at its value.

    Attributes:
        controls: name -> widget for n_per_class, epochs, num_seeds and each ``lr_*``.
        result: the last ``RaceResult`` (None before the first run).
    """

    def __init__(self, run_race: Callable[..., Any], **defaults: Any) -> None:
        self._run_race = run_race
        d = {**_RACE_DEFAULTS, **defaults}
        self.result = None
        ints = dict(style=_WIDE, continuous_update=False)
        self.controls: dict[str, widgets.Widget] = {
            "n_per_class": widgets.IntSlider(value=d["n_per_class"], min=min(5, d["n_per_class"]),
                                             max=max(200, d["n_per_class"]), step=1,
                                             description="images per class", **ints),
            "epochs": widgets.IntSlider(value=d["epochs"], min=1, max=max(20, d["epochs"]),
                                        description="epochs", **ints),
            "num_seeds": widgets.IntSlider(value=d["num_seeds"], min=1, max=max(5, d["num_seeds"]),
                                           description="seeds", **ints),
        }
        lrs = {k: v for k, v in d.items() if k.startswith("lr_")}
        for name, value in lrs.items():
            self.controls[name] = lr_slider(value, "LR " + name[3:].replace("_", " "))
        unknown = set(d) - set(self.controls)
        if unknown:
            raise TypeError(f"race_widget got unknown settings {sorted(unknown)}; it knows "
                            "n_per_class, epochs, num_seeds and any lr_<strategy>")
        self.button = widgets.Button(description="Run the race", button_style="primary")
        self.button.on_click(self._on_click)
        self.status = widgets.HTML()
        self.image = _image()
        self.table = widgets.HTML()
        self.progress_area = widgets.Output()  # one progress bar per run while the race runs
        c = self.controls
        lr_rows = [widgets.HBox([c[k] for k in list(lrs)[i:i + 2]]) for i in range(0, len(lrs), 2)]
        rows = [widgets.HBox([c["n_per_class"], c["epochs"], c["num_seeds"]]), *lr_rows,
                widgets.HBox([self.button, self.status])]
        super().__init__(children=[*rows, self.progress_area, self.image, self.table])

    def settings(self) -> dict[str, Any]:
        """The keyword arguments the next run passes to ``run_race``."""
        return {k: w.value for k, w in self.controls.items()}

    def run(self):
        """Do what the Run button does: run the race with the current settings, then draw."""
        from ftkit.viz.plots import LAPTOP_WIDTH, plot_race_panels

        result = self._run_race(**self.settings())
        self.result = result
        fig = Figure(figsize=(LAPTOP_WIDTH, 4.2))
        plot_race_panels(result, fig.subplots(1, 2))
        figure_to_image(fig, self.image)
        summary = result.summary()
        missing = {c: "never" for c in summary.columns if c.startswith("steps_to_target")}  # NaN: not reached
        missing["final_acc_std"] = "one seed"                                           # NaN: no spread
        self.table.value = table(summary, missing=missing).html()
        return result

    def _on_click(self, _button) -> None:
        self.button.disabled = True
        self.status.value = "running... one progress bar per run below (a minute or two on a laptop CPU)"
        try:
            with self.progress_area:
                self.run()
            self.progress_area.clear_output()
            self.status.value = "done"
        except Exception as err:  # shown in the widget: a callback's traceback is easy to miss
            self.status.value = f"<b>error</b>: {html.escape(str(err))}"
        finally:
            self.button.disabled = False


def race_widget(run_race: Callable[..., Any], **defaults: Any) -> RaceWidget:
    """A race panel: sliders, a Run button, the convergence curves and the summary table.

    Args:
        run_race: called as ``run_race(n_per_class=, epochs=, num_seeds=, lr_...=)``;
            returns a ``RaceResult``.
        **defaults: starting values of the sliders (exactly these values).
    """
    return RaceWidget(run_race, **defaults)


# --------------------------------------------------------------------------- predictions (lesson 00)


def centre_crop(image: np.ndarray, fraction: float) -> np.ndarray:
    """The centre ``fraction`` (0 < f <= 1) of ``image``'s height and width."""
    if not 0 < fraction <= 1:
        raise ValueError(f"zoom fraction must be in (0, 1], got {fraction}")
    h, w = image.shape[:2]
    dh, dw = int(round(h * (1 - fraction) / 2)), int(round(w * (1 - fraction) / 2))
    return image[dh:h - dh or None, dw:w - dw or None]


class PredictWidget(widgets.VBox):
    """Pick a photo, zoom into its centre, press Predict: the backbone's top-k ImageNet classes.

    ``.run()`` does what the button does: ``ftkit.models.anatomy.top_predictions``
    on the zoomed photo, drawn by ``ftkit.viz.plots.plot_predictions``.
    """

    def __init__(self, backbone, photos: dict, *, photo: str | None = None, zoom: float = 1.0,
                 top_k: int = 5) -> None:
        if not photos:
            raise ValueError("predict_widget needs at least one photo: {name: HxWx3 uint8 array}")
        photo = photo if photo is not None else next(iter(photos))
        if photo not in photos:
            raise KeyError(f"photo {photo!r} is not among {list(photos)}")
        self._backbone, self._photos = backbone, dict(photos)
        self.result = None
        self.controls: dict[str, widgets.Widget] = {
            "photo": widgets.Dropdown(options=list(photos), value=photo, description="photo", style=_WIDE),
            "zoom": widgets.FloatSlider(value=zoom, min=min(0.2, zoom), max=1.0, step=0.05,
                                        description="keep the centre (fraction)", style=_WIDE,
                                        continuous_update=False, layout=widgets.Layout(width="380px")),
            "top_k": widgets.IntSlider(value=top_k, min=1, max=max(10, top_k), description="top-k", style=_WIDE,
                                       continuous_update=False),
        }
        self.button = widgets.Button(description="Predict", button_style="primary")
        self.button.on_click(self._on_click)
        self.status = widgets.HTML()
        self.image = _image()
        self.table = widgets.HTML()
        c = self.controls
        rows = [widgets.HBox([c["photo"], c["zoom"], c["top_k"]]), widgets.HBox([self.button, self.status])]
        super().__init__(children=[*rows, self.image, self.table])

    def settings(self) -> dict[str, Any]:
        return {k: w.value for k, w in self.controls.items()}

    def run(self):
        """Do what the Predict button does; returns the predictions DataFrame."""
        from ftkit.models.anatomy import top_predictions
        from ftkit.viz.plots import plot_predictions

        s = self.settings()
        name = s["photo"]
        if s["zoom"] < 1:
            name = f"{s['photo']} (centre {s['zoom']:.0%})"
        photos = {name: centre_crop(np.asarray(self._photos[s["photo"]]), s["zoom"])}
        preds = top_predictions(self._backbone, photos, top_k=s["top_k"])
        self.result = preds
        fig = Figure(figsize=(6.5, 3.2))
        axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
        plot_predictions(photos, preds, axes=np.asarray(axes).reshape(2, 1))
        figure_to_image(fig, self.image)
        self.table.value = table(preds).html()
        return preds

    def _on_click(self, _button) -> None:
        self.button.disabled = True
        self.status.value = "running..."
        try:
            preds = self.run()
            top = preds.iloc[0]
            self.status.value = html.escape(f"most likely: {top['category']} ({top['probability']:.3f})")
        except Exception as err:  # shown in the widget: a callback's traceback is easy to miss
            self.status.value = f"<b>error</b>: {html.escape(str(err))}"
        finally:
            self.button.disabled = False


def predict_widget(backbone, photos: dict, **defaults: Any) -> PredictWidget:
    """A prediction panel for lesson 00: photo, zoom, top-k, a Predict button, bars and a table.

    Args:
        backbone: a loaded pretrained ``ftkit.models.zoo.Backbone``.
        photos: name -> HxWx3 uint8 image.
        **defaults: starting values (photo=, zoom=, top_k=).
    """
    return PredictWidget(backbone, photos, **defaults)
