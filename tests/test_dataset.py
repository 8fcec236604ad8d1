"""The validated Dataset: RELIABILITY.md cases 5-7 and 9, and its invariants."""
import io

import numpy as np
import pandas as pd
import pytest

from recommender import ColumnMapping, DataError, Dataset
from recommender.io import read_table


def frame(text: str, name: str = "interactions.csv") -> pd.DataFrame:
    return read_table(io.BytesIO(text.encode()), name=name)


@pytest.fixture
def small():
    interactions = frame("user_id,item_id,rating,timestamp\n"
                         "u1,i1,5,2024-01-01\nu1,i2,3,2024-01-02\nu2,i1,4,2024-01-03\nu3,i3,2,2024-01-04\n")
    users = frame("user_id,age,gender,region\nu1,25,F,North\nu2,41,M,South\nu4,33,F,North\n", "users.csv")
    items = frame("item_id,title,genres,price\ni1,Alpha,Action|Comedy,10\ni2,Beta,Drama,20\n"
                  "i4,Delta,Comedy,5\n", "items.csv")
    return Dataset.from_frames(interactions, users, items, name="small")


def test_invariants(small):
    assert small.user_index.dtype == np.int32 and small.item_index.dtype == np.int32
    assert small.matrix.shape == (small.n_users, small.n_items)
    assert small.matrix.indices.dtype == np.int32
    assert small.matrix.nnz == small.n_interactions == 4
    assert len(small.users) == small.n_users and len(small.items) == small.n_items
    assert small.user_features.shape == (small.n_users, small.profile_encoder.n_features)
    assert small.item_features.shape == (small.n_items, small.item_encoder.n_features)
    assert small.user_features.dtype == np.float32
    # id maps both ways
    assert list(small.user_ids[small.user_indices(["u2", "u1"])]) == ["u2", "u1"]
    for user, item, weight in zip(small.user_index, small.item_index, small.weights):
        assert small.matrix[user, item] == weight


def test_cold_users_and_items_are_kept(small):
    # u4 has a profile but no interactions; i4 has features but no interactions
    assert "u4" in small.user_ids and "i4" in small.item_ids
    assert small.matrix[small.user_indices(["u4"])[0]].nnz == 0
    # u3 / i3 interact but have no profile / item row: attributes are missing, features "unknown"
    u3 = small.user_indices(["u3"])[0]
    names = small.profile_encoder.feature_names
    assert small.user_features[u3, names.index("gender=(unknown)")] == 1
    warnings = " ".join(str(p) for p in small.report.warnings)
    assert "no row in the user table" in warnings and "cold items" in warnings


def test_repr_is_readable(small):
    text = repr(small)
    assert "4 users" in text and "4 items" in text and "4 interactions" in text
    assert "gender (categorical)" in text and "genres (multilabel)" in text


def test_unknown_ids_raise_key_error_naming_them(small):
    with pytest.raises(KeyError, match="'zz'"):
        small.user_indices(["u1", "zz"])
    with pytest.raises(KeyError, match="item id"):
        small.item_indices(["nope"])


# 5. Missing required column / wrong delimiter
def test_missing_item_column_lists_what_was_found():
    with pytest.raises(DataError, match=r"no item id column found \(columns found: 'user_id', 'product'"):
        Dataset.from_frames(frame("user_id,product\nu1,i1\n").rename(columns={"product": "product"}),
                            None, None, columns={"item": None})


def test_wrong_delimiter_is_diagnosed():
    semicolon = read_table(io.BytesIO(b"user_id;item_id;rating\nu1;i1;5\n"), name="ratings.csv", sep=",")
    with pytest.raises(DataError, match=r"looks semicolon-separated"):
        Dataset.from_frames(semicolon)


def test_mapped_column_that_does_not_exist_is_reported():
    with pytest.raises(DataError, match=r"the rating column 'stars' is not in the file"):
        Dataset.from_frames(frame("user_id,item_id\nu1,i1\n"), columns={"rating": "stars"})


