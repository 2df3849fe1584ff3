"""Callbacks for ``ftkit.training.loop.fit``: the protocol, :class:`StopTraining`, and :class:`LivePlot`.

A callback is any object with any of these methods (missing ones are skipped):

* ``on_step(history, row)``: after each optimizer step; ``row`` is the new
  ``history.steps`` row (step, epoch, loss, ``lr/<group>``);
* ``on_eval(history, row)``: after each validation pass (``history.evals`` row);
* ``on_epoch_end(history, row)``: after each epoch (``history.epochs`` row);
* ``on_diverged(history, row)``: when the divergence guard stops the run;
  ``row`` is the step that diverged (its loss may be NaN), already rolled back.

Raise :class:`StopTraining` (``from ftkit.training.callbacks import StopTraining``)
from one to end the run cleanly (early stopping); its message becomes
``History.stopped_reason``.

>>> class EarlyStop:                                        # doctest: +SKIP
...     def on_eval(self, history, row):
...         if row["val_acc"] >= 0.95:
...             raise StopTraining("val_acc reached 0.95")
>>> fit(model, train, val, epochs=5, callbacks=[EarlyStop(), LivePlot(every=10)])  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any, Sequence

from ftkit.training.history import History

__all__ = ["EVENTS", "StopTraining", "callback_list", "dispatch", "LivePlot"]

EVENTS = ("on_step", "on_eval", "on_epoch_end", "on_diverged")


class StopTraining(Exception):
    """Raise from a callback to end :func:`ftkit.training.loop.fit` cleanly (e.g. early stopping).

    The message becomes ``History.stopped_reason``.
    """


def callback_list(callbacks: Any) -> list[Any]:
    """``callbacks`` as a list: a single callback object, a sequence of them, or None."""
    if any(hasattr(callbacks, a) for a in EVENTS):
        return [callbacks]  # a single callback object
    return list(callbacks or ())


def dispatch(callbacks: Sequence[Any], event: str, history: History, row: dict) -> None:
    """Call ``event`` (one of :data:`EVENTS`) on every callback that has it, in order."""
    for cb in callbacks:
        fn = getattr(cb, event, None)
        if fn is not None:
            fn(history, row)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class LivePlot:
    """Callback that redraws the loss and accuracy curves in a notebook during ``fit``.

    It updates one figure in place (a display handle, so the tqdm bar above
    it survives). Outside a Jupyter kernel it does nothing.

    >>> fit(model, train, val, epochs=5, callbacks=[LivePlot(every=10)])   # doctest: +SKIP
    """

    def __init__(self, every: int = 20, figsize: tuple[float, float] = (9.0, 3.0)):
        self.every, self.figsize = every, figsize
        self._fig = self._handle = self._history = None

    def on_step(self, history: History, row: dict) -> None:
        if row["step"] % self.every == 0:
            self.draw(history)

    def on_eval(self, history: History, row: dict) -> None:
        self.draw(history)

    def draw(self, history: History) -> None:
        """Redraw now (called by the events above)."""
        if not _in_notebook():
            return
        import matplotlib.pyplot as plt
        from IPython.display import display

        if self._fig is None or history is not self._history:
            self._fig, _ = plt.subplots(1, 2, figsize=self.figsize)
            plt.close(self._fig)  # shown through the handle only
            self._handle, self._history = None, history
        ax_loss, ax_acc = self._fig.axes
        steps, evals = history.step_frame(), history.eval_frame()
        ax_loss.clear()
        ax_loss.plot(steps["step"], steps["loss"], lw=0.8, label="train (batch)")
        ax_loss.plot(evals["step"], evals["val_loss"], "o-", label="val")
        ax_loss.set(xlabel="step", ylabel="loss")
        ax_loss.legend()
        ax_acc.clear()
        ax_acc.plot(evals["step"], evals["val_acc"], "o-")
        ax_acc.set(xlabel="step", ylabel="val accuracy")
        if self._handle is None:
            self._handle = display(self._fig, display_id=True)
        else:
            self._handle.update(self._fig)
