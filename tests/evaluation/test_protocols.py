"""Splitting protocols: no leakage, the right users and items held out, seeded, clear errors."""
import numpy as np
import pandas as pd
import pytest

from recommender import Dataset, DataError
from recommender.evaluation import PROTOCOLS, make_split, relevance_threshold

from . import make_dataset, make_frames


@pytest.fixture(scope="module")
def dataset():
    return make_dataset()


@pytest.fixture(scope="module")
def implicit_dataset():
    return make_dataset(ratings=False, timestamps=False)


def pair_keys(dataset, user_index, item_index):
    return user_index.astype(np.int64) * dataset.n_items + item_index


def held_out_mask(split):
    """Interactions of the full data that are not in the training data."""
    full, train = split.dataset, split.train
    return ~np.isin(pair_keys(full, full.user_index, full.item_index),
                    pair_keys(full, train.user_index, train.item_index))


def test_protocol_names():
    assert PROTOCOLS == ("warm", "temporal", "cold_user", "few_shot", "cold_item")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_test_interaction_is_in_training(dataset, protocol):
    split = make_split(dataset, protocol, seed=1)
    assert split.kind == protocol
    test = split.test.tocoo()
    test_keys = pair_keys(dataset, split.test_users[test.row], test.col)
    train_keys = pair_keys(dataset, split.train.user_index, split.train.item_index)
    assert not np.isin(test_keys, train_keys).any()
    # Every test pair is a real interaction, and the train set is a subset of the data.
    full_keys = pair_keys(dataset, dataset.user_index, dataset.item_index)
    assert np.isin(test_keys, full_keys).all()
    assert np.isin(train_keys, full_keys).all()
    assert 0 < split.train.n_interactions < dataset.n_interactions
    # Same id maps and encoders: models fitted on train score the full catalogue.
    assert split.train.user_ids is dataset.user_ids and split.train.item_ids is dataset.item_ids
    assert split.train.profile_encoder is dataset.profile_encoder
    assert split.test.shape == (split.n_test_users, dataset.n_items)
    assert split.test_users.dtype == np.int32
    assert np.all(np.diff(split.test_users) > 0)
    assert np.all(np.diff(split.test.indptr) > 0)  # nobody is evaluated without a relevant item


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_same_seed_same_split_other_seed_other_split(dataset, protocol):
    first, again, other = (make_split(dataset, protocol, seed=s) for s in (3, 3, 4))
    assert np.array_equal(first.test_users, again.test_users)
    assert (first.test != again.test).nnz == 0
    assert np.array_equal(first.train.item_index, again.train.item_index)
    if protocol != "temporal":  # with distinct timestamps the latest interactions leave no choice
        assert not (np.array_equal(first.test_users, other.test_users) and (first.test != other.test).nnz == 0)


def test_warm_holds_out_about_the_fraction_and_keeps_some_training(dataset):
    split = make_split(dataset, "warm", seed=0, test_fraction=0.25, min_interactions=4, relevance=None)
    held = held_out_mask(split)
    counts = np.bincount(dataset.user_index, minlength=dataset.n_users)
    held_per_user = np.bincount(dataset.user_index[held], minlength=dataset.n_users)
    eligible = counts >= 4
    assert np.all(held_per_user[~eligible] == 0)
    expected = np.clip(np.floor(0.25 * counts[eligible] + 0.5), 1, counts[eligible] - 1)
    assert np.array_equal(held_per_user[eligible], expected)
    train_counts = np.bincount(split.train.user_index, minlength=dataset.n_users)
    assert np.all(train_counts[split.test_users] >= 1)
    assert split.revealed is None and split.candidate_items is None and not split.new_users


def test_temporal_test_items_are_later_than_training_items(dataset):
    split = make_split(dataset, "temporal", seed=0, relevance=None)
    held = held_out_mask(split)
    n = dataset.n_users
    latest_train = np.full(n, -np.inf)
    np.maximum.at(latest_train, dataset.user_index[~held], dataset.timestamps[~held])
    earliest_test = np.full(n, np.inf)
    np.minimum.at(earliest_test, dataset.user_index[held], dataset.timestamps[held])
    tested = split.test_users
    assert len(tested) > 10
    assert np.all(earliest_test[tested] >= latest_train[tested])


def test_temporal_without_timestamps_is_a_data_error(implicit_dataset):
    with pytest.raises(DataError, match="needs a timestamp"):
        make_split(implicit_dataset, "temporal")


def test_cold_users_have_no_training_interactions(dataset):
    split = make_split(dataset, "cold_user", seed=0, user_fraction=0.2)
    train_counts = np.bincount(split.train.user_index, minlength=dataset.n_users)
    assert np.all(train_counts[split.test_users] == 0)
    assert split.new_users and split.revealed.nnz == 0
    assert split.revealed.shape == split.test.shape
    assert abs(split.n_test_users - 0.2 * dataset.n_users) <= 3
    # Everything else stays: only the cold users' interactions were removed.
    held = held_out_mask(split)
    assert np.array_equal(np.unique(dataset.user_index[held]), split.test_users)


def test_few_shot_reveals_the_first_interactions_only(dataset):
    split = make_split(dataset, "few_shot", seed=0, n_revealed=2, user_fraction=0.2)
    revealed_counts = np.diff(split.revealed.indptr)
    assert np.all(revealed_counts == 2)
    train_counts = np.bincount(split.train.user_index, minlength=dataset.n_users)
    assert np.all(train_counts[split.test_users] == 0)
    assert (split.revealed.multiply(split.test)).nnz == 0  # revealed items are not test items
    frame = pd.DataFrame({"user": dataset.user_index, "item": dataset.item_index, "time": dataset.timestamps})
    for row, user in enumerate(split.test_users[:15]):
        first_two = frame[frame.user == user].sort_values("time").item.to_numpy()[:2]
        assert set(split.revealed[row].indices) == set(first_two)
    assert np.array_equal(split.history_counts(), revealed_counts)


