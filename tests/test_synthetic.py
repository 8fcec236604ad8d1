"""Tests for recommender.synthetic: shape of the data, determinism, planted pattern, CLI."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recommender import synthetic
from recommender.synthetic import SyntheticData, generate, main, write_sample

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "sample_data"
AGE_BAND_EDGES = [25, 35, 45, 55, 65]


@pytest.fixture(scope="module")
def default_data() -> SyntheticData:
    return generate()


def small(**overrides) -> SyntheticData:
    arguments = dict(n_users=800, n_items=300, n_interactions=8000, seed=7)
    arguments.update(overrides)
    return generate(**arguments)


def user_rows(data: SyntheticData) -> np.ndarray:
    """Row of ``data.users`` for each interaction."""
    return pd.Index(data.users["user_id"]).get_indexer(data.interactions["user_id"])


def interaction_categories(data: SyntheticData) -> np.ndarray:
    return data.items.set_index("item_id")["category"].reindex(data.interactions["item_id"]).to_numpy()


def share_in_preferred_categories(data: SyntheticData, segment_of_user: np.ndarray) -> float:
    """Share of interactions whose category is preferred by the given segment of their user."""
    preferred = data.truth["segment_categories"]
    segment = segment_of_user[user_rows(data)]
    category = interaction_categories(data)
    hits = [c in preferred[s] for c, s in zip(category, segment)]
    return float(np.mean(hits))


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_identical_data():
    first, second = small(), small()
    pd.testing.assert_frame_equal(first.interactions, second.interactions)
    pd.testing.assert_frame_equal(first.users, second.users)
    pd.testing.assert_frame_equal(first.items, second.items)
    np.testing.assert_array_equal(first.truth["user_segment"], second.truth["user_segment"])
    assert first.truth["segment_categories"] == second.truth["segment_categories"]


def test_different_seed_gives_different_data():
    first, other = small(seed=7), small(seed=8)
    assert not first.interactions.equals(other.interactions)
    assert not first.users.equals(other.users)
    assert not first.items["title"].equals(other.items["title"])


def test_users_and_items_do_not_depend_on_the_number_of_interactions():
    few, many = small(n_interactions=500), small(n_interactions=8000)
    pd.testing.assert_frame_equal(few.users, many.users)
    pd.testing.assert_frame_equal(few.items, many.items)


def test_global_random_state_is_untouched():
    np.random.seed(123)
    random.seed(123)
    numpy_state, python_state = np.random.get_state()[1].copy(), random.getstate()
    small(n_interactions=1000)
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)
    assert random.getstate() == python_state


# ---------------------------------------------------------------- shape of the data


def test_columns_and_dtypes(default_data):
    interactions, users, items = default_data.interactions, default_data.users, default_data.items
    assert list(interactions.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert list(users.columns) == ["user_id", "age", "gender", "region", "occupation", "income_band",
                                   "signup_channel"]
    assert list(items.columns) == ["item_id", "title", "category", "brand", "price_band", "price", "tags"]
    assert (len(interactions), len(users), len(items)) == (60000, 3000, 1000)
    for frame, text_columns in ((interactions, ["user_id", "item_id", "timestamp"]),
                                (users, ["user_id", "gender", "region", "occupation", "income_band",
                                         "signup_channel"]),
                                (items, ["item_id", "title", "category", "brand", "price_band", "tags"])):
        for column in text_columns:
            assert pd.api.types.is_string_dtype(frame[column]), column
            assert frame[column].notna().all(), column
    assert interactions["rating"].dtype == np.float64
    assert users["age"].dtype == np.int64
    assert items["price"].dtype == np.float64


def test_value_ranges(default_data):
    interactions, users, items = default_data.interactions, default_data.users, default_data.items
    assert set(interactions["rating"].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert users["age"].between(16, 75).all()
    assert users["age"].median() < 40  # skewed towards younger shoppers
    assert set(users["gender"]) == {"F", "M", "X"}
    assert set(users["region"]) == set(synthetic.REGIONS)
    assert set(users["occupation"]) == set(synthetic.OCCUPATIONS)
    assert set(users["income_band"]) == {"low", "mid", "high"}
    assert set(users["signup_channel"]) == {"web", "app", "store", "referral"}
    assert set(items["category"]) == set(synthetic.CATEGORY_NAMES)
    assert set(items["price_band"]) == {"budget", "mid", "premium"}
    assert (items["price"] > 0).all()
    assert items["title"].is_unique
    tag_lists = items["tags"].str.split("|")
    assert tag_lists.map(len).between(1, 3).all()
    assert tag_lists.map(lambda tags: len(set(tags)) == len(tags)).all()
    # Premium items cost more than budget items of the same category.
    median = items.groupby(["category", "price_band"])["price"].median().unstack()
    assert (median["premium"] > median["budget"]).all()


def test_timestamps_are_iso_strings_inside_the_period(default_data):
    stamps = default_data.interactions["timestamp"]
    assert stamps.str.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}").all()
    moments = pd.to_datetime(stamps, format="%Y-%m-%dT%H:%M:%S")
    assert moments.min() >= pd.Timestamp("2024-01-01")
    assert moments.max() < pd.Timestamp("2024-01-01") + pd.Timedelta(days=365)
    assert moments.is_monotonic_increasing
    assert moments.dt.month.nunique() == 12


def test_ids_are_zero_padded_strings(default_data):
    users, items = default_data.users, default_data.items
    assert users["user_id"].str.fullmatch(r"U\d{5}").all()
    assert items["item_id"].str.fullmatch(r"P\d{4}").all()
    assert users["user_id"].iloc[0] == "U00001" and items["item_id"].iloc[0] == "P0001"
    assert users["user_id"].is_unique and items["item_id"].is_unique
    wide = generate(n_users=100_000, n_items=10_000, n_interactions=0)
    assert wide.users["user_id"].iloc[[0, -1]].tolist() == ["U000001", "U100000"]
    assert wide.items["item_id"].iloc[[0, -1]].tolist() == ["P00001", "P10000"]


def test_pairs_are_unique_and_reference_existing_rows(default_data):
    interactions = default_data.interactions
    assert not interactions.duplicated(["user_id", "item_id"]).any()
    assert pd.Index(interactions["user_id"].unique()).isin(default_data.users["user_id"]).all()
    assert pd.Index(interactions["item_id"].unique()).isin(default_data.items["item_id"]).all()


def test_exact_count_and_unique_pairs_across_several_chunks():
    data = generate(n_users=20_000, n_items=2_000, n_interactions=150_000, seed=3)
    assert len(data.interactions) == 150_000
    assert not data.interactions.duplicated(["user_id", "item_id"]).any()
    counts = data.interactions["user_id"].value_counts()
    assert counts.max() <= 2_000 // 4


def test_cold_users_and_items_exist(default_data):
    interactions = default_data.interactions
    # .unique() first: Series.isin against 60,000 arrow strings is slow in pandas 3.
    cold_users = ~default_data.users["user_id"].isin(interactions["user_id"].unique())
    cold_items = ~default_data.items["item_id"].isin(interactions["item_id"].unique())
    assert 30 <= cold_users.sum() <= 300
    assert 10 <= cold_items.sum() <= 100
    np.testing.assert_array_equal(default_data.truth["user_activity"] == 0, cold_users.to_numpy())


def test_long_tails(default_data):
    item_counts = default_data.interactions["item_id"].value_counts()
    top_decile = item_counts.iloc[: len(default_data.items) // 10].sum()
    assert top_decile / len(default_data.interactions) > 0.40
    user_counts = default_data.interactions["user_id"].value_counts()
    assert (user_counts <= 3).mean() > 0.10
    assert user_counts.max() >= 100


# ---------------------------------------------------------------- planted pattern


def test_profile_strength_controls_how_much_the_profile_says_about_taste():
    strong = generate(n_users=3000, n_items=500, n_interactions=30000, profile_strength=1.0, seed=11)
    none = generate(n_users=3000, n_items=500, n_interactions=30000, profile_strength=0.0, seed=11)
    # Taste always follows the actual segment ...
    assert share_in_preferred_categories(strong, strong.truth["user_segment"]) > 0.5
    assert share_in_preferred_categories(none, none.truth["user_segment"]) > 0.5
    # ... but only with strength 1 does the segment the profile points to predict taste.
    from_profile_strong = share_in_preferred_categories(strong, strong.truth["profile_segment"])
    from_profile_none = share_in_preferred_categories(none, none.truth["profile_segment"])
    assert from_profile_strong > 0.5
    assert from_profile_none < 0.3
    assert from_profile_strong - from_profile_none > 0.25


@pytest.mark.parametrize("strength", [0.0, 0.6, 1.0])
def test_profile_strength_is_the_share_of_users_in_their_profile_segment(strength):
    data = generate(n_users=20_000, n_items=50, n_interactions=0, profile_strength=strength, n_segments=5)
    agreement = np.mean(data.truth["user_segment"] == data.truth["profile_segment"])
    assert agreement == pytest.approx(strength + (1 - strength) / 5, abs=0.02)
    sizes = np.bincount(data.truth["user_segment"], minlength=5) / 20_000
    assert sizes.min() > 0.1  # no segment is starved


def held_out_accuracy_of_profile_majority(data: SyntheticData) -> float:
    """Predict a user's segment by the majority segment of their (age band, region, occupation)."""
    users = data.users
    cell = (np.searchsorted(AGE_BAND_EDGES, users["age"], side="right").astype(str)
            + "|" + users["region"].to_numpy(dtype=object) + "|" + users["occupation"].to_numpy(dtype=object))
    segment = data.truth["user_segment"]
    half = len(users) // 2
    train = pd.DataFrame({"cell": cell[:half], "segment": segment[:half]})
    majority = train.groupby("cell")["segment"].agg(lambda s: s.value_counts().idxmax())
    predicted = pd.Series(cell[half:]).map(majority).fillna(-1).to_numpy()
    return float(np.mean(predicted == segment[half:]))


