"""What is special about each baseline, checked on small planted patterns."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recommender import Dataset
from recommender.models import content_knn
from recommender.models import (ALSRecommender, ContentKNNRecommender, EASERecommender, PopularityRecommender,
                                ProfileKNNRecommender, SegmentPopularityRecommender)


def clustered(n_per_group: int = 60, n_items_per_cluster: int = 12, picks: int = 5, seed: int = 0,
              extra_users=(), extra_interactions=()):
    """Region A users pick "a" items, region B users "b" items; gender and noise are unrelated.

    Item ``a00`` is the most popular "a" item and so on (popularity falls with the number).
    """
    rng = np.random.default_rng(seed)
    clusters = {"A": [f"a{i:02d}" for i in range(n_items_per_cluster)],
                "B": [f"b{i:02d}" for i in range(n_items_per_cluster)]}
    weights = 1.0 / (1.0 + np.arange(n_items_per_cluster))
    users, rows = [], []
    for region in ("A", "B"):
        for number in range(n_per_group):
            user = f"{region}{number:03d}"
            users.append({"user_id": user, "region": region, "gender": rng.choice(["F", "M"]),
                          "noise": rng.choice(list("pqrstu")), "age": int(rng.integers(25, 45))})
            chosen = rng.choice(clusters[region], size=picks, replace=False, p=weights / weights.sum())
            rows += [{"user_id": user, "item_id": item} for item in chosen]
    users += list(extra_users)
    rows += list(extra_interactions)
    items = pd.DataFrame({"item_id": clusters["A"] + clusters["B"],
                          "category": ["alpha"] * n_items_per_cluster + ["beta"] * n_items_per_cluster})
    return pd.DataFrame(rows), pd.DataFrame(users), items


def top_items(frame, user):
    return frame.loc[frame["user_id"] == user, "item_id"].tolist()


# ---------------------------------------------------------------------- EASE
def test_ease_matches_the_closed_form():
    interactions = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2", "u2", "u3", "u3", "u4", "u5", "u5"],
                                 "item_id": ["i1", "i2", "i2", "i3", "i4", "i1", "i4", "i5", "i3", "i5"]})
    dataset = Dataset.from_frames(interactions)
    model = EASERecommender(l2=2.0).fit(dataset)
    x = dataset.matrix.toarray().astype(np.float64)
    precision = np.linalg.inv(x.T @ x + 2.0 * np.eye(dataset.n_items))
    expected = np.eye(dataset.n_items) - precision / np.diag(precision)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.item_similarity(np.arange(dataset.n_items)), expected, atol=1e-5)
    np.testing.assert_allclose(model.score_users(np.arange(dataset.n_users)), x @ expected, atol=1e-5)


def test_ease_restricts_to_the_most_popular_items():
    interactions, users, items = clustered()
    dataset = Dataset.from_frames(interactions, users, items)
    model = EASERecommender(l2=10.0, max_items=8).fit(dataset)
    counts = np.bincount(dataset.item_index, minlength=dataset.n_items)
    modelled = np.sort(np.lexsort((np.arange(dataset.n_items), -counts))[:8])
    full_scores = model.score_users(np.arange(10))
    outside = np.setdiff1d(np.arange(dataset.n_items), modelled)
    # Every modelled item outranks every other item, and those others come in popularity order.
    assert (full_scores[:, modelled].min(axis=1) > full_scores[:, outside].max(axis=1)).all()
    order = np.argsort(-full_scores[0, outside], kind="stable")
    assert np.all(np.diff(counts[outside][order]) <= 0)
    # On the modelled items it is EASE of the restricted matrix.
    x = dataset.matrix[:, modelled].toarray().astype(np.float64)
    x[x > 0] = 1.0
    precision = np.linalg.inv(x.T @ x + 10.0 * np.eye(8))
    weights = np.eye(8) - precision / np.diag(precision)
    np.fill_diagonal(weights, 0.0)
    np.testing.assert_allclose(full_scores[:, modelled], (x @ weights)[:10], atol=1e-4)


def test_ease_new_user_without_history_gets_popularity():
    interactions, users, items = clustered()
    dataset = Dataset.from_frames(interactions, users, items)
    profiles = pd.DataFrame({"user_id": ["new"]})
    ease = EASERecommender().fit(dataset).recommend_new_users(profiles, k=10)
    popular = PopularityRecommender().fit(dataset).recommend_new_users(profiles, k=10)
    assert ease["item_id"].tolist() == popular["item_id"].tolist()
    with_history = EASERecommender().fit(dataset).recommend_new_users(profiles, k=5, histories={"new": ["b00"]})
    assert set(with_history["item_id"]) <= {f"b{i:02d}" for i in range(12)}


# ---------------------------------------------------------------------- segment popularity
def test_segment_popularity_is_the_shrunk_group_share():
    interactions, users, items = clustered()
    dataset = Dataset.from_frames(interactions, users, items)
    model = SegmentPopularityRecommender(columns=["region"], shrinkage=10.0).fit(dataset)
    binary = (dataset.matrix.toarray() > 0).astype(np.float64)
    overall = (binary.sum(axis=0) + 1) / (binary.sum() + dataset.n_items)
    region = dataset.users["region"].to_numpy()
    for value in ("A", "B"):
        members = np.flatnonzero(region == value)
        counts = binary[members].sum(axis=0)
        expected = (counts + 10.0 * overall) / (counts.sum() + 10.0)
        np.testing.assert_allclose(model.score_users(members[:3]), np.tile(expected, (3, 1)), rtol=1e-5)


def test_segment_popularity_small_group_backs_off_to_its_parent():
    # One region-A user with a gender nobody else has, who picked a "b" item.
    interactions, users, items = clustered(
        extra_users=[{"user_id": "lonely", "region": "A", "gender": "X", "noise": "p", "age": 30}],
        extra_interactions=[{"user_id": "lonely", "item_id": "b11"}])
    dataset = Dataset.from_frames(interactions, users, items)
    model = SegmentPopularityRecommender(columns=["region", "gender"], shrinkage=20.0).fit(dataset)
    lonely = model.score_users(dataset.user_indices(["lonely"]))[0]
    # Region A without a known gender: exactly the parent (region) level.
    parent = model.score_new_users(*dataset.encode_new_users(
        pd.DataFrame({"user_id": ["n"], "region": ["A"], "gender": ["unlisted"]})))[0]
    own = np.zeros(dataset.n_items)
    own[dataset.item_indices(["b11"])[0]] = 1.0
    np.testing.assert_allclose(lonely, (own + 20.0 * parent) / (1.0 + 20.0), rtol=1e-5)
    # So the lonely user's ranking is region A's (their own pick barely moves it).
    ranking = model.recommend("lonely", k=5, exclude_seen=False)["item_id"].tolist()
    assert ranking == list(dataset.item_ids[np.argsort(-parent, kind="stable")[:5]])
    assert all(item.startswith("a") for item in ranking)


def test_segment_popularity_unseen_value_falls_back_to_global_popularity():
    interactions, users, items = clustered()
    dataset = Dataset.from_frames(interactions, users, items)
    model = SegmentPopularityRecommender(columns=["region"], shrinkage=5.0).fit(dataset)
    profiles = pd.DataFrame({"user_id": ["nowhere", "a-person"], "region": ["Atlantis", "A"]})
    frame = model.recommend_new_users(profiles, k=dataset.n_items)
    popular = PopularityRecommender().fit(dataset).recommend_new_users(profiles.iloc[:1], k=dataset.n_items)
    assert top_items(frame, "nowhere") == popular["item_id"].tolist()
    assert all(item.startswith("a") for item in top_items(frame, "a-person")[:12])


def test_segment_popularity_chooses_the_telling_column():
    interactions, users, items = clustered(n_per_group=100)
    dataset = Dataset.from_frames(interactions, users, items)
    model = SegmentPopularityRecommender().fit(dataset)
    assert model.chain[0] == "region"
    assert "noise" not in model.chain


# ---------------------------------------------------------------------- profile kNN
def _with_twins():
    twin = {"region": "Moon", "gender": "X", "noise": "z", "age": 90}
    extra_users = [{"user_id": "twin1", **twin}, {"user_id": "twin2", **twin}]
    extra_items = [{"user_id": "twin1", "item_id": f"a{i:02d}"} for i in (9, 10, 11)]
    extra_items += [{"user_id": "twin2", "item_id": f"a{i:02d}"} for i in (6, 7, 8)]
    return clustered(extra_users=extra_users, extra_interactions=extra_items)


def test_profile_knn_ranks_the_planted_neighbours_items_first():
    dataset = Dataset.from_frames(*_with_twins())
    model = ProfileKNNRecommender(k=1).fit(dataset)
    # The twins have the same profile: each one's neighbour is the other (never itself).
    assert set(model.recommend("twin1", k=3, exclude_seen=False)["item_id"]) == {"a06", "a07", "a08"}
    assert set(model.recommend("twin2", k=3, exclude_seen=False)["item_id"]) == {"a09", "a10", "a11"}
    newcomer = pd.DataFrame({"user_id": ["newcomer"], "region": ["Moon"], "gender": ["X"], "noise": ["z"],
                             "age": [90]})
    # The newcomer is as close to one twin as to the other: they share the one place, and so do their items.
    twin_items = ["a06", "a07", "a08", "a09", "a10", "a11"]
    encoded = dataset.encode_new_users(newcomer, None)
    scores = model.score_new_users(*encoded)[0]
    shared = scores[dataset.item_indices(twin_items)]
    np.testing.assert_allclose(shared, 0.5, atol=1e-3)          # half of each twin (plus a tiny popularity term)
    assert np.sort(scores)[-len(twin_items) - 1] < shared.min()


def test_profile_knn_uses_the_profile_for_new_users():
    dataset = Dataset.from_frames(*clustered())
    model = ProfileKNNRecommender(k=20).fit(dataset)
    profiles = pd.DataFrame({"user_id": ["from-a", "from-b"], "region": ["A", "B"]})
    frame = model.recommend_new_users(profiles, k=5)
    assert all(item.startswith("a") for item in top_items(frame, "from-a"))
    assert all(item.startswith("b") for item in top_items(frame, "from-b"))


# ---------------------------------------------------------------------- ALS
def test_als_is_deterministic_for_a_seed():
    dataset = Dataset.from_frames(*clustered())
    first = ALSRecommender(factors=8, iterations=4, seed=3, num_threads=1).fit(dataset)
    second = ALSRecommender(factors=8, iterations=4, seed=3, num_threads=1).fit(dataset)
    other = ALSRecommender(factors=8, iterations=4, seed=4, num_threads=1).fit(dataset)
    np.testing.assert_array_equal(first.item_embeddings(), second.item_embeddings())
    np.testing.assert_array_equal(first.user_embeddings(), second.user_embeddings())
    assert not np.allclose(first.item_embeddings(), other.item_embeddings())
    assert first.user_embeddings().shape == (dataset.n_users, 8)
    assert first.item_embeddings().shape == (dataset.n_items, 8)


def test_als_fold_in_recovers_the_preferences_of_a_new_user():
    dataset = Dataset.from_frames(*clustered())
    model = ALSRecommender(factors=4, iterations=10, regularization=5.0, alpha=2.0, num_threads=1).fit(dataset)
    profiles = pd.DataFrame({"user_id": ["likes-b", "likes-a", "nothing-yet"]})
    frame = model.recommend_new_users(profiles, k=5, histories={"likes-b": ["b00", "b01", "b03"],
                                                                "likes-a": ["a02", "a04"]})
    assert all(item.startswith("b") for item in top_items(frame, "likes-b"))
    assert all(item.startswith("a") for item in top_items(frame, "likes-a"))
    popular = PopularityRecommender().fit(dataset).recommend_new_users(profiles.iloc[:1], k=5)
    assert top_items(frame, "nothing-yet") == popular["item_id"].tolist()


def test_als_callback_can_stop_training():
    dataset = Dataset.from_frames(*clustered())
    seen = []

    def callback(epoch, losses, metrics):
        seen.append((epoch, dict(losses)))
        return epoch < 1

    ALSRecommender(factors=4, iterations=10, num_threads=1).fit(dataset, callback=callback)
    assert [epoch for epoch, _ in seen] == [0, 1]
    assert all(np.isfinite(losses["loss"]) for _, losses in seen)


# ---------------------------------------------------------------------- content kNN
def _catalogue():
    interactions, users, items = clustered()
    items = pd.concat([items, pd.DataFrame({"item_id": ["new-alpha"], "category": ["alpha"]})], ignore_index=True)
    items["brand"] = np.where(items["item_id"].str.startswith("b"), "Beta Co", "Alpha Co")
    return interactions, users, items


def test_content_knn_recommends_items_like_the_history():
    dataset = Dataset.from_frames(*_catalogue())
    model = ContentKNNRecommender(k=30).fit(dataset)
    profiles = pd.DataFrame({"user_id": ["reader"]})
    # 13 "alpha" items (12 + the new arrival), 2 of them in the history: the other 11 come first.
    frame = model.recommend_new_users(profiles, k=11, histories={"reader": ["a03", "a05"]})
    top = frame["item_id"].tolist()
    assert all(item.startswith("a") or item == "new-alpha" for item in top)
    # The new arrival nobody has interacted with is reachable through its content.
    assert "new-alpha" in top
    similarity = model.item_similarity(dataset.item_indices(["a00"]))[0]
    assert similarity[dataset.item_indices(["a05"])[0]] > similarity[dataset.item_indices(["b05"])[0]]


def test_content_knn_an_item_does_not_vote_for_itself():
    dataset = Dataset.from_frames(*_catalogue())
    model = ContentKNNRecommender(k=30, popularity_weight=0.0).fit(dataset)
    encoded = dataset.encode_new_users(pd.DataFrame({"user_id": ["one"]}), {"one": ["a11"]})
    scores = model.score_new_users(*encoded)[0]
    a00, a11, b00 = dataset.item_indices(["a00", "a11", "b00"])
    assert scores[a00] == pytest.approx(1.0) and scores[a11] == 0.0 and scores[b00] == 0.0


@pytest.mark.parametrize("block_rows", [1, 5, 57])
def test_content_neighbours_match_a_brute_force_ranking_block_by_block(monkeypatch, block_rows):
    """Each row's k most similar rows, positive ones only, whether one block or many (the pipelined path)."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(57, 6))              # continuous: no ties between similarities
    features[[3, 40]] = 0.0                           # items without features have no neighbours
    unit = content_knn._unit_rows(features)
    monkeypatch.setattr(content_knn, "_BLOCK_FLOATS", 57 * block_rows)
    matrix = content_knn.top_k_similarity(unit, 4)

    assert matrix.shape == (57, 57) and matrix.indices.dtype == np.int32 and matrix.has_sorted_indices
    similarity = unit.astype(np.float64) @ unit.T.astype(np.float64)
    np.fill_diagonal(similarity, -np.inf)
    for row in range(57):
        best = np.argsort(-similarity[row], kind="stable")[:4]
        expected = sorted(int(column) for column in best if similarity[row, column] > 0)
        found = matrix.indices[matrix.indptr[row]:matrix.indptr[row + 1]].tolist()
        assert found == expected, row
        np.testing.assert_allclose(matrix[row, expected].toarray().ravel(), similarity[row, expected], rtol=1e-5)
    assert matrix[[3, 40]].nnz == 0 and matrix[:, [3, 40]].nnz == 0 and matrix.diagonal().sum() == 0


