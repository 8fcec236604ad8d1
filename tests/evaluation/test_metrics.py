"""Ranking and beyond-accuracy metrics: hand-computed cases, sklearn cross-check, edge cases, properties."""
import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import ndcg_score

from recommender.evaluation import metrics as M


def relevant(rows, n_items):
    """CSR from a list of relevant-item lists."""
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.concatenate([np.asarray(r, dtype=np.int32) for r in rows]) if indptr[-1] else np.zeros(0, np.int32)
    return sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(rows), n_items))


# ---------------------------------------------------------------------- hand-computed
def test_every_ranking_metric_on_a_hand_computed_list():
    top = np.array([[0, 1, 2]])
    rel = relevant([[1, 3]], 5)  # one hit at rank 2, two relevant items
    assert M.hits(top, rel).tolist() == [[False, True, False]]
    assert M.precision_at_k(top, rel)[0] == pytest.approx(1 / 3)
    assert M.recall_at_k(top, rel)[0] == pytest.approx(1 / 2)
    ideal = 1 + 1 / math.log2(3)
    assert M.ndcg_at_k(top, rel)[0] == pytest.approx((1 / math.log2(3)) / ideal)
    assert M.average_precision_at_k(top, rel)[0] == pytest.approx((1 / 2) / 2)
    assert M.hit_rate_at_k(top, rel)[0] == 1.0
    assert M.reciprocal_rank_at_k(top, rel)[0] == pytest.approx(1 / 2)


def test_average_precision_with_two_hits():
    top = np.array([[4, 0, 3, 2]])
    rel = relevant([[4, 3, 1]], 6)  # hits at ranks 1 and 3; min(3, 4) = 3
    assert M.average_precision_at_k(top, rel)[0] == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert M.ndcg_at_k(top, rel)[0] == pytest.approx((1 + 1 / 2) / (1 + 1 / math.log2(3) + 1 / 2))


def test_no_hits_gives_zero_everywhere():
    top = np.array([[0, 1], [2, 3]])
    rel = relevant([[4], [5]], 6)
    for function in M.RANKING_METRICS.values():
        assert function(top, rel).tolist() == [0.0, 0.0]


def test_all_hits_gives_one_everywhere():
    top = np.array([[2, 0, 1]])
    rel = relevant([[0, 1, 2]], 4)
    for name, function in M.RANKING_METRICS.items():
        assert function(top, rel)[0] == pytest.approx(1.0), name


def test_more_relevant_items_than_k_caps_recall_but_not_ndcg():
    top = np.array([[0, 1]])
    rel = relevant([[0, 1, 2, 3]], 5)
    assert M.recall_at_k(top, rel)[0] == pytest.approx(0.5)
    assert M.ndcg_at_k(top, rel)[0] == pytest.approx(1.0)  # ideal list has min(|rel|, K) = 2 hits
    assert M.average_precision_at_k(top, rel)[0] == pytest.approx(1.0)


def test_single_relevant_item_at_rank_three():
    top = np.array([[5, 6, 7, 8]])
    rel = relevant([[7]], 10)
    assert M.ndcg_at_k(top, rel)[0] == pytest.approx(1 / math.log2(4))
    assert M.reciprocal_rank_at_k(top, rel)[0] == pytest.approx(1 / 3)
    assert M.average_precision_at_k(top, rel)[0] == pytest.approx(1 / 3)
    assert M.recall_at_k(top, rel)[0] == 1.0


def test_k_larger_than_catalogue_with_empty_slots():
    # 3 items in the catalogue, list of 5 slots: the last two are empty (-1) and count as misses.
    top = np.array([[2, 0, 1, -1, -1]])
    rel = relevant([[1]], 3)
    assert M.hits(top, rel).tolist() == [[False, False, True, False, False]]
    assert M.precision_at_k(top, rel)[0] == pytest.approx(1 / 5)
    assert M.recall_at_k(top, rel)[0] == 1.0
    assert M.ndcg_at_k(top, rel)[0] == pytest.approx(1 / math.log2(4))


