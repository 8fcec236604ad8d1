"""Segments: k-means on user representations, names, profiles, exports, projections."""
import numpy as np
import pandas as pd
import pytest

from recommender import DataError
from recommender.analysis.privacy import safe_csv
from recommender.analysis.segments import (compare_segments, profile_groups, projection_2d, segment_assignments,
                                           segment_users)
from recommender.models import PopularityRecommender

from . import FixedEmbeddings, blob_embeddings, grouped_dataset


@pytest.fixture(scope="module")
def grouped():
    """60 users: 30 North (Books), 27 South (Garden), 3 East (Music), with embeddings per group."""
    dataset, user_group, item_group = grouped_dataset()
    return dataset, user_group, blob_embeddings(user_group)


def same_partition(a, b) -> bool:
    """Whether two labelings split the users the same way (up to renaming)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_silhouette_picks_the_planted_number_of_groups():
    from . import grouped_dataset as make

    dataset, user_group, _ = make(sizes=(20, 20, 20, 20))
    result = segment_users(blob_embeddings(user_group), dataset, k_range=(2, 7))
    assert result.k == 4
    assert sorted(result.silhouette) == [2, 3, 4, 5, 6, 7]
    assert max(result.silhouette, key=result.silhouette.get) == 4
    assert same_partition(result.labels, user_group)


def test_default_search_starts_at_three_segments():
    """Two segments rarely tell anyone anything: by default k is searched from 3 to 12 (k=2 stays choosable)."""
    from . import grouped_dataset as make

    dataset, user_group, _ = make(sizes=(20, 20, 20, 20))
    result = segment_users(blob_embeddings(user_group), dataset)
    assert sorted(result.silhouette) == list(range(3, 13))
    assert result.k == 4 and same_partition(result.labels, user_group)
    two = segment_users(blob_embeddings(np.minimum(user_group, 1)), dataset)   # only two real groups
    assert min(two.silhouette) == 3 and two.k >= 3
    assert segment_users(blob_embeddings(user_group), dataset, k=2).k == 2


def test_vector_length_does_not_change_the_segments(grouped):
    """Directions are clustered: a user active enough to have a long vector is not a segment of their own."""
    dataset, user_group, embeddings = grouped
    lengths = np.random.default_rng(2).uniform(0.2, 20.0, size=(len(embeddings), 1))
    plain = segment_users(embeddings, dataset, k=3)
    scaled = segment_users(embeddings * lengths, dataset, k=3)
    np.testing.assert_array_equal(plain.labels, scaled.labels)


def test_fixed_k_overrides_the_search(grouped):
    dataset, user_group, embeddings = grouped
    result = segment_users(embeddings, dataset, k=2)
    assert result.k == 2 and list(result.silhouette) == [2]
    assert set(result.labels.tolist()) == {0, 1}


def test_same_seed_same_labels_other_seed_may_differ():
    rng = np.random.default_rng(5)
    from . import grouped_dataset as make

    dataset, _, _ = make(sizes=(30, 30, 30))
    noise = rng.normal(size=(dataset.n_users, 6))   # no structure: the initialisation decides
    first = segment_users(noise, dataset, k=5, seed=0, n_init=1)
    again = segment_users(noise, dataset, k=5, seed=0, n_init=1)
    other = segment_users(noise, dataset, k=5, seed=3, n_init=1)
    np.testing.assert_array_equal(first.labels, again.labels)
    np.testing.assert_array_equal(first.centers, again.centers)
    assert not np.array_equal(first.labels, other.labels)


def test_segments_are_numbered_by_size(grouped):
    dataset, user_group, embeddings = grouped
    result = segment_users(embeddings, dataset, k=3)
    assert result.sizes.tolist() == [30, 27, 3]
    assert same_partition(result.labels, user_group)
    assert result.labels.dtype == np.int32 and result.representation.shape[0] == dataset.n_users


def test_profile_block_can_decide_the_segments(grouped):
    dataset, user_group, _ = grouped
    noise = np.random.default_rng(1).normal(size=(dataset.n_users, 4))       # taste says nothing here
    without = segment_users(noise, dataset, k=2)
    with_profile = segment_users(noise, dataset, k=2, include_profile=True, profile_weight=20.0)
    south_or_not = (user_group == 1).astype(int)     # South people are older and alone in their region
    assert not same_partition(without.labels, south_or_not)
    assert same_partition(with_profile.labels, south_or_not)
    assert with_profile.include_profile and with_profile.representation.shape[1] == 4 + dataset.user_features.shape[1]


def test_fit_on_a_sample_assigns_everyone(grouped):
    dataset, user_group, embeddings = grouped
    result = segment_users(embeddings, dataset, k=3, max_fit_users=20)
    assert (result.labels >= 0).all()
    assert same_partition(result.labels, user_group)
    assert "sample of 20" in result.notice


def test_model_embeddings_are_used(grouped):
    dataset, user_group, embeddings = grouped
    model = FixedEmbeddings(users=embeddings, items=np.zeros((dataset.n_items, 8))).fit(dataset)
    result = segment_users(model, dataset, k=3, representation="embeddings")
    assert "fixed model" in result.source and result.model is model and result.kind == "embeddings"
    assert same_partition(result.labels, user_group)


def test_model_scores_are_the_default_representation():
    """What the model would recommend: users whose scores rank the same items high share a segment,
    even when the model's user vectors say nothing (here: pure noise)."""
    from . import grouped_dataset as make

    dataset, user_group, item_group = make(sizes=(20, 20, 20))
    taste = blob_embeddings(user_group)
    items = np.eye(8)[item_group] * 3.0
    scoring = FixedEmbeddings(users=taste, items=items).fit(dataset)
    noise = np.random.default_rng(0).normal(size=taste.shape)
    model = FixedEmbeddings(users=noise, items=items).fit(dataset)
    model.score_users = scoring.score_users                  # scores carry the taste, vectors do not
    result = segment_users(model, dataset)
    assert result.kind == "scores" and "scores" in result.source and result.model is model
    assert result.k == 3 and same_partition(result.labels, user_group)
    by_vectors = segment_users(model, dataset, k=3, representation="embeddings")
    assert not same_partition(by_vectors.labels, user_group)
    # a new person is placed by their scores, by the same rule
    placed = result.assign(scores=scoring.score_users(np.array([0, 25, 45])) * 5.0)
    np.testing.assert_array_equal(placed, result.labels[[0, 25, 45]])
    with pytest.raises(ValueError, match="representation"):
        segment_users(model, dataset, representation="vectors")


