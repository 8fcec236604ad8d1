"""Small-group suppression and safe CSV export for everything the analysis pages show or export.

Two rules protect the people in the data:

* **k-anonymity threshold.** A row or cell that describes fewer than ``k_min`` people
  (default :data:`K_MIN_DEFAULT`, never below :data:`K_MIN_FLOOR`) is *masked*: its values
  become missing (NaN) and a ``privacy`` column says ``"suppressed (<10)"``. Masking rather
  than dropping keeps a table's shape (the page can still say "3 segments are too small to
  show") while revealing nothing about the people in them; exports drop such rows instead
  (see :func:`recommender.analysis.segments.segment_assignments`).
* **CSV injection** (OWASP): text that a spreadsheet would run as a formula is neutralised
  by :func:`safe_csv` before it leaves the application.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

#: Smallest number of people a shown segment, table row or heatmap cell may describe by default.
K_MIN_DEFAULT = 10
#: ``k_min`` may be raised but never set below this.
K_MIN_FLOOR = 5
#: Column added by :func:`suppress_small` that marks masked rows.
PRIVACY_COLUMN = "privacy"
#: First characters that make a spreadsheet treat a cell as a formula (OWASP CSV injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def check_k_min(k_min: int) -> int:
    """Validate a suppression threshold.

    Raises
    ------
    ValueError
        ``k_min`` is not a whole number of at least :data:`K_MIN_FLOOR`.
    """
    if isinstance(k_min, bool) or not isinstance(k_min, (int, np.integer)):
        raise ValueError(f"k_min must be a whole number of at least {K_MIN_FLOOR} (got {k_min!r}).")
    if k_min < K_MIN_FLOOR:
        raise ValueError(f"k_min = {k_min} is too small: groups of fewer than {K_MIN_FLOOR} people can "
                         f"identify individuals. Use k_min of at least {K_MIN_FLOOR} (default {K_MIN_DEFAULT}).")
    return int(k_min)


def suppressed_label(k_min: int) -> str:
    """The marker of a masked row: ``"suppressed (<10)"``."""
    return f"suppressed (<{k_min})"


def suppression_notice(n_suppressed: int, k_min: int, what: str = "row") -> str:
    """A sentence for the page ("" when nothing was suppressed)."""
    if n_suppressed <= 0:
        return ""
    plural = what if n_suppressed == 1 else f"{what}s"
    return (f"{n_suppressed:,} {plural} describing fewer than {k_min} people "
            f"{'is' if n_suppressed == 1 else 'are'} hidden to protect privacy.")


def suppress_small(frame: pd.DataFrame, count_column: str, k_min: int = K_MIN_DEFAULT,
                   keep: Sequence[str] = ()) -> tuple[pd.DataFrame, int]:
    """Mask the rows of ``frame`` that describe fewer than ``k_min`` people.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per group (segment, table cell, ...).
    count_column : str
        Number of people each row describes.
    k_min : int
        Rows with ``count < k_min`` are masked (missing counts count as 0).
    keep : sequence of str
        Columns left visible in masked rows (a segment number, a group label); every other
        column, the count included, becomes missing.

    Returns
    -------
    frame : pandas.DataFrame
        A copy with the same rows and columns plus a text column ``privacy``
        (``"suppressed (<k_min)"`` on masked rows, ``""`` elsewhere); ``frame.attrs["notice"]``
        holds a sentence for the page ("" when nothing was masked).
    n_suppressed : int

    Raises
    ------
    ValueError
        ``k_min`` below :data:`K_MIN_FLOOR`.
    KeyError
        ``count_column`` or a ``keep`` column is not in ``frame``.
    """
    k_min = check_k_min(k_min)
    missing = [c for c in [count_column, *keep] if c not in frame.columns]
    if missing:
        raise KeyError(f"column(s) {missing} not in the table (columns: {list(frame.columns)})")
    counts = pd.to_numeric(frame[count_column], errors="coerce").fillna(0).to_numpy(dtype=np.float64)
    small = counts < k_min
    out = frame.copy()
    n_suppressed = int(small.sum())
    if n_suppressed:
        for column in out.columns:
            if column in keep:
                continue
            series = out[column]
            if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_integer_dtype(series.dtype):
                series = series.astype(np.float64)
            elif not pd.api.types.is_float_dtype(series.dtype):
                series = series.astype(object)
            series = series.copy()
            series[small] = np.nan if pd.api.types.is_float_dtype(series.dtype) else None
            out[column] = series
    out[PRIVACY_COLUMN] = np.where(small, suppressed_label(k_min), "")
    out.attrs["notice"] = suppression_notice(n_suppressed, k_min)
    out.attrs["n_suppressed"] = n_suppressed
    if n_suppressed:
        logger.info("suppressed %d row(s) with fewer than %d people", n_suppressed, k_min)
    return out, n_suppressed


def suppress_matrix(values, counts, k_min: int = K_MIN_DEFAULT):
    """Hide the heatmap cells that describe fewer than ``k_min`` people.

    Parameters
    ----------
    values : ndarray of float, shape (n_rows, n_columns), or pandas.DataFrame
    counts : ndarray of int, same shape
        People behind each cell.
    k_min : int

    Returns
    -------
    values : ndarray of float64 (or DataFrame, as given)
        A copy with cells where ``counts < k_min`` set to NaN.
    n_suppressed : int
        Number of cells hidden.

    Raises
    ------
    ValueError
        ``k_min`` below :data:`K_MIN_FLOOR`, or ``counts`` of another shape.
    """
    k_min = check_k_min(k_min)
    array = np.array(values, dtype=np.float64, copy=True)
    count_array = np.asarray(counts, dtype=np.float64)
    if count_array.shape != array.shape:
        raise ValueError(f"counts have shape {count_array.shape}, values {array.shape}: they must match.")
    small = ~(np.nan_to_num(count_array, nan=0.0) >= k_min)
    array[small] = np.nan
    n_suppressed = int(small.sum())
    if isinstance(values, pd.DataFrame):
        return pd.DataFrame(array, index=values.index, columns=values.columns), n_suppressed
    return array, n_suppressed


def small_group_mask(counts, k_min: int = K_MIN_DEFAULT) -> np.ndarray:
    """Boolean mask of the groups below ``k_min`` (for dropping them from an export)."""
    k_min = check_k_min(k_min)
    return ~(np.nan_to_num(np.asarray(counts, dtype=np.float64), nan=0.0) >= k_min)


# ---------------------------------------------------------------------- CSV export
def neutralise(value):
    """``value`` with a leading ``'`` when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def _is_text_column(series: pd.Series) -> bool:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return not (pd.api.types.is_numeric_dtype(dtype.categories.dtype)
                    or pd.api.types.is_bool_dtype(dtype.categories.dtype))
    return not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
                or pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype))


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every formula-like text cell (and column name) neutralised.

    Numeric, boolean and date columns are left exactly as they are (``-3`` stays ``-3``);
    in text columns only ``str`` values are changed, so a number stored in a mixed column
    is untouched too.
    """
    out = frame.copy()
    for position, column in enumerate(frame.columns):
        series = frame.iloc[:, position]
        if _is_text_column(series):
            text = series.astype(object)
            out.isetitem(position, text.map(neutralise, na_action="ignore"))
    out.columns = [neutralise(str(c)) if isinstance(c, str) else c for c in frame.columns]
    if not isinstance(out.index, pd.RangeIndex) and out.index.dtype == object:
        out.index = out.index.map(neutralise)
    return out


def safe_csv(frame: pd.DataFrame, index: bool = False) -> bytes:
    """The frame as UTF-8 CSV bytes, safe to open in a spreadsheet (OWASP CSV injection).

    Text fields starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return get a
    leading ``'`` so spreadsheets show them as text instead of running them; numeric columns
    are written unchanged. Fields with commas, quotes or line breaks are quoted by the CSV
    writer as usual.

    Parameters
    ----------
    frame : pandas.DataFrame
    index : bool
        Write the index as the first column.

    Returns
    -------
    bytes
        UTF-8 (no byte-order mark), ``\\r\\n`` line endings (RFC 4180). With that terminator
        the writer quotes every field holding a bare ``\\r`` or ``\\n``, so a stray carriage
        return inside a value cannot split a row.
    """
    return safe_frame(frame).to_csv(index=index, lineterminator="\r\n").encode("utf-8")
