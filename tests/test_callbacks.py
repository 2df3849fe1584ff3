"""Tests for ftkit.training.callbacks: LivePlot is silent outside a notebook and updates one display inside."""
import pytest
from tiny_task import FAST, Quadrants, tiny

from ftkit.training.callbacks import LivePlot
from ftkit.training.loop import fit


@pytest.fixture(scope="module")
def data():
    return Quadrants(192, seed=0), Quadrants(96, seed=1)


def test_liveplot_is_harmless_outside_a_notebook(data, capsys):
    h = fit(tiny(), data[0], data[1], epochs=1, lr=0.05, callbacks=[LivePlot(every=1)], **FAST)
    assert len(h.steps) == 6
    assert capsys.readouterr().out == ""


def test_liveplot_updates_one_display_in_a_notebook(data, monkeypatch):
    import IPython.display

    import ftkit.training.callbacks

    shown = []

    class Handle:
        def update(self, fig):
            shown.append(("update", [len(ax.lines) for ax in fig.axes]))

    def fake_display(fig, display_id=False):
        shown.append(("display", [len(ax.lines) for ax in fig.axes]))
        return Handle()

    monkeypatch.setattr(ftkit.training.callbacks, "_in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", fake_display)
    fit(tiny(), data[0], data[1], epochs=2, lr=0.05, callbacks=[LivePlot(every=4)], **FAST)
    # draws at steps 4, 8, 12 and at both epoch-end evaluations: one display, then updates in place
    assert [kind for kind, _ in shown] == ["display"] + ["update"] * 4
    assert shown[-1][1] == [2, 1]  # train + val loss; val accuracy


def test_stop_training_lives_beside_the_protocol(data):
    import ftkit.training.engine
    from ftkit.training.callbacks import StopTraining

    assert ftkit.training.engine.StopTraining is StopTraining  # the one fit's loop catches

    class StopAt2:
        def on_step(self, history, row):
            if row["step"] == 2:
                raise StopTraining("enough")

    h = fit(tiny(), data[0], epochs=2, lr=0.05, callbacks=StopAt2(), **FAST)
    assert len(h.steps) == 2 and h.stopped_reason == "stopped by a callback: enough"