def test_segment_is_predictable_from_the_profile_only_when_strength_is_high():
    n_segments = 6
    none = generate(n_users=20_000, n_items=50, n_interactions=0, profile_strength=0.0, seed=5)
    strong = generate(n_users=20_000, n_items=50, n_interactions=0, profile_strength=1.0, seed=5)
    assert held_out_accuracy_of_profile_majority(none) < 1 / n_segments + 0.05
    assert held_out_accuracy_of_profile_majority(strong) > 0.6


def test_ratings_are_higher_when_the_item_matches_the_segment(default_data):
    preferred = default_data.truth["segment_categories"]
    segment = default_data.truth["user_segment"][user_rows(default_data)]
    matches = np.array([c in preferred[s] for c, s in zip(interaction_categories(default_data), segment)])
    ratings = default_data.interactions["rating"].to_numpy()
    assert ratings[matches].mean() - ratings[~matches].mean() > 0.2


def test_truth_describes_segments(default_data):
    truth = default_data.truth
    assert len(truth["segment_names"]) == len(truth["segment_categories"]) == 6
    assert len(set(truth["segment_names"])) == 6
    assert all(len(categories) == 2 and set(categories) <= set(synthetic.CATEGORY_NAMES)
               for categories in truth["segment_categories"])
    assert truth["user_segment"].shape == (3000,)
    assert truth["profile_strength"] == 0.6


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("arguments, message", [
    (dict(profile_strength=1.5), "profile_strength must be between 0 and 1"),
    (dict(n_users=0), "n_users must be at least 1"),
    (dict(n_items=0), "n_items must be at least 1"),
    (dict(n_interactions=-1), "n_interactions must be 0 or more"),
    (dict(n_segments=0), "n_segments must be at least 1"),
    (dict(days=0), "days must be at least 1"),
    (dict(start="first of May"), "start must be an ISO date"),
    (dict(n_users=10, n_items=100, n_interactions=10_000), "too dense"),
])
def test_invalid_arguments_are_rejected_with_a_clear_message(arguments, message):
    with pytest.raises(ValueError, match=message):
        generate(**arguments)


