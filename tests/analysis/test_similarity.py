"""Similarity heatmaps: sources, clustered order, caps, affinity lift and suppression, one pair."""
import numpy as np
import pandas as pd
import pytest

from recommender import Dataset, DataError
from recommender.analysis.segments import segment_users
from recommender.analysis.similarity import (MAX_ITEMS, affinity_matrix, cluster_order, explain_pair,
                                             item_similarity_matrix, unique_labels, user_similarity_matrix)
from recommender.models import PopularityRecommender

from . import FixedEmbeddings, blob_embeddings, grouped_dataset


@pytest.fixture(scope="module")
def grouped():
    """Users in two groups; group g interacts only with items whose number % 2 == g (ids interleaved)."""
    return grouped_dataset(sizes=(25, 25))


def n_blocks(groups) -> int:
    """Contiguous runs in a sequence of group labels."""
    groups = list(groups)
    return 1 + sum(a != b for a, b in zip(groups, groups[1:]))


@pytest.mark.parametrize("source", ["cooccurrence", "content", "model"])
def test_clustering_puts_planted_blocks_side_by_side(grouped, source):
    dataset, _, item_group = grouped
    model = FixedEmbeddings(users=np.zeros((dataset.n_users, 2)), items=blob_embeddings(item_group, dim=2)).fit(dataset)
    matrix = item_similarity_matrix(source, dataset, model=model, top_n=12)
    assert matrix.shape == (12, 12) and matrix.kind == "item" and matrix.source == source
    popular_order = item_group[np.argsort(-np.bincount(dataset.item_index, minlength=dataset.n_items),
                                          kind="stable")[:12]]
    assert n_blocks(popular_order) > 2                      # the raw order mixes the groups ...
    assert n_blocks(item_group[matrix.row_index]) == 2      # ... the clustered order does not
    np.testing.assert_array_equal(matrix.row_index, matrix.column_index)
    assert matrix.row_labels == list(dataset.item_labels(matrix.row_index))
    np.testing.assert_allclose(np.diag(matrix.values), 1.0, atol=1e-5)


def test_cooccurrence_values_are_column_cosines(grouped):
    dataset, _, _ = grouped
    matrix = item_similarity_matrix("cooccurrence", dataset, items=["I000", "I002", "I001"])
    binary = (dataset.matrix.toarray() > 0).astype(float)
    columns = binary[:, dataset.item_indices(["I000", "I002"])]
    expected = columns[:, 0] @ columns[:, 1] / np.linalg.norm(columns[:, 0]) / np.linalg.norm(columns[:, 1])
    frame = matrix.to_frame()
    assert frame.loc["Title 0", "Title 2"] == pytest.approx(expected)
    assert frame.loc["Title 0", "Title 1"] == 0.0          # never bought together


def test_requests_are_capped_with_a_notice():
    rng = np.random.default_rng(0)
    interactions = pd.DataFrame({"user_id": rng.integers(0, 200, 3000).astype(str),
                                 "item_id": rng.integers(0, 150, 3000).astype(str)})
    dataset = Dataset.from_frames(interactions)
    matrix = item_similarity_matrix("cooccurrence", dataset, top_n=500)
    assert matrix.shape == (MAX_ITEMS, MAX_ITEMS) and "capped" in matrix.notice
    popularity = np.bincount(dataset.item_index, minlength=dataset.n_items)
    assert popularity[matrix.row_index].min() >= np.sort(popularity)[-MAX_ITEMS]
    users = user_similarity_matrix(dataset, sample=500)
    assert users.shape == (MAX_ITEMS, MAX_ITEMS) and "capped" in users.notice


def test_top_n_within_one_category(grouped):
    dataset, _, item_group = grouped
    matrix = item_similarity_matrix("content", dataset, category="Garden", top_n=30)
    assert len(matrix.row_index) == 6 and (item_group[matrix.row_index] == 1).all()
    with pytest.raises(KeyError, match="Cooking"):
        item_similarity_matrix("content", dataset, category="Cooking")


def test_bad_sources_say_what_to_do(grouped):
    dataset, _, _ = grouped
    with pytest.raises(ValueError, match="needs a fitted model"):
        item_similarity_matrix("model", dataset)
    with pytest.raises(ValueError, match="no notion of item similarity"):
        item_similarity_matrix("model", dataset, model=PopularityRecommender().fit(dataset))
    with pytest.raises(ValueError, match="source must be"):
        item_similarity_matrix("vibes", dataset)
    bare = Dataset.from_frames(pd.DataFrame({"user_id": ["a", "b", "a"], "item_id": ["x", "y", "y"]}))
    with pytest.raises(ValueError, match="no item features"):
        item_similarity_matrix("content", bare)


def test_duplicate_titles_are_told_apart():
    assert unique_labels(["Dune", "Dune", "Emma"], ["1", "2", "3"]) == ["Dune [1]", "Dune [2]", "Emma"]
    interactions = pd.DataFrame({"user_id": ["a", "a", "b", "b"], "item_id": ["1", "2", "1", "3"]})
    items = pd.DataFrame({"item_id": ["1", "2", "3"], "title": ["Dune", "Dune", "Emma"]})
    dataset = Dataset.from_frames(interactions, items=items, item_roles={"title": "label"})
    matrix = item_similarity_matrix("cooccurrence", dataset)
    assert sorted(matrix.row_labels) == ["Dune [1]", "Dune [2]", "Emma"]


def test_cluster_order_of_a_planted_matrix():
    blocks = np.array([0, 1, 0, 1, 0, 1])
    similarity = np.where(blocks[:, None] == blocks[None, :], 0.9, 0.1)
    assert n_blocks(blocks[cluster_order(similarity)]) == 2


