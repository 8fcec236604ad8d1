"""Property-based tests: messy generated tables either load or raise DataError, never anything else."""
import csv
import io

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recommender import DataError, Dataset
from recommender.io import read_table

#: Examples per property (recorded here, as the brief asks): 100 + 100 + 100 = 300 per run.
EXAMPLES_FILES = 100
EXAMPLES_FRAMES = 100
EXAMPLES_BYTES = 100

names = st.one_of(
    st.sampled_from(["user_id", "userId", "item_id", "movie_id", "rating", "score", "timestamp", "ts", "age",
                     "gender", "genres", "title", "email", "", " ", "user_id ", "ünïcode", "a,b", "x\"y"]),
    st.text(min_size=0, max_size=8),
)
cells = st.one_of(
    st.none(), st.just(""), st.just("NA"), st.just("00123"), st.just("inf"), st.just("-inf"), st.just("nan"),
    st.integers(-10, 10**12).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=12), st.sampled_from(["2024-01-01", "2024-13-45", "1700000000", "A|B", "<script>x</script>",
                                          "=cmd()", "Ünïcødé", "a\nb", "a,b", '"q"']),
)


@st.composite
def tables(draw):
    columns = draw(st.lists(names, min_size=1, max_size=6))
    n_rows = draw(st.integers(0, 12))
    rows = [[draw(cells) for _ in columns] for _ in range(n_rows)]
    return columns, rows


def to_csv(columns, rows, sep=",") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buffer.getvalue().encode("utf-8")


@settings(max_examples=EXAMPLES_FILES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), st.sampled_from([",", ";", "\t", "|"]), st.booleans())
def test_generated_files_load_or_raise_data_error(table, sep, with_profiles):
    columns, rows = table
    data = to_csv(columns, rows, sep)
    try:
        interactions = read_table(io.BytesIO(data), name="interactions.csv")
        users = read_table(io.BytesIO(data), name="users.csv") if with_profiles else None
        dataset = Dataset.from_frames(interactions, users)
    except DataError as error:
        assert error.problems and all(str(p) for p in error.problems)
        return
    _check_invariants(dataset)


@settings(max_examples=EXAMPLES_FRAMES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), tables())
def test_generated_frames_build_or_raise_data_error(interaction_table, profile_table):
    columns, rows = interaction_table
    frame = pd.DataFrame(rows, columns=pd.Index(columns, dtype=object)) if len(set(columns)) == len(columns) \
        else pd.DataFrame(rows)
    profile_columns, profile_rows = profile_table
    users = (pd.DataFrame(profile_rows, columns=pd.Index(profile_columns, dtype=object))
             if len(set(profile_columns)) == len(profile_columns) else None)
    try:
        dataset = Dataset.from_frames(frame, users)
    except DataError as error:
        assert error.problems
        return
    _check_invariants(dataset)


@settings(max_examples=EXAMPLES_BYTES, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_load_or_raise_data_error(data):
    try:
        frame = read_table(io.BytesIO(data), name="upload.csv")
    except DataError:
        return
    assert len(frame) > 0


def test_typed_messy_frame_with_duplicated_ids_and_unicode():
    frame = pd.DataFrame({"user_id": [1, 1, None, 2.0, "ü"], "item_id": ["a", "a", "b", None, "ç"],
                          "rating": [1, np.inf, 3, 4, "5"]})
    dataset = Dataset.from_frames(frame)
    assert set(dataset.user_ids) == {"1", "ü"}
    _check_invariants(dataset)


def _check_invariants(dataset: Dataset) -> None:
    assert dataset.n_interactions >= 1
    assert dataset.user_index.dtype == np.int32 and dataset.item_index.dtype == np.int32
    assert dataset.user_index.max() < dataset.n_users and dataset.item_index.max() < dataset.n_items
    assert np.isfinite(dataset.weights).all()
    assert dataset.matrix.shape == (dataset.n_users, dataset.n_items)
    assert dataset.user_features.shape[0] == dataset.n_users
    assert np.isfinite(dataset.user_features).all() and np.isfinite(dataset.behaviour_features).all()
    repr(dataset)