def test_few_shot_without_timestamps_reveals_a_seeded_random_subset(implicit_dataset):
    first = make_split(implicit_dataset, "few_shot", seed=5, n_revealed=3)
    again = make_split(implicit_dataset, "few_shot", seed=5, n_revealed=3)
    assert np.all(np.diff(first.revealed.indptr) == 3)
    assert (first.revealed != again.revealed).nnz == 0


def test_new_user_inputs_match_encode_new_users(dataset):
    split = make_split(dataset, "few_shot", seed=2, n_revealed=3)
    static, behaviour, history = split.new_user_inputs()
    users = split.test_users
    profiles = dataset.users.iloc[users].reset_index(drop=True)
    profiles.insert(0, "user_id", dataset.user_ids[users])
    histories = {dataset.user_ids[u]: dataset.item_ids[split.revealed[row].indices]
                 for row, u in enumerate(users)}
    expected_static, expected_behaviour, expected_history = split.train.encode_new_users(profiles, histories)
    assert np.allclose(static, expected_static)
    assert np.allclose(behaviour, expected_behaviour, atol=1e-5)
    assert (history != expected_history).nnz == 0
    part = split.new_user_inputs(slice(2, 5))
    assert np.allclose(part[1], behaviour[2:5]) and part[2].shape[0] == 3


def test_new_user_inputs_refuse_known_users(dataset):
    with pytest.raises(ValueError, match="score_users"):
        make_split(dataset, "warm").new_user_inputs()


def test_cold_items_have_no_training_interactions_and_are_the_only_test_items(dataset):
    split = make_split(dataset, "cold_item", seed=0, item_fraction=0.2)
    cold = split.candidate_items
    assert cold.dtype == np.int32 and len(cold) == round(0.2 * dataset.n_items)
    assert not np.isin(split.train.item_index, cold).any()
    assert np.isin(split.test.indices, cold).all()
    held = held_out_mask(split)
    assert np.array_equal(np.unique(dataset.item_index[held]), cold)
    assert not split.new_users


def test_explicit_ratings_count_as_relevant_from_seventy_percent_of_max(dataset):
    assert relevance_threshold(dataset) == pytest.approx(3.5)
    split = make_split(dataset, "warm", seed=0)
    test = split.test.tocoo()
    rating = pd.Series(dataset.weights, index=pair_keys(dataset, dataset.user_index, dataset.item_index))
    ratings = rating.loc[pair_keys(dataset, split.test_users[test.row], test.col)].to_numpy()
    assert ratings.min() >= 4
    # Low ratings were held out too (removed from training) but are not test items.
    held = held_out_mask(split)
    assert (dataset.weights[held] < 4).any()
    everything = make_split(dataset, "warm", seed=0, relevance=None)
    assert everything.relevance_threshold is None and everything.test.nnz == held.sum()
    assert make_split(dataset, "warm", seed=0, relevance=5).test.nnz < split.test.nnz


def test_implicit_data_and_counts_make_every_interaction_relevant(implicit_dataset):
    assert relevance_threshold(implicit_dataset) is None
    interactions, users, items = make_frames()
    interactions["rating"] = interactions["rating"] * 20  # play counts, not stars
    assert relevance_threshold(Dataset.from_frames(interactions, users, items)) is None
    with pytest.raises(ValueError, match="relevance threshold"):
        relevance_threshold(implicit_dataset, "high")


def test_nobody_to_evaluate_is_a_data_error(dataset):
    with pytest.raises(DataError, match="found no user to evaluate"):
        make_split(dataset, "warm", min_interactions=1000)
    with pytest.raises(DataError, match="lower the relevance threshold"):
        make_split(dataset, "cold_user", relevance=6)
    with pytest.raises(DataError, match="beyond the first 100"):
        make_split(dataset, "few_shot", n_revealed=100)


def test_tiny_data_gives_a_message_not_a_crash():
    data = Dataset.from_frames(pd.DataFrame({"user_id": ["a"], "item_id": ["x"]}))
    for protocol in ("warm", "cold_user", "cold_item"):
        with pytest.raises(DataError):
            make_split(data, protocol)


@pytest.mark.parametrize("options, message", [
    ({"test_fraction": 0}, "test_fraction must be between 0 and 1"),
    ({"test_fraction": 1.5}, "test_fraction must be between 0 and 1"),
])
def test_bad_options_are_rejected(dataset, options, message):
    with pytest.raises(ValueError, match=message):
        make_split(dataset, "warm", **options)


def test_unknown_protocol_lists_the_valid_ones(dataset):
    with pytest.raises(ValueError, match="choose one of warm, temporal"):
        make_split(dataset, "loo")
    with pytest.raises(ValueError, match="n_revealed must be 0 or more"):
        make_split(dataset, "few_shot", n_revealed=-1)


def test_options_of_other_protocols_are_ignored_but_unknown_ones_rejected(dataset):
    plain = make_split(dataset, "warm", seed=0)
    with_extra = make_split(dataset, "warm", seed=0, user_fraction=0.5, n_revealed=2)
    assert (plain.test != with_extra.test).nnz == 0
    with pytest.raises(ValueError, match="unknown protocol option.*test_fractoin"):
        make_split(dataset, "warm", test_fractoin=0.5)


def test_description_states_the_parameters(dataset):
    assert "25%" in make_split(dataset, "warm", test_fraction=0.25).description
    assert "first 2 interactions" in make_split(dataset, "few_shot", n_revealed=2).description
    assert "profile only" in make_split(dataset, "cold_user").description
    assert "8 held-out items" in make_split(dataset, "cold_item").description