def test_column_names_are_guessed_and_can_be_overridden():
    interactions = frame("customerId,sku,qty,event_time\nc1,s1,2,1700000000\nc2,s1,1,1700000100\n")
    dataset = Dataset.from_frames(interactions)
    assert dataset.has_ratings and dataset.timestamps is not None
    overridden = Dataset.from_frames(interactions, columns=ColumnMapping(user="sku", item="customerId"))
    assert set(overridden.user_ids) == {"s1"}


def test_all_problems_are_collected_in_one_report():
    interactions = frame("user_id,item_id\nu1,i1\n")
    users = frame("age,gender\n3,F\n", "users.csv")
    items = frame("title\nx\n", "items.csv")
    with pytest.raises(DataError) as error:
        Dataset.from_frames(interactions, users, items, columns={"rating": "nope"})
    files = {p.file for p in error.value.problems}
    assert {"interactions.csv", "users.csv", "items.csv"} <= files


# 6. Ids are text
def test_leading_zeros_and_na_are_distinct_ids():
    dataset = Dataset.from_frames(frame("user_id,item_id\n00123,NA\n123,NA\nNA,00123\n"))
    assert set(dataset.user_ids) == {"00123", "123", "NA"}
    assert set(dataset.item_ids) == {"NA", "00123"}
    assert dataset.n_interactions == 3


def test_typed_frames_keep_integer_ids():
    dataset = Dataset.from_frames(pd.DataFrame({"user_id": [1, 2], "item_id": [10.0, 20.0]}))
    assert list(dataset.item_ids) == ["10", "20"]


# 7. Bad ratings and timestamps: per-row report, explicit counts
def test_bad_ratings_are_dropped_with_counts_and_lines():
    interactions = frame("user_id,item_id,rating\nu1,i1,5\nu2,i1,abc\nu3,i2,inf\nu4,i2,\nu5,i3,4\n")
    dataset = Dataset.from_frames(interactions)
    assert dataset.n_interactions == 2
    texts = [str(p) for p in dataset.report.warnings]
    assert any("line 5" in t and "1 rating(s) are empty" in t for t in texts)
    assert any("lines 3 and 4" in t and "2 rating(s) are not a finite number" in t for t in texts)


def test_unparsable_timestamps_are_dropped_with_counts():
    interactions = frame("user_id,item_id,timestamp\nu1,i1,2024-01-01\nu2,i1,yesterday\nu3,i2,2024-02-30\n"
                         "u4,i2,2024-03-01T10:00:00\n")
    dataset = Dataset.from_frames(interactions)
    assert dataset.n_interactions == 2
    problem = next(p for p in dataset.report.warnings if p.column == "timestamp")
    assert problem.rows == (3, 4) and "2 timestamp(s)" in problem.message


def test_unix_seconds_and_milliseconds_are_both_understood():
    seconds = Dataset.from_frames(frame("user_id,item_id,ts\nu1,i1,1700000000\nu2,i1,1700000100\n"))
    millis = Dataset.from_frames(frame("user_id,item_id,ts\nu1,i1,1700000000000\nu2,i1,1700000100000\n"))
    np.testing.assert_allclose(seconds.timestamps, millis.timestamps)


def test_all_rows_bad_is_an_error_not_an_empty_dataset():
    with pytest.raises(DataError, match="no usable interaction rows"):
        Dataset.from_frames(frame("user_id,item_id,rating\nu1,i1,x\nu2,i2,y\n"))


def test_empty_ids_are_dropped_with_a_count():
    dataset = Dataset.from_frames(frame("user_id,item_id\nu1,i1\n,i2\nu3,\n"))
    assert dataset.n_interactions == 1
    assert sum("empty id" in p.message for p in dataset.report.warnings) == 2


def test_repeated_ratings_keep_the_latest_and_implicit_events_add_up():
    rated = Dataset.from_frames(frame("user_id,item_id,rating,ts\nu1,i1,2,200\nu1,i1,5,100\nu1,i1,3,300\n"))
    assert rated.n_interactions == 1 and rated.weights[0] == 3
    clicks = Dataset.from_frames(frame("user_id,item_id\nu1,i1\nu1,i1\nu1,i2\n"))
    assert clicks.matrix[0].toarray().tolist() == [[2.0, 1.0]]


