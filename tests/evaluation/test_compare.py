"""Evaluating and comparing models: the right users and items scored, breakdowns, summary, any model."""
import json

import numpy as np
import pandas as pd
import pytest

from recommender import Dataset, ModelFitError
from recommender.evaluation import (PROTOCOLS, compare_models, evaluate_model, make_split, metric_names,
                                    activity_band)
from recommender.models import REGISTRY, PopularityRecommender, Recommender

from . import make_dataset, make_frames


class LeastPopular(Recommender):
    """A deliberately terrible model: the least popular items first."""

    name = "least_popular"

    def _fit(self, dataset, callback):
        self._scores = -np.bincount(dataset.item_index, minlength=dataset.n_items).astype(np.float32)

    def score_users(self, user_index):
        return np.tile(self._scores, (len(user_index), 1))

    def score_new_users(self, static, behaviour, history):
        return np.tile(self._scores, (history.shape[0], 1))


class CategoryTaste(Recommender):
    """Popular items of the categories a user interacted with most (uses the planted pattern)."""

    name = "category_taste"

    def _fit(self, dataset, callback):
        counts = np.bincount(dataset.item_index, minlength=dataset.n_items).astype(np.float32)
        self._popularity = counts / max(counts.max(), 1)
        self._categories = dataset.item_categories
        self._matrix = dataset.matrix
        for epoch in range(2):
            if callback is not None:
                callback(epoch, {"loss": 1.0 / (epoch + 1)}, {})

    def _score(self, history):
        binary = (history > 0).astype(np.float32)
        taste = np.asarray((binary @ self._categories @ self._categories.T).todense(), dtype=np.float32)
        return taste + self._popularity

    def score_users(self, user_index):
        return self._score(self._matrix[user_index])

    def score_new_users(self, static, behaviour, history):
        return self._score(history)


class Failing(Recommender):
    name = "failing"

    def _fit(self, dataset, callback):
        raise ModelFitError("the loss became NaN; lower the learning rate")

    def score_users(self, user_index):
        raise AssertionError("never called")

    def score_new_users(self, static, behaviour, history):
        raise AssertionError("never called")


class ItemOrder(Recommender):
    """Scores every item by its position in the data (the first item best), or all alike (``ties``)."""

    name = "item_order"

    def __init__(self, ties: bool = False):
        self.ties = ties

    def _fit(self, dataset, callback):
        self._scores = (np.zeros(dataset.n_items) if self.ties else -np.arange(dataset.n_items)).astype(np.float32)

    def score_users(self, user_index):
        return np.tile(self._scores, (len(user_index), 1))

    def score_new_users(self, static, behaviour, history):
        return np.tile(self._scores, (history.shape[0], 1))


class Oracle(Recommender):
    """Knows the test items; puts training items (or every non-candidate) even higher."""

    name = "oracle"

    def __init__(self, split=None):
        self.split = split

    def _fit(self, dataset, callback):
        row = np.full(dataset.n_users, -1)
        row[self.split.test_users] = np.arange(self.split.n_test_users)
        self._row = row

    def score_users(self, user_index):
        test = self.split.test[self._row[user_index]].toarray()
        if self.split.candidate_items is not None:  # everything outside the candidates first
            other = np.ones(self.split.train.n_items, dtype=bool)
            other[self.split.candidate_items] = False
            return (test + 10.0 * other).astype(np.float32)
        return (test + 2.0 * self.dataset.matrix[user_index].toarray()).astype(np.float32)

    def score_new_users(self, static, behaviour, history):
        raise AssertionError("not used")


@pytest.fixture(scope="module")
def dataset():
    interactions, users, items = make_frames(n_users=150)
    users["email"] = [f"person{i}@example.com" for i in range(len(users))]  # a direct identifier
    return Dataset.from_frames(interactions, users, items)


@pytest.fixture(scope="module")
def warm(dataset):
    return make_split(dataset, "warm", seed=0)


def fitted(model, split):
    return model.fit(split.train)


# ---------------------------------------------------------------------- evaluate_model
def test_per_user_frame_has_one_row_per_test_user_and_every_metric(warm):
    evaluation = evaluate_model(fitted(PopularityRecommender(), warm), warm, k=5)
    frame = evaluation.per_user
    assert len(frame) == warm.n_test_users
    assert list(frame.columns) == ["user_index", "user_id", "n_history", "n_relevant", *metric_names(5)]
    assert np.array_equal(frame["user_index"], warm.test_users)
    assert frame["user_id"].tolist() == warm.dataset.user_ids[warm.test_users].tolist()
    assert frame["n_relevant"].sum() == warm.test.nnz
    for name in metric_names(5)[:6]:
        assert frame[name].between(0, 1).all()
        assert evaluation.aggregate[name] == pytest.approx(frame[name].mean())
    assert 0 < evaluation.aggregate["coverage"] <= 1 and 0 <= evaluation.aggregate["gini"] <= 1


