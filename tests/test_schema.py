"""Guessing column roles."""
import numpy as np
import pandas as pd
import pytest

from recommender.schema import guess_id_column, guess_interaction_columns, infer_column_role, infer_column_roles


@pytest.mark.parametrize("columns,expected", [
    (["userId", "movieId", "rating", "timestamp"], ("userId", "movieId", "rating", "timestamp")),
    (["customer_id", "product_id", "score", "date"], ("customer_id", "product_id", "score", "date")),
    (["uid", "iid", "ts"], ("uid", "iid", None, "ts")),
    (["User ID", "SKU", "Quantity", "Event Time"], ("User ID", "SKU", "Quantity", "Event Time")),
    (["a", "b"], (None, None, None, None)),
])
def test_interaction_columns_are_guessed_from_common_names(columns, expected):
    mapping = guess_interaction_columns(columns)
    assert (mapping.user, mapping.item, mapping.rating, mapping.timestamp) == expected


def test_id_column_of_side_tables():
    assert guess_id_column(["movie_id", "title"], "item") == "movie_id"
    assert guess_id_column(["id", "age"], "user") == "id"


def series(values):
    return pd.Series(values, dtype="string")


def test_roles():
    n = 200
    rng = np.random.default_rng(0)
    assert infer_column_role("age", series(rng.integers(18, 70, n).astype(str)), "user") == "age"
    assert infer_column_role("gender", series(rng.choice(["F", "M"], n)), "user") == "categorical"
    assert infer_column_role("occupation", series(rng.integers(0, 21, n).astype(str)), "user") == "categorical"
    assert infer_column_role("income", series(rng.normal(5e4, 1e4, n).round(2).astype(str)), "user") == "numeric"
    assert infer_column_role("genres", series(rng.choice(["A|B", "C", "A|C"], n)), "item") == "multilabel"
    assert infer_column_role("title", series([f"Movie {i}" for i in range(n)]), "item") == "label"
    assert infer_column_role("email", series([f"x{i}@y.org" for i in range(n)]), "user") == "pii"
    assert infer_column_role("name", series([f"P {i}" for i in range(n)]), "user") == "pii"
    assert infer_column_role("phone", series([f"+44 20 7946 {i:04d}" for i in range(n)]), "user") == "pii"
    assert infer_column_role("notes", series([f"Lives at {i} Baker Street London" for i in range(n)]),
                             "user") == "pii"
    assert infer_column_role("zip_code", series(rng.integers(10000, 99999, n).astype(str)), "user") == "categorical"
    assert infer_column_role("blank", series([""] * n), "user") == "ignore"
    description = [" ".join(rng.choice(["good", "warm", "soft", "red", "shoe", "light", "for", "the", "a"], 12))
                   for _ in range(n)]
    assert infer_column_role("description", series(description), "item") == "text"


def test_overrides_win_and_are_checked():
    frame = pd.DataFrame({"user_id": ["1", "2"], "age": ["20", "30"]})
    assert infer_column_roles(frame, "user_id", "user", {"age": "categorical"}) == {"age": "categorical"}
    with pytest.raises(ValueError, match="unknown column role"):
        infer_column_roles(frame, "user_id", "user", {"age": "banana"})