@pytest.mark.parametrize("block_rows", [1, 7, 40])
def test_content_neighbours_tied_with_the_kth_keep_the_lowest_indices(monkeypatch, block_rows):
    """Items with the same features tie exactly; which of them become neighbours must not be up to
    np.argpartition's algorithm (its SIMD variant depends on the processor)."""
    rng = np.random.default_rng(1)
    kinds = rng.normal(size=(4, 5))
    features = kinds[rng.integers(0, 4, size=40)]      # 40 items, four distinct feature rows
    unit = content_knn._unit_rows(features)
    monkeypatch.setattr(content_knn, "_BLOCK_FLOATS", 40 * block_rows)
    matrix = content_knn.top_k_similarity(unit, 6)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    for row in range(40):
        ranked = sorted(range(40), key=lambda column: (-similarity[row, column], column))[:6]
        expected = sorted(column for column in ranked if similarity[row, column] > 0)
        assert matrix.indices[matrix.indptr[row]:matrix.indptr[row + 1]].tolist() == expected, row


def test_profile_neighbours_tied_with_the_kth_share_its_places():
    """People with the same profile tie exactly: every tied pool user counts, the tied ones sharing the
    places left (the expected weight over every way to break the tie), whatever the batch or the data's order."""
    from recommender.models.profile_knn import neighbour_scores

    rng = np.random.default_rng(2)
    kinds = np.eye(3, dtype=np.float32)
    pool_kind = rng.integers(0, 3, size=30)
    pool_items = sp.csr_matrix(np.eye(30, dtype=np.float32))        # pool user j picked item j only
    queries = kinds[[0, 1, 2, 0]]
    scores = neighbour_scores(queries, kinds[pool_kind].T.copy(), np.arange(30), pool_items, k=4)
    one_by_one = np.vstack([neighbour_scores(queries[[i]], kinds[pool_kind].T.copy(), np.arange(30), pool_items, k=4)
                            for i in range(4)])
    np.testing.assert_array_equal(scores, one_by_one)
    for row, kind in enumerate([0, 1, 2, 0]):
        same = np.flatnonzero(pool_kind == kind)
        assert len(same) > 4 and np.flatnonzero(scores[row]).tolist() == same.tolist()
        np.testing.assert_allclose(scores[row, same], 1.0 / len(same), rtol=1e-6)
    # The pool in reverse order gives the same scores (no tie-break by position).
    reverse = np.arange(30)[::-1]
    again = neighbour_scores(queries, kinds[pool_kind[reverse]].T.copy(), np.arange(30),
                             pool_items[reverse], k=4)
    np.testing.assert_allclose(again, scores, rtol=1e-6)

    # Better neighbours keep their full weight; only the tied ones share what is left.
    pool = np.array([[1.0, 0.0], [0.8, 0.6], [0.8, 0.6], [0.8, 0.6], [0.0, 1.0]], dtype=np.float32)
    items = sp.csr_matrix(np.eye(5, dtype=np.float32))
    scores = neighbour_scores(np.array([[1.0, 0.0]], dtype=np.float32), pool.T.copy(), np.arange(5), items, k=2)[0]
    expected = np.array([1.0, 0.8 / 3, 0.8 / 3, 0.8 / 3, 0.0]) / 1.8
    np.testing.assert_allclose(scores, expected, rtol=1e-6)


def test_content_knn_without_history_is_popularity():
    dataset = Dataset.from_frames(*_catalogue())
    profiles = pd.DataFrame({"user_id": ["someone"]})
    content = ContentKNNRecommender().fit(dataset).recommend_new_users(profiles, k=8)
    popular = PopularityRecommender().fit(dataset).recommend_new_users(profiles, k=8)
    assert content["item_id"].tolist() == popular["item_id"].tolist()


@pytest.mark.parametrize("model", [SegmentPopularityRecommender(shrinkage=-1.0), ProfileKNNRecommender(k=0),
                                   EASERecommender(l2=0.0), ALSRecommender(factors=0),
                                   ContentKNNRecommender(k=0)])
def test_bad_hyperparameters_are_refused(model):
    dataset = Dataset.from_frames(*clustered(n_per_group=5))
    with pytest.raises(ValueError, match="must be"):
        model.fit(dataset)