def test_training_items_are_excluded_for_known_users(warm):
    # The oracle ranks training items above the test items: only exclusion makes it perfect.
    oracle = Oracle(warm).fit(warm.train)
    per_user = evaluate_model(oracle, warm, k=10).per_user
    small = per_user["n_relevant"] <= 10
    assert per_user.loc[small, "ndcg@10"].to_numpy() == pytest.approx(1.0)
    assert per_user.loc[small, "recall@10"].to_numpy() == pytest.approx(1.0)


def test_cold_items_are_ranked_among_held_out_items_only(dataset):
    split = make_split(dataset, "cold_item", seed=0, item_fraction=0.25)
    evaluation = evaluate_model(Oracle(split).fit(split.train), split, k=10)
    small = evaluation.per_user["n_relevant"] <= 10
    assert evaluation.per_user.loc[small, "ndcg@10"].to_numpy() == pytest.approx(1.0)
    # Coverage and Gini are over the candidate items.
    popularity = evaluate_model(fitted(PopularityRecommender(), split), split, k=10)
    assert popularity.aggregate["coverage"] == pytest.approx(10 / len(split.candidate_items))


def test_revealed_items_are_excluded_for_few_shot_users(dataset):
    class RevealedFirst(PopularityRecommender):
        def score_new_users(self, static, behaviour, history):
            return super().score_new_users(static, behaviour, history) + 5.0 * history.toarray()

    split = make_split(dataset, "few_shot", seed=0, n_revealed=3, user_fraction=0.3)
    plain = evaluate_model(fitted(PopularityRecommender(), split), split, k=5).per_user
    pushy = evaluate_model(fitted(RevealedFirst(), split), split, k=5).per_user
    assert pushy["ndcg@5"].to_numpy() == pytest.approx(plain["ndcg@5"].to_numpy())
    assert (plain["n_history"] == 3).all()


def test_batches_give_the_same_result(warm):
    model = fitted(CategoryTaste(), warm)
    whole = evaluate_model(model, warm, k=7).per_user
    batched = evaluate_model(model, warm, k=7, batch_size=9).per_user
    pd.testing.assert_frame_equal(whole, batched)


def test_k_larger_than_the_catalogue_is_clipped(warm):
    evaluation = evaluate_model(fitted(PopularityRecommender(), warm), warm, k=1000)
    assert evaluation.per_user["recall@1000"].to_numpy() == pytest.approx(1.0)
    assert evaluation.aggregate["coverage"] == pytest.approx(1.0)


def test_model_fitted_on_all_data_is_refused(dataset, warm):
    with pytest.raises(ValueError, match="leak"):
        evaluate_model(PopularityRecommender().fit(dataset), warm)
    with pytest.raises(RuntimeError, match="not fitted"):
        evaluate_model(PopularityRecommender(), warm)
    with pytest.raises(ValueError, match="k must be at least 1"):
        evaluate_model(fitted(PopularityRecommender(), warm), warm, k=0)


def test_nan_and_minus_infinity_scores_rank_last_as_empty_slots(warm):
    class Partial(PopularityRecommender):
        def score_users(self, user_index):
            scores = super().score_users(user_index).copy()
            scores[:, 3:] = np.nan  # only three items scorable
            scores[:, 2] = -np.inf
            return scores

    evaluation = evaluate_model(fitted(Partial(), warm), warm, k=5)
    assert evaluation.aggregate["coverage"] <= 2 / warm.train.n_items
    assert (evaluation.per_user["precision@5"] <= 2 / 5).all()


def test_wrong_score_shape_names_the_model(warm):
    class Broken(PopularityRecommender):
        def score_users(self, user_index):
            return np.zeros((len(user_index), 3), dtype=np.float32)

    with pytest.raises(ValueError, match="Broken returned scores of shape"):
        evaluate_model(fitted(Broken(), warm), warm)