# ---------------------------------------------------------------- files and CLI


def test_committed_sample_is_reproduced_by_the_regeneration_command(tmp_path):
    written = write_sample(tmp_path)  # what `python -m recommender.synthetic --out DIR` writes
    assert [path.name for path in written] == ["interactions.csv", "users.csv", "items.csv"]
    for path in written:
        committed = SAMPLE_DIR / path.name
        assert committed.read_bytes() == path.read_bytes(), (
            f"{committed} differs from what generate() produces now; if the change is intended, "
            "run `python -m recommender.synthetic --out sample_data` and commit the result."
        )


def test_committed_sample_loads_with_the_documented_columns():
    sizes = {"interactions.csv": 60000, "users.csv": 3000, "items.csv": 1000}
    total_bytes = 0
    for name, rows in sizes.items():
        path = SAMPLE_DIR / name
        total_bytes += path.stat().st_size
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert len(frame) == rows
    assert total_bytes < 5_000_000
    readme = (SAMPLE_DIR / "README.md").read_text(encoding="utf-8")
    assert "python -m recommender.synthetic --out sample_data" in readme


def test_cli_writes_the_three_files(tmp_path, capsys):
    out = tmp_path / "generated"
    status = main(["--out", str(out), "--users", "200", "--items", "80", "--interactions", "1500",
                   "--strength", "0.9", "--seed", "5"])
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["interactions.csv", "items.csv", "users.csv"]
    assert "interactions.csv" in capsys.readouterr().out
    expected = generate(n_users=200, n_items=80, n_interactions=1500, profile_strength=0.9, seed=5)
    interactions = pd.read_csv(out / "interactions.csv", dtype={"user_id": str, "item_id": str})
    users = pd.read_csv(out / "users.csv", dtype={"user_id": str})
    assert len(interactions) == 1500 and len(users) == 200
    assert interactions["user_id"].tolist() == expected.interactions["user_id"].tolist()
    assert interactions["rating"].tolist() == expected.interactions["rating"].tolist()


def test_cli_reports_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", "unused", "--strength", "2"])
    assert exit_info.value.code == 2
    assert "profile_strength must be between 0 and 1" in capsys.readouterr().err


def test_module_imports_only_numpy_pandas_and_the_standard_library():
    tree = ast.parse(Path(synthetic.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    third_party = imported - {"__future__", "argparse", "inspect", "logging", "math", "dataclasses",
                              "pathlib", "typing"}
    assert third_party == {"numpy", "pandas"}
