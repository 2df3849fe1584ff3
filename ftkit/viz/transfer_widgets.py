"""ipywidgets glue for the transfer lab: choose a shift and a block, see what tuning it alone does.

The widget computes nothing itself: its button calls the function it was given
(``ftkit.lab.transfer_lab.surgical`` in lesson 09) and draws the result with
``ftkit.viz.transfer_plots.plot_surgical``. ``run()`` does what the button does,
so papermill (and tests) can drive it without a browser.

>>> w = surgical_widget(lambda shift: surgical(FAST, shifts=(shift,)))   # doctest: +SKIP
>>> w.run()                                                               # doctest: +SKIP
"""
from __future__ import annotations

import html
import io
from typing import Callable

import ipywidgets as widgets
from matplotlib.figure import Figure

from ftkit.data.shifts import SHIFTS, shift_level
from ftkit.lab.transfer_lab import GROUPS, LabResult, surgical_table
from ftkit.viz.transfer_plots import plot_surgical

__all__ = ["SurgicalWidget", "surgical_widget"]


class SurgicalWidget:
    """Dropdowns for the shift and the block, a Run button, the heatmap and one sentence."""

    def __init__(self, compute: Callable[[str], LabResult], shift: str = "noise",
                 block: str = "stem", results: dict[str, LabResult] | None = None) -> None:
        self.compute = compute
        self.results: dict[str, LabResult] = dict(results or {})   # shift -> its LabResult
        self.shift = widgets.Dropdown(options=[(f"{s} ({shift_level(s)} level)", s) for s in SHIFTS],
                                      value=shift, description="shift")
        self.block = widgets.Dropdown(options=list(GROUPS), value=block, description="tune only")
        self.button = widgets.Button(description="Run", button_style="primary")
        self.image = widgets.Image(format="png")
        self.text = widgets.HTML()
        self.button.on_click(lambda _: self.run())
        self.box = widgets.VBox([widgets.HBox([self.shift, self.block, self.button]), self.text, self.image])

    def run(self) -> dict:
        """Compute the chosen shift (once; then it is remembered) and show the chosen block."""
        shift, block = self.shift.value, self.block.value
        if shift not in self.results:
            self.text.value = f"running surgical fine-tuning under {html.escape(shift)}..."
            self.results[shift] = self.compute(shift)
        raw = surgical_table(self.results[shift], relative=False)
        row = f"{shift} ({shift_level(shift)})"
        acc, full = float(raw.loc[row, block]), float(raw.loc[row, "all"])
        fig = Figure(figsize=(7.5, 1.2 + 0.6 * len(raw)))
        plot_surgical(surgical_table(self.results[shift]), ax=fig.subplots(), highlight=(row, block))
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        self.image.value = buf.getvalue()
        best = str(raw.loc[row, list(GROUPS)].astype(float).idxmax())
        self.text.value = (f"Under <b>{html.escape(row)}</b>, tuning only <b>{block}</b> reaches "
                           f"{acc:.3f} against {full:.3f} for tuning everything "
                           f"({acc - full:+.3f}); the best single group is <b>{best}</b>.")
        return dict(shift=shift, block=block, acc=acc, all=full, best=best)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)


def surgical_widget(compute: Callable[[str], LabResult], **kwargs) -> SurgicalWidget:
    """A :class:`SurgicalWidget` that calls ``compute(shift)`` for shifts it has not seen."""
    return SurgicalWidget(compute, **kwargs)