def test_k_argument_uses_the_first_columns_only():
    top = np.array([[0, 1, 2, 3]])
    rel = relevant([[3]], 4)
    assert M.hit_rate_at_k(top, rel, k=3)[0] == 0.0
    assert M.hit_rate_at_k(top, rel, k=4)[0] == 1.0
    with pytest.raises(ValueError, match="k must be at least 1"):
        M.precision_at_k(top, rel, k=0)


def test_user_without_relevant_items_is_nan_where_undefined():
    top = np.array([[0, 1]])
    rel = relevant([[]], 3)
    assert np.isnan(M.recall_at_k(top, rel)[0])
    assert np.isnan(M.ndcg_at_k(top, rel)[0])
    assert np.isnan(M.average_precision_at_k(top, rel)[0])
    assert M.precision_at_k(top, rel)[0] == 0.0


def test_explicit_zeros_in_relevant_are_not_relevant():
    rel = sp.csr_matrix((np.array([0.0, 1.0], np.float32), np.array([0, 1]), np.array([0, 2])), shape=(1, 3))
    assert M.hits(np.array([[0, 1]]), rel).tolist() == [[False, True]]
    assert M.n_relevant(rel).tolist() == [1]


def test_rows_must_match():
    with pytest.raises(ValueError, match="rows"):
        M.hits(np.array([[0]]), relevant([[0], [1]], 2))


def test_ndcg_matches_sklearn_on_random_cases():
    rng = np.random.default_rng(7)
    for _ in range(30):
        n_items = int(rng.integers(5, 40))
        k = int(rng.integers(1, n_items + 3))
        truth = (rng.random(n_items) < rng.uniform(0.05, 0.5)).astype(float)
        if truth.sum() == 0:
            truth[rng.integers(n_items)] = 1.0
        scores = rng.random(n_items)  # continuous: no ties, so sklearn's tie handling plays no role
        top = np.argsort(-scores)[: min(k, n_items)][None, :]
        rel = sp.csr_matrix(truth[None, :])
        expected = ndcg_score(truth[None, :], scores[None, :], k=k)
        assert M.ndcg_at_k(top, rel)[0] == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------------- beyond accuracy
def test_gini_of_uniform_counts_is_zero_and_of_one_item_is_near_one():
    assert M.gini_index(np.full(10, 7)) == pytest.approx(0.0)
    assert M.gini_index(np.array([0, 0, 0, 5])) == pytest.approx(3 / 4)
    assert M.gini_index(np.array([0, 0, 1, 3])) == pytest.approx(10 / 16)
    assert M.gini_index(np.zeros(4)) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        M.gini_index(np.array([1.0, -1.0]))


def test_recommendation_counts_and_coverage_ignore_empty_slots():
    top = np.array([[0, 1, -1], [1, 2, -1]])
    assert M.recommendation_counts(top, 5).tolist() == [1, 2, 1, 0, 0]
    assert M.catalogue_coverage(top, 5) == pytest.approx(3 / 5)


def test_novelty_is_mean_self_information():
    share = np.array([0.5, 0.25, 1.0])
    assert M.novelty(np.array([[0, 1], [2, -1]]), share).tolist() == pytest.approx([1.5, 0.0])
    smoothed = M.popularity_share(np.array([9, 0]), n_users=9)
    assert smoothed.tolist() == pytest.approx([1.0, 0.1])
    with pytest.raises(ValueError, match="popularity shares"):
        M.novelty(np.array([[0]]), np.array([0.0]))


def test_mean_popularity_of_each_list():
    assert M.mean_popularity(np.array([[0, 2], [1, -1]]), np.array([1.0, 3.0, 5.0])).tolist() == [3.0, 3.0]


