"""Tables a learner reads: the same formatting in notebook cells and in widgets.

Numbers get 3 significant digits (LRs below 0.01 in scientific notation,
counts with thousands separators), missing values a word ("never", "-")
instead of NaN or None, booleans yes/no. :func:`table` wraps a DataFrame in a
:class:`Table`, which JupyterLab shows as compact HTML that fits a 1366-px
window (long headers wrap, wide tables scroll inside their own box) and a
terminal as aligned text; widgets put ``Table.html()`` in an ``HTML`` widget.

>>> table(result.summary(), missing={"steps_to_target": "never"})   # doctest: +SKIP
"""
from __future__ import annotations

import html
import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["Table", "table", "format_value", "format_frame", "TABLE_CSS"]

# Scoped to .ftkit-table so that nothing else on the page changes.
TABLE_CSS = (
    ".ftkit-table-box{max-width:100%;overflow-x:auto}"
    ".ftkit-table{border-collapse:collapse;font-size:12.5px;font-variant-numeric:tabular-nums;"
    "margin:2px 0}"
    ".ftkit-table th,.ftkit-table td{padding:2px 8px;border:none;border-bottom:1px solid #ddd;"
    "text-align:right;white-space:nowrap}"
    ".ftkit-table th{white-space:normal;max-width:9em;vertical-align:bottom;font-weight:600}"
    ".ftkit-table td.ftkit-text,.ftkit-table th.ftkit-text{text-align:left}"
    ".ftkit-table caption{caption-side:top;text-align:left;color:#555;padding-bottom:2px}"
)


def format_value(value, *, missing: str = "-", digits: int = 3, sci_below: float = 1e-3) -> str:
    """One cell as a learner reads it.

    Floats below ``sci_below`` (in size) use scientific notation; learning-rate
    columns pass ``sci_below=1`` so that 3e-3 reads "3.00e-03", not "0.00300".

    >>> [format_value(v) for v in (0.374667, 26.666667, 3e-4, 1281000, None, True, 0.00707)]
    ['0.375', '26.7', '3.00e-04', '1,281,000', '-', 'yes', '0.00707']
    """
    if value is None:
        return missing
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        x = float(value)
        if math.isnan(x):
            return missing
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if x == 0:
            return "0"
        if abs(x) < sci_below or abs(x) >= 10 ** (digits + 3):
            return f"{x:.{digits - 1}e}"
        text = f"{x:#.{digits}g}"  # keeps trailing zeros: 0.300, 1.00
        if "e" in text:  # large values: print the whole number
            return f"{x:,.0f}"
        return text.rstrip(".") if text.endswith(".") else text
    if isinstance(value, (pd.Timestamp,)):
        return str(value)
    try:
        if pd.isna(value):
            return missing
    except (TypeError, ValueError):
        pass
    return str(value)


def format_frame(df: pd.DataFrame, missing: Mapping[str, str] | str = "-", digits: int = 3,
                 lr_columns: Sequence[str] = ()) -> pd.DataFrame:
    """``df`` with every cell formatted by :func:`format_value` (strings, same shape and labels).

    Args:
        df: the table.
        missing: the word for a missing value: one for every column, or per column
            (``{"steps_to_target": "never"}``; other columns get "-").
        digits: significant digits of floats.
        lr_columns: more columns to write like learning rates (3.00e-04), besides those
            whose name says "lr" (see :func:`is_lr_column`).
    """
    if isinstance(missing, str):
        words = {c: missing for c in df.columns}
    else:
        unknown = set(missing) - set(df.columns)
        if unknown:
            raise KeyError(f"missing= names columns {sorted(unknown)} that the table lacks: {list(df.columns)}")
        words = {c: missing.get(c, "-") for c in df.columns}
    out = pd.DataFrame(index=df.index)
    for c in df.columns:
        values = df[c].tolist()
        if _whole_numbers(df[c]):  # an int column that NaN turned into floats: 12, not 12.0
            values = [v if pd.isna(v) else int(v) for v in values]
        sci = 1.0 if is_lr_column(c) or c in lr_columns else 1e-3
        out[c] = [format_value(v, missing=words[c], digits=digits, sci_below=sci) for v in values]
    return out


def is_lr_column(name) -> bool:
    """"lr", "lr/head", "chosen LR", "LR 3e-04", "seed_min" of an LR table...: learning rates read best as 3.00e-04."""
    return bool(re.search(r"(^|[^a-z])lr($|[^a-z])", str(name).lower()))


def _whole_numbers(column: pd.Series) -> bool:
    if not pd.api.types.is_float_dtype(column):
        return False
    present = column.dropna()
    return bool(len(present)) and len(present) < len(column) and bool((present == present.round()).all())


def _is_text(column: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column))


@dataclass
class Table:
    """A formatted table: ``frame`` keeps the numbers, the display shows the words.

    Attributes:
        frame: the original DataFrame (compute with it).
        missing: word(s) for missing values (see :func:`format_frame`).
        caption: a line above the table, or "".
        index: show the row labels.
    """

    frame: pd.DataFrame
    missing: Mapping[str, str] | str = "-"
    caption: str = ""
    index: bool = False
    digits: int = 3
    lr_columns: Sequence[str] = ()
    text: pd.DataFrame = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.frame, pd.DataFrame):
            raise TypeError(f"table() takes a pandas DataFrame, got {type(self.frame).__name__}")
        self.text = format_frame(self.frame, self.missing, self.digits, self.lr_columns)

    def html(self) -> str:
        """Self-contained HTML (styles included): the same in a cell and in a widget."""
        cols = list(self.frame.columns)
        text_cols = {c for c in cols if _is_text(self.frame[c])}

        def cell(tag: str, value: str, is_text: bool) -> str:
            klass = ' class="ftkit-text"' if is_text else ""
            return f"<{tag}{klass}>{html.escape(str(value))}</{tag}>"

        head = "".join(([cell("th", self.frame.index.name or "", True)] if self.index else [])
                       + [cell("th", str(c).replace("_", " "), c in text_cols) for c in cols])
        body = []
        for label, row in self.text.iterrows():
            cells = ([cell("th", format_value(label), True)] if self.index else [])
            cells += [cell("td", row[c], c in text_cols) for c in cols]
            body.append("<tr>" + "".join(cells) + "</tr>")
        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return (f"<style>{TABLE_CSS}</style><div class='ftkit-table-box'><table class='ftkit-table'>"
                f"{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")

    def _repr_html_(self) -> str:
        return self.html()

    def __str__(self) -> str:
        body = self.text.to_string(index=self.index)
        return f"{self.caption}\n{body}" if self.caption else body

    def __repr__(self) -> str:
        return str(self)


def table(df: pd.DataFrame, missing: Mapping[str, str] | str = "-", *, caption: str = "",
          index: bool = False, digits: int = 3, lr_columns: Sequence[str] = ()) -> Table:
    """Show ``df`` as a learner should read it (3 significant digits, words for missing values).

    Args:
        df: the table; it is not modified (``Table.frame`` is it).
        missing: the word for missing values, for all columns or per column.
        caption: a line shown above the table.
        index: show the row labels (off by default: a RangeIndex means nothing to a reader).
        digits: significant digits of floats.
        lr_columns: more columns to write like learning rates (see :func:`format_frame`).

    Returns:
        A :class:`Table` (HTML in JupyterLab, text in a terminal).
    """
    return Table(df, missing=missing, caption=caption, index=index, digits=digits, lr_columns=lr_columns)
