"""ftkit.viz.tables: one format for every table a learner reads."""
import numpy as np
import pandas as pd
import pytest

from ftkit.viz.tables import format_frame, format_value, table


def test_values_read_as_words_and_three_digits():
    assert [format_value(v) for v in (0.374667, 26.666667, 3e-4, 1281000, None, True, 0.3)] == [
        "0.375", "26.7", "3.00e-04", "1,281,000", "-", "yes", "0.300"]
    assert format_value(float("nan"), missing="never") == "never"
    assert format_value(np.int64(7)) == "7" and format_value(np.bool_(False)) == "no"
    assert format_value(0.00707) == "0.00707" and format_value(3e-3, sci_below=1) == "3.00e-03"


def test_learning_rate_columns_read_in_scientific_notation():
    df = pd.DataFrame({"lr": [3e-3], "chosen LR": [1e-2], "lr/head": [0.5], "final_acc_std": [0.00707]})
    assert format_frame(df).iloc[0].tolist() == ["3.00e-03", "1.00e-02", "5.00e-01", "0.00707"]


def test_missing_words_per_column_and_whole_numbers_stay_whole():
    df = pd.DataFrame({"strategy": ["a", "b"], "steps_to_target": [12.0, np.nan], "reason": [None, "diverged"]})
    out = format_frame(df, {"steps_to_target": "never", "reason": "ran to the end"})
    assert out.to_dict(orient="list") == {"strategy": ["a", "b"], "steps_to_target": ["12", "never"],
                                          "reason": ["ran to the end", "diverged"]}
    with pytest.raises(KeyError, match="lacks"):
        format_frame(df, {"nope": "x"})


def test_same_html_in_cells_and_widgets():
    t = table(pd.DataFrame({"acc": [0.374667], "lr": [3e-4]}))
    assert t._repr_html_() == t.html()
    assert "0.375" in t.html() and "3.00e-04" in t.html() and "nan" not in t.html().lower()
    assert "overflow-x:auto" in t.html()  # wide tables scroll in their own box
    with pytest.raises(TypeError, match="DataFrame"):
        table([1, 2])