# ---------------------------------------------------------------------- compare_models
@pytest.mark.parametrize("protocol", ["warm", "cold_user"])
def test_popularity_beats_a_terrible_model(dataset, protocol):
    result = compare_models(dataset, {"least": LeastPopular, "popularity": PopularityRecommender},
                            protocol=protocol, k=10, seed=0, user_fraction=0.3)
    assert result.models == ["popularity", "least"]
    assert result.table.loc["popularity", "ndcg@10"] > result.table.loc["least", "ndcg@10"]
    assert result.table.loc["popularity", "recall@10"] > result.table.loc["least", "recall@10"]
    assert result.table.loc["least", "novelty"] > result.table.loc["popularity", "novelty"]
    summary = result.summary()
    assert "no model beats the popularity baseline" in summary
    assert f"popularity {result.table.loc['popularity', 'ndcg@10']:.3f}" in summary
    assert set(result.fit_seconds) == {"least", "popularity"}


def test_summary_names_the_best_model_its_gain_and_for_whom(dataset):
    result = compare_models(dataset, {"popularity": "popularity", "taste": CategoryTaste}, protocol="warm",
                            k=10, seed=0, min_group_size=5)
    assert result.models[0] == "taste"
    table = result.table
    gain = (table.loc["taste", "ndcg@10"] - table.loc["popularity", "ndcg@10"]) / table.loc["popularity", "ndcg@10"]
    summary = result.summary()
    assert summary.count("taste has the best NDCG@10") == 1
    assert f"({table.loc['taste', 'ndcg@10']:.3f}, {gain:+.0%} over popularity)" in summary
    assert "It helps most for users with" in summary
    assert "catalogue" in summary
    low, high = result.paired_difference("taste", "popularity")[1:]
    assert ("larger than the variation" in summary) == (low > 0)
    # With display names, sentences that start with a model's name start with a capital.
    labelled = result.summary({"taste": "category taste", "popularity": "Popularity"}.__getitem__)
    assert "category taste has the best NDCG@10" in labelled and "over Popularity" in labelled
    assert "Category taste recommends" in labelled
    assert "taste" not in labelled.replace("category taste", "").replace("Category taste", "")   # labels only


def test_per_user_frame_joins_profile_and_activity_without_identifiers(dataset, warm):
    result = compare_models(dataset, {"a": PopularityRecommender, "b": LeastPopular}, split=warm)
    frame = result.per_user
    assert len(frame) == 2 * warm.n_test_users
    assert {"model", "user_id", "ndcg@10", "age", "gender", "region", "activity"} <= set(frame.columns)
    assert "email" not in frame.columns and "email" not in result.attributes
    assert result.attributes[0] == "activity"
    # Activity band from the user's training interactions; ages as bands.
    train_counts = np.bincount(warm.train.user_index, minlength=dataset.n_users)
    expected = activity_band(train_counts[frame["user_index"].to_numpy()])
    assert frame["activity"].astype(str).tolist() == list(expected.astype(str))
    assert set(frame["age"].astype(str)) <= {"18-24", "25-34", "35-44", "45-54", "55-64", "65+"}
    row = frame[(frame.model == "a")].iloc[0]
    assert row["gender"] == dataset.users.loc[row["user_index"], "gender"]


def test_breakdown_shape_group_sizes_and_suppression(dataset, warm):
    result = compare_models(dataset, {"popularity": PopularityRecommender, "least": LeastPopular}, split=warm)
    table = result.breakdown("gender", min_group_size=1)
    assert list(table.columns) == ["popularity", "least", "n_users"]
    assert set(table.index) == {"F", "M"}
    assert table["n_users"].sum() == warm.n_test_users
    women = result.per_user[(result.per_user.model == "least") & (result.per_user.gender == "F")]
    assert table.loc["F", "least"] == pytest.approx(women["ndcg@10"].mean())
    activity = result.breakdown("activity", "recall@10", min_group_size=1)
    assert list(activity.index) == ["1-4", "5-19", "20+"]  # band order, not size order
    assert activity.attrs["metric"] == "recall@10"
    hidden = result.breakdown("region", min_group_size=10_000)
    assert len(hidden) == 0 and hidden.attrs["suppressed_groups"] == 3
    with pytest.raises(KeyError, match="choose one of"):
        result.breakdown("email")
    with pytest.raises(KeyError, match="no per-user metric"):
        result.breakdown("gender", "accuracy")