def test_intra_list_diversity_hand_cases():
    features = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    top = np.array([[0, 1, -1], [0, 2, -1], [0, 1, 2], [0, -1, -1], [3, 0, -1]])
    result = M.intra_list_diversity(top, features)
    assert result[:3].tolist() == pytest.approx([0.0, 1.0, 2 / 3])
    assert np.isnan(result[3])  # a single item has no pairs
    assert result[4] == pytest.approx(1.0)  # an item without features counts as dissimilar
    assert np.isnan(M.intra_list_diversity(top, np.zeros((4, 0)))).all()


def test_intra_list_diversity_matches_brute_force_in_any_chunking(monkeypatch):
    rng = np.random.default_rng(3)
    features = rng.random((20, 6))
    top = np.stack([rng.choice(20, 5, replace=False) for _ in range(8)])
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    expected = [np.mean([1 - unit[a] @ unit[b] for i, a in enumerate(row) for b in row[i + 1:]]) for row in top]
    assert M.intra_list_diversity(top, features) == pytest.approx(expected)
    assert M.intra_list_diversity(top, M.unit_rows(features), normalised=True) == pytest.approx(expected, abs=1e-6)
    monkeypatch.setattr(M, "_DIVERSITY_CHUNK", 31)  # one user per chunk
    assert M.intra_list_diversity(top, features) == pytest.approx(expected)


def test_ranking_metrics_at_once_equal_the_single_functions():
    rng = np.random.default_rng(11)
    top = np.stack([rng.permutation(15)[:6] for _ in range(9)])
    rel = sp.csr_matrix(rng.random((9, 15)) < 0.3, dtype=np.float32)
    together = M.ranking_metrics(top, rel, k=4)
    assert list(together) == list(M.RANKING_METRICS)
    for name, function in M.RANKING_METRICS.items():
        np.testing.assert_array_equal(together[name], function(top, rel, k=4))


# ---------------------------------------------------------------------- properties
@st.composite
def ranking_case(draw):
    n_items = draw(st.integers(2, 30))
    n_users = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    k = draw(st.integers(1, n_items))
    top = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    rel = rng.random((n_users, n_items)) < draw(st.floats(0.05, 0.9))
    rel[:, int(rng.integers(n_items))] = True  # every user has at least one relevant item
    return top, sp.csr_matrix(rel, dtype=np.float32)


@settings(max_examples=60, deadline=None)
@given(ranking_case())
def test_metrics_lie_between_zero_and_one(case):
    top, rel = case
    for name, function in M.RANKING_METRICS.items():
        values = function(top, rel)
        assert values.shape == (top.shape[0],)
        assert np.all((values >= -1e-12) & (values <= 1 + 1e-12)), name
    assert np.all(M.reciprocal_rank_at_k(top, rel) <= M.hit_rate_at_k(top, rel))
    assert np.all(M.precision_at_k(top, rel) <= M.hit_rate_at_k(top, rel))


@settings(max_examples=60, deadline=None)
@given(ranking_case())
def test_recall_and_hit_rate_grow_with_k(case):
    top, rel = case
    previous_recall = previous_hit = np.zeros(top.shape[0])
    for k in range(1, top.shape[1] + 1):
        recall, hit = M.recall_at_k(top, rel, k), M.hit_rate_at_k(top, rel, k)
        assert np.all(recall >= previous_recall - 1e-12)
        assert np.all(hit >= previous_hit)
        previous_recall, previous_hit = recall, hit


@settings(max_examples=40, deadline=None)
@given(ranking_case())
def test_ndcg_is_one_for_the_ideal_list(case):
    _, rel = case
    rel_dense = rel.toarray() > 0
    k = 3
    # Relevant items first (by index), then the others: the ideal ordering.
    top = np.argsort(~rel_dense, axis=1, kind="stable")[:, :k]
    assert M.ndcg_at_k(top, rel, k) == pytest.approx(np.ones(rel.shape[0]))
