"""Tests of recommender.summary: what the Data page shows, on small hand-built data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recommender import Dataset
from recommender import summary
from recommender.errors import Problem


@pytest.fixture
def tiny() -> Dataset:
    """3 users with interactions + 1 profile-only user, 4 items (one never seen), ratings, timestamps."""
    interactions = pd.DataFrame({
        "user_id": ["u1", "u1", "u1", "u2", "u2", "u3"],
        "item_id": ["i1", "i2", "i3", "i1", "i2", "i1"],
        "rating": ["5", "4", "3", "5", "2", "4"],
        # Unix seconds: two interactions on day 0, the rest on days 1 and 3.
        "timestamp": ["0", "3600", "86400", "90000", "259200", "259300"],
    })
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3", "u4"], "region": ["north", "north", "south", "south"],
                          "email": ["a@x.org", "b@x.org", "c@x.org", "d@x.org"]})
    items = pd.DataFrame({"item_id": ["i1", "i2", "i3", "i4"], "category": ["A", "A", None, "B"],
                          "tags": ["x|y", "x", "", "y"]})
    return Dataset.from_frames(interactions, users, items, name="tiny",
                               user_roles={"region": "categorical", "email": "pii"},
                               item_roles={"category": "categorical", "tags": "multilabel"})


def test_counts_of_a_small_dataset(tiny):
    counts = summary.dataset_counts(tiny)
    assert (counts.n_users, counts.n_items, counts.n_interactions) == (4, 4, 6)
    assert counts.n_cold_users == 1 and counts.n_cold_items == 1
    assert counts.density == pytest.approx(6 / 16)
    assert counts.sparsity == pytest.approx(10 / 16)
    assert counts.median_per_user == 2.0  # 3, 2, 1 interactions
    assert counts.median_per_item == 2.0  # 3, 2, 1
    assert (counts.rating_min, counts.rating_max) == (2.0, 5.0)
    assert counts.rating_mean == pytest.approx(23 / 6)
    assert counts.first_time == pd.Timestamp(0, unit="s", tz="UTC")
    assert counts.last_time == pd.Timestamp(259300, unit="s", tz="UTC")
    assert counts.n_profile_features == 1  # region; the e-mail column is excluded
    assert counts.n_item_features == 2


def test_interactions_per_user_and_item(tiny):
    per_user = summary.interactions_per_user(tiny)
    per_item = summary.interactions_per_item(tiny)
    assert per_user[tiny.user_indices(["u1", "u2", "u3", "u4"])].tolist() == [3, 2, 1, 0]
    assert per_item[tiny.item_indices(["i1", "i2", "i3", "i4"])].tolist() == [3, 2, 1, 0]


def test_long_tail_is_bounded_and_keeps_the_shape():
    rng = np.random.default_rng(0)
    counts = rng.zipf(1.8, size=200_000).astype(np.int64)
    counts[:1000] = 0  # inactive entities are left out (log axes)
    tail = summary.long_tail(counts, max_points=300)
    assert len(tail) <= 300
    assert tail["rank"].iloc[0] == 1 and tail["interactions"].iloc[0] == counts.max()
    assert tail["rank"].iloc[-1] == (counts > 0).sum()
    assert tail["interactions"].iloc[-1] == counts[counts > 0].min()
    assert (np.diff(tail["interactions"]) <= 0).all()
    assert tail["cumulative_share"].iloc[-1] == pytest.approx(1.0)


def test_long_tail_of_no_activity_is_empty():
    assert summary.long_tail(np.zeros(5, dtype=np.int64)).empty


def test_count_histogram_counts_every_entity_in_few_bins():
    rng = np.random.default_rng(1)
    counts = rng.zipf(1.5, size=100_000).astype(np.int64)
    counts[:50] = 0
    table = summary.count_histogram(counts, max_bins=40)
    assert len(table) <= 42
    assert table["count"].sum() == len(counts)
    assert table.loc[0, "label"] == "0" and table.loc[0, "count"] == 50
    assert (table["low"].to_numpy()[1:] == table["high"].to_numpy()[:-1] + 1).all()  # contiguous bins


def test_concentration_and_gini():
    counts = np.array([90, 5, 5, 0, 0, 0, 0, 0, 0, 0])
    table = summary.concentration(counts, top_shares=(0.1, 0.3))
    assert table["n_entities"].tolist() == [1, 3]
    assert table["interaction_share"].tolist() == pytest.approx([0.9, 1.0])
    assert summary.gini(np.full(10, 7)) == pytest.approx(0.0)
    assert summary.gini(np.array([0, 0, 0, 12])) == pytest.approx(3 / 4)


def test_rating_distribution(tiny):
    table = summary.rating_distribution(tiny)
    assert dict(zip(table["rating"], table["count"])) == {2.0: 1, 3.0: 1, 4.0: 2, 5.0: 2}


def test_rating_distribution_bins_continuous_ratings():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"user_id": rng.integers(0, 50, 1000).astype(str),
                          "item_id": rng.integers(0, 40, 1000).astype(str),
                          "rating": rng.uniform(0, 10, 1000).round(3).astype(str)})
    dataset = Dataset.from_frames(frame)
    table = summary.rating_distribution(dataset, max_bins=30)
    assert len(table) == 30
    assert table["count"].sum() == dataset.n_interactions


def test_implicit_data_has_no_rating_distribution():
    dataset = Dataset.from_frames(pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]}))
    assert summary.rating_distribution(dataset) is None
    assert summary.activity_over_time(dataset) is None
    assert summary.dataset_counts(dataset).rating_min is None


def test_activity_per_day_counts_interactions_and_active_users(tiny):
    series = summary.activity_over_time(tiny)
    assert series.period == "day"
    frame = series.frame
    assert frame["period_start"].tolist() == list(pd.date_range("1970-01-01", periods=4, freq="D"))
    assert frame["interactions"].tolist() == [2, 2, 0, 2]
    assert frame["active_users"].tolist() == [1, 2, 0, 2]


@pytest.mark.parametrize("days, period", [(60, "day"), (700, "week"), (3000, "month"), (20000, "year")])
def test_activity_over_time_picks_a_period_with_few_buckets(days, period):
    rng = np.random.default_rng(3)
    n = 5000
    seconds = rng.uniform(1.6e9, 1.6e9 + days * 86400, n)
    frame = pd.DataFrame({"user_id": rng.integers(0, 300, n).astype(str),
                          "item_id": rng.integers(0, 200, n).astype(str), "timestamp": seconds.astype(str)})
    dataset = Dataset.from_frames(frame, columns={"timestamp": "timestamp"})
    series = summary.activity_over_time(dataset, max_periods=120)
    assert series.period == period
    assert len(series.frame) <= 120
    assert series.frame["interactions"].sum() == dataset.n_interactions
    if period == "week":
        assert (series.frame["period_start"].dt.day_of_week == 0).all()  # weeks start on Monday


def test_categorical_distribution_pools_and_suppresses_small_groups():
    values = pd.Series(["A"] * 20 + ["B"] * 15 + ["C"] * 3 + ["D"] * 2 + [None] * 4)
    dist = summary.attribute_distribution(values, "group", "categorical", k_min=10)
    assert dist.kind == "bar"
    assert dict(zip(dist.table["value"], dist.table["count"])) == {"A": 20, "B": 15}
    assert dist.n_suppressed == 5 and dist.n_missing == 4 and dist.n_rows == 44
    # Enough small values together form an "(other)" bar of at least k_min people.
    values = pd.Series(["A"] * 20 + ["C"] * 6 + ["D"] * 5)
    dist = summary.attribute_distribution(values, "group", "categorical", k_min=10)
    assert dict(zip(dist.table["value"], dist.table["count"])) == {"A": 20, summary.OTHER_LABEL: 11}
    assert dist.n_suppressed == 0
    assert dist.table["share"].sum() == pytest.approx(1.0)


def test_categorical_distribution_keeps_the_top_values():
    values = pd.Series([f"v{i}" for i in range(30) for _ in range(i + 1)])
    dist = summary.attribute_distribution(values, "many", "categorical", top=5)
    assert len(dist.table) == 6
    assert dist.table["value"].tolist()[:5] == ["v29", "v28", "v27", "v26", "v25"]
    assert dist.table["value"].iloc[-1] == summary.OTHER_LABEL
    assert dist.table["count"].sum() == len(values)


def test_multilabel_distribution_counts_rows_per_label():
    values = pd.Series(["a|b", "a", "a|a", "", None, "b| c"])
    dist = summary.attribute_distribution(values, "tags", "multilabel")
    assert dict(zip(dist.table["value"], dist.table["count"])) == {"a": 3, "b": 2, "c": 1}
    assert dist.n_missing == 2


def test_age_histogram_uses_five_year_bins_and_hides_small_bins():
    ages = pd.Series([22] * 12 + [27] * 15 + [71] * 2 + [None])
    dist = summary.attribute_distribution(ages, "age", "age", k_min=10)
    assert dist.kind == "histogram"
    assert dist.table["label"].iloc[0] == "20-24"
    assert (np.diff(dist.table["low"]) == 5).all()
    by_label = dict(zip(dist.table["label"], dist.table["count"]))
    assert by_label["20-24"] == 12 and by_label["25-29"] == 15 and by_label["70-74"] == 0
    assert dist.n_suppressed == 2 and dist.n_missing == 1


def test_numeric_histogram_is_log_spaced_for_heavy_tails():
    rng = np.random.default_rng(4)
    prices = pd.Series(np.exp(rng.normal(3, 1.5, 2000)))
    dist = summary.attribute_distribution(prices, "price", "numeric", n_bins=25)
    assert dist.log_scale and len(dist.table) == 25
    assert dist.table["count"].sum() == 2000


def test_text_and_identifier_columns_have_no_distribution():
    values = pd.Series(["a@x.org", "b@x.org"])
    assert summary.attribute_distribution(values, "email", "pii") is None
    assert summary.attribute_distribution(values, "title", "label") is None


def test_profile_distributions_never_show_personal_identifiers(tiny):
    distributions = summary.profile_distributions(tiny, k_min=1)
    assert [d.column for d in distributions] == ["region"]
    counts = dict(zip(distributions[0].table["value"], distributions[0].table["count"]))
    assert counts == {"north": 2, "south": 2}
    # With the default k_min no group of 2 people is shown.
    default = summary.profile_distributions(tiny)[0]
    assert default.table.empty and default.n_suppressed == 4


def test_item_feature_coverage(tiny):
    coverage = summary.item_feature_coverage(tiny).set_index("column")
    assert coverage.loc["category", "coverage"] == pytest.approx(3 / 4)
    assert coverage.loc["tags", "coverage"] == pytest.approx(3 / 4)
    assert coverage.loc["tags", "distinct_values"] == 2
    assert coverage.loc["category", "items_with_value"] == 3
    assert coverage["used_as_feature"].all()


def test_item_feature_coverage_without_item_table():
    dataset = Dataset.from_frames(pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]}))
    assert summary.item_feature_coverage(dataset).empty


def test_column_roles_table_hides_examples_of_personal_data(tiny):
    table = summary.column_roles_table(tiny).set_index(["table", "column"])
    assert table.loc[("profile", "email"), "role"] == "pii"
    assert "@" not in table.loc[("profile", "email"), "examples"]
    assert not table.loc[("profile", "email"), "used_as_feature"]
    assert table.loc[("profile", "region"), "examples"] == "north, south"
    assert table.loc[("item", "category"), "missing_share"] == pytest.approx(1 / 4)


def test_problems_table():
    problems = [Problem("bad rating", file="a.csv", column="rating", rows=(3, 7), fix="Use numbers.",
                        severity="warning", n_rows=120),
                Problem("no user id column")]
    table = summary.problems_table(problems)
    assert table.loc[0, "rows"] == "lines 3 and 7 (of 120)"
    assert table.loc[0, "severity"] == "warning" and table.loc[0, "fix"] == "Use numbers."
    assert table.loc[1, "file"] == "" and table.loc[1, "severity"] == "error"