def test_numeric_attributes_become_ordered_quartiles_and_no_profile_still_works():
    interactions, users, items = make_frames(n_users=150)
    users["income"] = np.random.default_rng(0).normal(50_000, 10_000, len(users)).round(2)
    with_income = Dataset.from_frames(interactions, users, items)
    assert with_income.user_roles["income"] == "numeric"
    result = compare_models(with_income, {"popularity": PopularityRecommender}, protocol="warm")
    table = result.breakdown("income", min_group_size=1)
    assert len(table) == 4
    lows = [float(label.split(",")[0].strip("([")) for label in table.index]
    assert lows == sorted(lows)
    bare = compare_models(Dataset.from_frames(interactions), {"popularity": PopularityRecommender,
                                                               "least": LeastPopular}, protocol="cold_user")
    assert bare.attributes == ["activity"]
    assert "popularity" in bare.summary()


def test_failed_model_is_reported_and_the_others_still_compared(dataset, warm):
    result = compare_models(dataset, {"broken": Failing, "popularity": PopularityRecommender}, split=warm)
    assert result.models == ["popularity"]
    assert "learning rate" in result.errors["broken"]
    assert "Training failed for: broken" in result.summary()
    everything_failed = compare_models(dataset, {"broken": Failing}, split=warm)
    assert everything_failed.table.empty
    assert everything_failed.summary().startswith("No model could be evaluated")


def test_progress_callback_reaches_the_last_step(dataset, warm):
    calls = []
    compare_models(dataset, {"taste": CategoryTaste, "popularity": "popularity"}, protocol="warm",
                   callback=lambda message, step, total: calls.append((message, step, total)))
    steps = [step for _, step, _ in calls]
    assert steps == sorted(steps) and calls[-1][1] == calls[-1][2] == 5
    assert any("epoch 1" in message for message, _, _ in calls)


def test_result_serialises_to_strict_json(dataset, warm):
    result = compare_models(dataset, {"popularity": PopularityRecommender}, split=warm)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["protocol"] == "warm" and data["n_test_users"] == warm.n_test_users
    assert set(data["table"]["popularity"]) == {*metric_names(10), "coverage", "gini"}


def test_factories_must_make_recommenders(dataset, warm):
    with pytest.raises(TypeError, match="not a Recommender"):
        compare_models(dataset, {"x": lambda: object()}, split=warm)
    with pytest.raises(KeyError, match="unknown model"):
        compare_models(dataset, {"x": "no_such_model"}, split=warm)
    with pytest.raises(ValueError, match="no models"):
        compare_models(dataset, {}, split=warm)


# ---------------------------------------------------------------------- every registered model
@pytest.fixture(scope="module")
def small():
    return make_dataset(n_users=60, n_items=30, seed=4)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_model_runs_every_protocol(small, name, protocol):
    result = compare_models(small, {name: name}, protocol=protocol, k=5, seed=0, user_fraction=0.3)
    assert name in result.table.index or name in result.errors
    if name in result.table.index:
        row = result.table.loc[name]
        for metric in metric_names(5)[:6]:
            assert 0 <= row[metric] <= 1
        assert len(result.per_user) == result.split.n_test_users


@pytest.mark.parametrize("protocol", ["warm", "cold_item"])
def test_ties_are_broken_in_a_random_order_not_by_position_in_the_data(protocol):
    # Here the first items of the data are the popular ones (as in MovieLens, which numbers its
    # older, better-known films first). A model that scores every item alike knows nothing and
    # must not be credited with the data's order: ties go in a random order fixed by the split.
    rng = np.random.default_rng(0)
    n_users, n_items = 400, 200
    weights = 1.0 / np.arange(1, n_items + 1)
    rows = [(f"u{user}", f"i{item:03d}") for user in range(n_users)
            for item in rng.choice(n_items, size=10, replace=False, p=weights / weights.sum())]
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id"])
    items = pd.DataFrame({"item_id": [f"i{item:03d}" for item in range(n_items)],
                          "genre": rng.choice(["a", "b", "c"], size=n_items)})
    dataset = Dataset.from_frames(interactions, items=items)
    assert list(dataset.item_ids[:3]) == ["i000", "i001", "i002"]           # data order = popularity order
    split = make_split(dataset, protocol, seed=0)
    by_position = evaluate_model(ItemOrder().fit(split.train), split).aggregate["ndcg@10"]
    alike = evaluate_model(ItemOrder(ties=True).fit(split.train), split)
    assert alike.aggregate["ndcg@10"] < 0.5 * by_position                    # 0.06x and 0.23x here
    again = evaluate_model(ItemOrder(ties=True).fit(split.train), split)
    pd.testing.assert_frame_equal(alike.per_user, again.per_user)             # the same order every time
