"""Small-group suppression and CSV-injection-safe export."""
import csv
import io

import numpy as np
import pandas as pd
import pytest

from recommender.analysis.privacy import (K_MIN_DEFAULT, K_MIN_FLOOR, safe_csv, small_group_mask, suppress_matrix,
                                          suppress_small)


def read_back(payload: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(payload.decode("utf-8"), newline="")))


def test_defaults():
    assert (K_MIN_DEFAULT, K_MIN_FLOOR) == (10, 5)


def test_rows_below_k_min_are_masked_and_labelled():
    frame = pd.DataFrame({"segment": [0, 1, 2], "name": ["big", "tiny", "edge"], "size": [50, 3, 10],
                          "share": [0.8, 0.05, 0.15]})
    masked, n = suppress_small(frame, "size", k_min=10, keep=("segment",))
    assert n == 1
    assert masked["segment"].tolist() == [0, 1, 2]                       # kept column stays visible
    assert masked.loc[1, ["name", "size", "share"]].isna().all()        # everything else is gone
    assert masked.loc[2, "size"] == 10 and masked.loc[2, "name"] == "edge"  # exactly k_min is shown
    assert masked["privacy"].tolist() == ["", "suppressed (<10)", ""]
    assert "fewer than 10 people" in masked.attrs["notice"]
    assert frame.loc[1, "size"] == 3                                     # the input is not modified


def test_nothing_suppressed_gives_empty_notice():
    masked, n = suppress_small(pd.DataFrame({"n": [10, 20]}), "n")
    assert n == 0 and masked.attrs["notice"] == "" and (masked["privacy"] == "").all()


@pytest.mark.parametrize("k_min", [4, 0, -1])
def test_k_min_below_floor_is_rejected(k_min):
    with pytest.raises(ValueError, match="at least 5"):
        suppress_small(pd.DataFrame({"n": [1]}), "n", k_min=k_min)
    with pytest.raises(ValueError, match="at least 5"):
        suppress_matrix(np.ones((1, 1)), np.ones((1, 1)), k_min=k_min)


def test_k_min_at_floor_is_accepted():
    _, n = suppress_small(pd.DataFrame({"n": [4, 5]}), "n", k_min=5)
    assert n == 1


def test_matrix_cells_below_k_min_become_nan():
    values = np.array([[1.0, 2.0], [3.0, 4.0]])
    counts = np.array([[12, 9], [10, 0]])
    masked, n = suppress_matrix(values, counts, k_min=10)
    assert n == 2
    np.testing.assert_array_equal(np.isnan(masked), [[False, True], [False, True]])
    assert masked[0, 0] == 1.0 and masked[1, 0] == 3.0
    assert not np.isnan(values).any()


def test_matrix_keeps_frame_labels_and_checks_shapes():
    frame = pd.DataFrame([[1.0, 2.0]], index=["g"], columns=["a", "b"])
    masked, _ = suppress_matrix(frame, np.array([[3, 30]]), k_min=10)
    assert list(masked.columns) == ["a", "b"] and np.isnan(masked.loc["g", "a"])
    with pytest.raises(ValueError, match="shape"):
        suppress_matrix(np.ones((2, 2)), np.ones((2, 3)))


def test_small_group_mask():
    np.testing.assert_array_equal(small_group_mask([9, 10, np.nan]), [True, False, True])


@pytest.mark.parametrize("text", ["=cmd|' /C calc'!A0", "+1", "-2+3", "@SUM(A1:A2)", "\tx", "\rx"])
def test_formula_like_text_is_neutralised(text):
    rows = read_back(safe_csv(pd.DataFrame({"title": [text]})))
    assert rows[1][0] == "'" + text


def test_numbers_and_plain_text_are_untouched():
    frame = pd.DataFrame({"score": [-3, 2], "ratio": [-0.5, 1.25], "title": ["plain", "a-b = c"],
                          "mixed": [-7, "-x"]})
    rows = read_back(safe_csv(frame))
    assert rows[1] == ["-3", "-0.5", "plain", "-7"]
    assert rows[2] == ["2", "1.25", "a-b = c", "'-x"]


def test_headers_categoricals_and_utf8():
    frame = pd.DataFrame({"=bad header": ["café"], "group": pd.Categorical(["@home"])})
    payload = safe_csv(frame)
    rows = read_back(payload)
    assert rows[0] == ["'=bad header", "group"]
    assert rows[1] == ["café", "'@home"]
    assert "café".encode("utf-8") in payload and not payload.startswith(b"\xef\xbb\xbf")


def test_line_breaks_inside_values_do_not_split_rows():
    rows = read_back(safe_csv(pd.DataFrame({"title": ["a\rb", "c\nd"], "n": [1, 2]})))
    assert rows == [["title", "n"], ["a\rb", "1"], ["c\nd", "2"]]