def test_user_similarity_sample_is_seeded_and_clustered(grouped):
    dataset, user_group, _ = grouped
    first = user_similarity_matrix(dataset, sample=12, seed=4)
    again = user_similarity_matrix(dataset, sample=12, seed=4)
    np.testing.assert_array_equal(first.row_index, again.row_index)
    assert first.shape == (12, 12) and "sample of 12 of 50" in first.notice
    assert n_blocks(user_group[first.row_index]) == 2
    assert first.row_labels == list(dataset.user_ids[first.row_index])


def test_user_similarity_by_segment(grouped):
    dataset, user_group, _ = grouped
    embeddings = blob_embeddings(user_group)
    model = FixedEmbeddings(users=embeddings, items=np.zeros((dataset.n_items, 8))).fit(dataset)
    segments = segment_users(model, dataset, k=2)
    matrix = user_similarity_matrix(dataset, model=model, by_segment=segments)
    assert matrix.kind == "segment" and matrix.shape == (2, 2)
    assert matrix.values[0, 1] < 0.2 and np.allclose(np.diag(matrix.values), 1.0)
    labels = np.where(user_group == 0, "left", "right")
    labels[:3] = "tiny"                                          # 3 people: left out
    matrix = user_similarity_matrix(dataset, model=model, by_segment=labels)
    assert sorted(matrix.row_labels) == ["left", "right"] and "hidden" in matrix.notice


def affinity_case():
    """Group A: 12 people, 3 items each: 2 in X, 1 in Y. Group B: 10 people, 1 item each in Y.

    Hand computation: A has 24 X and 12 Y interactions, B 0 X and 10 Y; overall X 24/46, Y 22/46.
    lift(A, X) = (24/36) / (24/46) = 46/36; lift(A, Y) = (12/36) / (22/46); lift(B, Y) = 1 / (22/46).
    """
    rows = []
    for person in range(12):
        rows += [(f"a{person}", "x1"), (f"a{person}", "x2"), (f"a{person}", "y1")]
    for person in range(10):
        rows.append((f"b{person}", "y2"))
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id"])
    items = pd.DataFrame({"item_id": ["x1", "x2", "y1", "y2"], "category": ["X", "X", "Y", "Y"]})
    dataset = Dataset.from_frames(interactions, items=items, item_roles={"category": "categorical"})
    groups = np.where(np.char.startswith(dataset.user_ids.astype(str), "a"), "A", "B")
    return dataset, groups


def test_affinity_lift_by_hand():
    dataset, groups = affinity_case()
    matrix = affinity_matrix(dataset, groups, k_min=10)
    frame = matrix.to_frame()
    assert frame.loc["A", "X"] == pytest.approx(46 / 36)
    assert frame.loc["A", "Y"] == pytest.approx((12 / 36) / (22 / 46))
    assert frame.loc["B", "Y"] == pytest.approx(46 / 22)
    assert np.isnan(frame.loc["B", "X"])                                # nobody in B: 0 people < k_min
    counts = pd.DataFrame(matrix.counts, index=matrix.row_labels, columns=matrix.column_labels)
    assert counts.loc["A", "X"] == 12 and counts.loc["B", "Y"] == 10
    share = pd.DataFrame(matrix.extra["share"], index=matrix.row_labels, columns=matrix.column_labels)
    np.testing.assert_allclose(share.sum(axis=1), 1.0)                  # shares of a group add up to 1
    overall = dict(zip(matrix.column_labels, matrix.extra["overall"]))
    assert overall["X"] == pytest.approx(24 / 46)
    assert matrix.n_suppressed == 1 and "hidden" in matrix.notice


def test_affinity_suppresses_small_groups_and_cells():
    dataset, groups = affinity_case()
    matrix = affinity_matrix(dataset, groups, k_min=11)                 # B has 10 people
    frame = matrix.to_frame()
    assert frame.loc["B"].isna().all() and not np.isnan(frame.loc["A", "X"])
    with pytest.raises(ValueError, match="at least 5"):
        affinity_matrix(dataset, groups, k_min=4)
    with pytest.raises(DataError, match="one label per user"):
        affinity_matrix(dataset, groups[:5])


def test_affinity_orders_groups_by_clustering(grouped):
    dataset, user_group, _ = grouped
    labels = np.asarray([f"{'north' if g == 0 else 'south'}-{i % 3}" for i, g in enumerate(user_group)])
    matrix = affinity_matrix(dataset, labels, k_min=5)
    sides = [label.split("-")[0] for label in matrix.row_labels]
    assert n_blocks(sides) == 2


def test_explain_pair(grouped):
    dataset, _, item_group = grouped
    model = FixedEmbeddings(users=np.zeros((dataset.n_users, 2)), items=blob_embeddings(item_group, dim=2)).fit(dataset)
    binary = dataset.matrix.toarray() > 0
    a, b = dataset.item_indices(["I000", "I002"])
    both = int((binary[:, a] & binary[:, b]).sum())
    result = explain_pair(dataset, model, "I000", "I002", k_min=5)
    assert result["audience"]["a"] == binary[:, a].sum() and result["audience"]["both"] == both
    assert result["similarity"]["content"] == pytest.approx(1.0)       # same category, nothing else
    assert result["similarity"]["model"] > 0.9 and 0 < result["similarity"]["cooccurrence"] < 1
    assert result["shared_attributes"] == ["category: Books"]
    assert list(result["items"]["title"]) == ["Title 0", "Title 2"]
    across = explain_pair(dataset, None, "I000", "I001", k_min=5)
    assert across["audience"]["both"] is None and "hidden" in across["notice"]   # 0 people in common
    assert across["similarity"]["model"] is None and across["similarity"]["cooccurrence"] == 0.0
    with pytest.raises(KeyError, match="nope"):
        explain_pair(dataset, None, "I000", "nope")