def test_model_that_scores_everyone_alike_falls_back_to_interactions(grouped):
    dataset, user_group, _ = grouped
    result = segment_users(PopularityRecommender().fit(dataset), dataset, k=3)
    assert "interaction profile" in result.source and "scores everyone alike" in result.notice
    assert result.kind == "interactions" and result.model is None
    assert same_partition(result.labels, user_group)   # the groups use disjoint items
    asked = segment_users(PopularityRecommender().fit(dataset), dataset, k=3, representation="embeddings")
    assert "no user embeddings" in asked.notice and asked.kind == "interactions"


def test_wrong_embeddings_are_rejected(grouped):
    dataset, _, embeddings = grouped
    with pytest.raises(DataError, match="expected \\(60, d\\)"):
        segment_users(embeddings[:10], dataset, k=2)
    broken = embeddings.copy()
    broken[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        segment_users(broken, dataset, k=2)


@pytest.mark.parametrize("kwargs, message", [({"k_min": 3}, "at least 5"), ({"cold_users": "drop"}, "cold_users"),
                                             ({"k_range": (1, 4)}, "k_range")])
def test_bad_arguments(grouped, kwargs, message):
    dataset, _, embeddings = grouped
    with pytest.raises(ValueError, match=message):
        segment_users(embeddings, dataset, **kwargs)


def test_cold_users_placed_by_profile_or_excluded():
    import pandas as pd

    from recommender import Dataset

    from . import grouped_frames

    interactions, users, items, _ = grouped_frames(sizes=(20, 20))
    cold = pd.DataFrame({"user_id": ["C1", "C2"], "region": ["North", "South"], "age": [25, 45],
                         "interests": ["cats|dogs", "dogs"]})
    dataset = Dataset.from_frames(interactions, pd.concat([users, cold], ignore_index=True), items,
                                  user_roles={"interests": "multilabel"})
    active = np.diff(dataset.matrix.indptr) > 0
    group = np.where(np.char.startswith(dataset.user_ids.astype(str), "C"), -1, 0)
    group[active] = np.asarray([int(u[1:]) >= 20 for u in dataset.user_ids[active]], dtype=int)
    embeddings = blob_embeddings(np.maximum(group, 0))
    by_profile = segment_users(embeddings, dataset, k=2)
    north, south = dataset.user_indices(["C1", "C2"])
    assert by_profile.labels[north] == by_profile.labels[dataset.user_indices(["U000"])[0]]
    assert by_profile.labels[south] == by_profile.labels[dataset.user_indices(["U030"])[0]]
    assert "placed by their profile" in by_profile.notice
    excluded = segment_users(embeddings, dataset, k=2, cold_users="exclude")
    assert excluded.labels[north] == -1 and excluded.labels[south] == -1
    assert len(segment_assignments(excluded)) == dataset.n_users - 2


def test_names_and_profiles_describe_the_segments(grouped):
    dataset, _, embeddings = grouped
    result = segment_users(embeddings, dataset, k=3)
    assert "North" in result.names[0] and "Books-heavy" in result.names[0]
    assert "South" in result.names[1] and "Garden-heavy" in result.names[1]
    assert "fewer than 10 people" in result.names[2]                  # 3 people: no description
    profiles = result.profiles()
    assert list(profiles["segment"]) == [0, 1, 2]
    assert profiles.loc[0, "size"] == 30 and profiles.loc[0, "share"] == pytest.approx(0.5)
    assert "region North: 100% vs 50% overall (x2.0)" in profiles.loc[0, "top_attributes"]
    assert profiles.loc[0, "top_categories"].startswith("Books 100% (x")
    top_titles = [int(part.split(" (")[0].split()[1]) for part in profiles.loc[0, "top_items"].split("; ")]
    assert len(top_titles) == 3 and all(number % 3 == 0 for number in top_titles)   # Books items only
    assert profiles.loc[2, "privacy"] == "suppressed (<10)"
    assert profiles.loc[2, ["name", "size", "top_items"]].isna().all()


def test_profiles_report_model_quality_per_segment(grouped):
    dataset, _, embeddings = grouped
    result = segment_users(embeddings, dataset, k=3)
    users = dataset.user_ids
    evaluation = pd.DataFrame({"user_id": users, "ndcg@10": np.where(result.labels == 0, 0.5, 0.1),
                               "n_history": 3})
    evaluation.loc[0, "ndcg@10"] = np.nan   # missing values do not count
    profiles = result.profiles(evaluation=evaluation)
    assert profiles.loc[0, "ndcg@10"] == pytest.approx(0.5)
    assert profiles.loc[1, "ndcg@10"] == pytest.approx(0.1)
    assert "n_history" not in profiles.columns
    per_model = pd.concat([evaluation.assign(model="a"), evaluation.assign(model="b", **{"ndcg@10": 0.9})])
    profiles = result.profiles(evaluation=per_model)
    assert profiles.loc[1, "a: ndcg@10"] == pytest.approx(0.1) and profiles.loc[1, "b: ndcg@10"] == pytest.approx(0.9)


def test_export_drops_suppressed_segments(grouped):
    dataset, _, embeddings = grouped
    result = segment_users(embeddings, dataset, k=3)
    export = segment_assignments(result, dataset)
    assert list(export.columns) == ["user_id", "segment", "segment_name"]
    assert len(export) == 57 and set(export["segment"]) == {0, 1}
    assert "3 user(s)" in export.attrs["notice"]
    assert safe_csv(export).count(b"\r\n") == 58
    relaxed = segment_assignments(result, dataset, k_min=5)
    assert len(relaxed) == 57
    with pytest.raises(ValueError, match="at least 5"):
        segment_assignments(result, dataset, k_min=2)


def test_compare_segments(grouped):
    dataset, _, embeddings = grouped
    result = segment_users(embeddings, dataset, k=3)
    table = compare_segments(result, 0, result.names[1])
    north = table[(table["attribute"] == "region") & (table["value"] == "North")].iloc[0]
    assert north["share_a"] == 1.0 and north["share_b"] == 0.0 and north["lift_a"] == pytest.approx(2.0)
    books = table[(table["kind"] == "category") & (table["value"] == "Books")].iloc[0]
    assert books["share_a"] == pytest.approx(1.0) and books["share_b"] == 0.0
    assert table["difference"].abs().is_monotonic_decreasing
    small = compare_segments(result, 0, 2)
    assert small["share_b"].isna().all() and "fewer than 10" in small.attrs["notice"]
    with pytest.raises(KeyError, match="segment 7"):
        compare_segments(result, 0, 7)


def test_new_people_are_assigned_like_training_users(grouped):
    dataset, _, embeddings = grouped
    result = segment_users(embeddings, dataset, k=3)
    static, _, history = dataset.encode_new_users(pd.DataFrame({"user_id": ["a", "b"], "region": ["South", "North"],
                                                                "age": [45, 25], "interests": ["dogs", "cats|dogs"]}))
    assert result.assign(static=static).tolist() == [1, 0]                       # by profile
    assert result.assign(embeddings=embeddings[[0, 40]] * 7).tolist() == [0, 1]  # by embedding (direction)
    by_items = segment_users(None, dataset, k=2)
    south_items = [dataset.item_ids[i] for i in range(dataset.n_items) if int(dataset.item_ids[i][1:]) % 3 == 1]
    static, _, history = dataset.encode_new_users(
        pd.DataFrame({"user_id": ["c", "d"], "region": ["North", "North"]}), {"c": south_items[:2]})
    south = by_items.labels[dataset.user_indices(["U040"])[0]]
    north = by_items.labels[dataset.user_indices(["U000"])[0]]
    assert by_items.assign(static=static, history=history).tolist() == [south, north]   # history first


def test_profile_groups(grouped):
    dataset, user_group, _ = grouped
    assert set(profile_groups(dataset, "region")) == {"North", "South", "East"}
    assert set(profile_groups(dataset, "age")) <= {"18-24", "25-34", "35-44", "45-54"}
    with pytest.raises(KeyError, match="not a profile column"):
        profile_groups(dataset, "shoe size")
    with pytest.raises(ValueError, match="several values"):
        profile_groups(dataset, "interests")


def test_projection_pca_and_sampled_tsne():
    embeddings = blob_embeddings(np.repeat([0, 1, 2], 40))
    coords, index, notice = projection_2d(embeddings)
    assert coords.shape == (120, 2) and notice == "" and (index == np.arange(120)).all()
    coords, index, notice = projection_2d(embeddings, method="tsne", max_points=60, seed=1)
    assert coords.shape == (60, 2) and len(set(index.tolist())) == 60 and "sample of 60 of 120" in notice
    again, index_again, _ = projection_2d(embeddings, method="tsne", max_points=60, seed=1)
    np.testing.assert_array_equal(index, index_again)
    with pytest.raises(ValueError, match="method"):
        projection_2d(embeddings, method="umap")