# 9. Degenerate data
def test_one_user_one_item_builds_with_a_warning():
    dataset = Dataset.from_frames(frame("user_id,item_id\nu1,i1\n"))
    assert dataset.n_users == 1 and dataset.n_items == 1
    assert any("too little" in p.message for p in dataset.report.warnings)


def test_duplicate_profile_rows_keep_the_first():
    users = frame("user_id,gender\nu1,F\nu1,M\n", "users.csv")
    dataset = Dataset.from_frames(frame("user_id,item_id\nu1,i1\n"), users)
    assert dataset.users["gender"].tolist() == ["F"]
    assert any("more than once" in p.message and p.rows == (3,) for p in dataset.report.warnings)


def test_pii_columns_are_flagged_and_excluded():
    users = frame("user_id,email,full_name,gender\n" + "".join(
        f"u{i},p{i}@mail.com,Person {i},{'FM'[i % 2]}\n" for i in range(30)), "users.csv")
    interactions = frame("user_id,item_id\n" + "".join(f"u{i},i{i % 3}\n" for i in range(30)))
    dataset = Dataset.from_frames(interactions, users)
    assert dataset.user_roles["email"] == "pii" and dataset.user_roles["full_name"] == "pii"
    assert not any(n.startswith(("email", "full_name")) for n in dataset.profile_encoder.feature_names)
    assert any("personal identifiers" in p.message for p in dataset.report.warnings)


def test_with_interactions_keeps_maps_and_recomputes_behaviour(small):
    subset = small.with_interactions(np.array([True, False, True, False]))
    assert subset.n_users == small.n_users and subset.n_items == small.n_items
    assert subset.n_interactions == 2
    assert subset.matrix.nnz == 2
    assert not np.allclose(subset.behaviour_features, small.behaviour_features)


def test_encode_new_users_matches_training_encoding(small):
    u1 = small.user_indices(["u1"])[0]
    profile = small.users.iloc[[u1]].assign(user_id="someone")
    static, behaviour, history = small.encode_new_users(profile)
    np.testing.assert_allclose(static[0], small.user_features[u1])
    assert history.nnz == 0
    static, behaviour, history = small.encode_new_users(
        pd.DataFrame({"user_id": ["x"], "age": ["200"], "gender": ["never seen"]}), {"x": ["i1", "i2"]})
    names = small.profile_encoder.feature_names
    assert static[0, names.index("gender=(unknown)")] == 1
    assert static[0, names.index("region=(unknown)")] == 1  # column missing from the form
    assert history.nnz == 2
    with pytest.raises(KeyError, match="'nope'"):
        small.encode_new_users(pd.DataFrame({"user_id": ["x"]}), {"x": ["nope"]})


def test_from_files_reports_problems_of_every_file(tmp_path):
    (tmp_path / "i.csv").write_bytes(b"")
    (tmp_path / "u.csv").write_bytes(b"user_id,a,a\n1,2,3\n")
    with pytest.raises(DataError) as error:
        Dataset.from_files(tmp_path / "i.csv", tmp_path / "u.csv")
    assert len(error.value.problems) == 2


def test_sample_data_loads_cleanly():
    from pathlib import Path

    folder = Path(__file__).parents[1] / "sample_data"
    if not (folder / "interactions.csv").exists():
        pytest.skip("sample data not generated yet")
    dataset = Dataset.from_files(folder / "interactions.csv", folder / "users.csv", folder / "items.csv")
    assert dataset.n_interactions > 10_000
    assert not dataset.report.errors
    assert dataset.item_label_column == "title"
    assert dataset.user_roles["age"] == "age"


@pytest.mark.parametrize("text", ["2024-01-01T00:00:00", "2024-01-01", "2024-01-01 00:00:00+00:00", "1704067200",
                                  "1704067200000"])
def test_timestamps_are_unix_seconds_whatever_the_spelling(text):
    from recommender.dataset import parse_timestamps

    assert parse_timestamps(pd.Series([text, text], dtype="string"))[0] == 1704067200.0
