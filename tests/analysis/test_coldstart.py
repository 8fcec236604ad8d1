"""Cold start: the form, one simulated person, one changed attribute, a new item's audience."""
import warnings

import numpy as np
import pandas as pd
import pytest

from recommender import Dataset

from recommender.analysis.coldstart import (change_one_thing, item_form_schema, new_item_audience, profile_form_schema,
                                            simulate)
from recommender.analysis.segments import segment_users
from recommender.models import PopularityRecommender, Recommender

from . import blob_embeddings, grouped_dataset, grouped_frames, synthetic_dataset


class ProfileTaste(Recommender):
    """Scores items by what people with the same profile features interacted with (+ a popularity tie-break)."""

    name = "profile_taste"
    uses_profile = True

    def _fit(self, dataset, callback):
        binary = (dataset.matrix > 0).astype(np.float32)
        self._weights = np.asarray(dataset.user_features.T @ binary, dtype=np.float32)
        self._weights /= np.maximum(dataset.user_features.sum(axis=0), 1)[:, None]
        counts = np.bincount(dataset.item_index, minlength=dataset.n_items)
        self._popularity = (1e-3 * counts / counts.max()).astype(np.float32)

    def _parts(self, static):
        return static @ self._weights, np.tile(self._popularity, (static.shape[0], 1))

    def score_users(self, user_index):
        return sum(self._parts(self.dataset.user_features[user_index]))

    def score_new_users(self, static, behaviour, history):
        return sum(self._parts(static))

    def explain(self, static, behaviour, history, item_index):
        profile, popularity = self._parts(static)
        items = np.asarray(item_index)
        return pd.DataFrame({"item_index": items, "profile": profile[0, items], "popularity": popularity[0, items],
                             "total": profile[0, items] + popularity[0, items], "gate_profile": 1.0})


class SloppyExplainer(ProfileTaste):
    """Claims contributions that do not add up to its scores."""

    name = "sloppy"

    def explain(self, static, behaviour, history, item_index):
        frame = super().explain(static, behaviour, history, item_index)
        frame["profile"] *= 0.5
        frame["total"] = frame["profile"] + frame["popularity"]
        return frame


class ScoresNewItems(ProfileTaste):
    """Offers score_new_items: affinity = how much the user's age exceeds 35 (to tell it from the fallback)."""

    name = "new_items"

    def score_new_items(self, item_features):
        ages = pd.to_numeric(self.dataset.users["age"]).to_numpy(dtype=float)
        return np.tile((ages - 35.0)[:, None], (1, item_features.shape[0]))


@pytest.fixture(scope="module")
def grouped():
    dataset, user_group, item_group = grouped_dataset(sizes=(30, 30))
    return dataset, user_group, item_group, ProfileTaste().fit(dataset)


NORTH = {"region": "North", "age": 25, "interests": ["cats", "dogs"]}


def test_form_schema_lists_values_seen_in_training(grouped):
    dataset, *_ = grouped
    fields = {field.name: field for field in profile_form_schema(dataset)}
    assert list(fields) == dataset.profile_encoder.columns
    region = fields["region"]
    assert region.kind == "select" and sorted(region.options) == ["North", "South"] and region.default in region.options
    age = fields["age"]
    ages = pd.to_numeric(dataset.users["age"])
    assert age.kind == "number" and (age.min_value, age.max_value) == (ages.min(), ages.max())
    assert age.median == ages.median() and age.step == 1.0 and age.default == round(ages.median())
    interests = fields["interests"]
    assert interests.kind == "multiselect" and interests.options == ["cats", "dogs"] and interests.default == []


def test_form_schema_of_generated_data():
    data, dataset = synthetic_dataset()
    fields = {field.name: field for field in profile_form_schema(dataset)}
    for column in ("gender", "region", "occupation", "income_band", "signup_channel"):
        assert set(fields[column].options) == set(data.users[column]), column
        assert fields[column].default == data.users[column].value_counts().index[0]


def test_item_form_schema_describes_the_item_attributes():
    data, dataset = synthetic_dataset()
    fields = {field.name: field for field in item_form_schema(dataset)}
    assert list(fields) == ["category", "brand", "price_band", "price", "tags"]      # no title, no id
    category = fields["category"]
    assert category.kind == "select" and set(category.options) == set(data.items["category"])
    assert category.default == data.items["category"].value_counts().index[0]       # most frequent first
    price = fields["price"]
    prices = pd.to_numeric(data.items["price"])
    assert price.kind == "number" and (price.min_value, price.max_value) == (prices.min(), prices.max())
    assert price.step is None and price.default == pytest.approx(prices.median())
    tags = fields["tags"]
    seen_tags = set(data.items["tags"].str.split("|").explode())
    assert tags.kind == "multiselect" and tags.default == [] and set(tags.options) <= seen_tags
    assert len(tags.options) == len(set(tags.options)) > 1


def test_item_form_schema_skips_text_labels_and_ids():
    interactions, users, items, _ = grouped_frames(sizes=(10, 10))
    items = items.assign(sku=[f"SKU-{i}" for i in range(len(items))], year=2000 + np.arange(len(items)) % 5,
                         description=["a warm " + w for w in np.resize(["cosy book", "garden tool"], len(items))])
    dataset = Dataset.from_frames(interactions, users, items, item_roles={"sku": "ignore", "description": "text"})
    fields = {field.name: field for field in item_form_schema(dataset)}
    assert "title" not in fields and "sku" not in fields and "item_id" not in fields
    assert fields["year"].kind == "number" and fields["year"].step == 1.0
    assert (fields["year"].min_value, fields["year"].max_value) == (2000, 2004)
    assert fields["description"].kind == "text" and fields["description"].default == ""
    assert fields["category"].kind == "select"


def test_item_form_answers_feed_new_item_audience(grouped):
    dataset, user_group, *_ = grouped
    answers = {field.name: field.options[0] if field.kind == "select" else field.default
               for field in item_form_schema(dataset)}
    audience = new_item_audience(None, dataset, answers, segments=user_group, k_min=5)
    assert "ignored" not in audience.attrs["notice"] and len(audience) == 2


def test_result_frames_carry_no_arrays_and_combine_without_warnings(grouped):
    """pandas deep-copies ``attrs`` into derived frames and compares them on concat: arrays there break it."""
    dataset, _, _, model = grouped
    first = simulate(model, dataset, NORTH, k=3)
    second = simulate(model, dataset, {"region": "South"}, liked=["I001"], k=4)
    frames = [first.recommendations, second.recommendations, first.explanation, second.explanation]
    for frame in frames:
        assert not any(isinstance(value, np.ndarray) for value in frame.attrs.values())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        combined = pd.concat([first.recommendations, second.recommendations], ignore_index=True)
        pd.concat([first.explanation, second.explanation], ignore_index=True)
        combined.copy().rename(columns={"title": "Item"})[["Item"]].equals(combined[["title"]])
    assert len(combined) == 7


def test_simulate_returns_titled_top_k(grouped):
    dataset, user_group, item_group, model = grouped
    liked = ["I000"]
    segments = segment_users(blob_embeddings(user_group), dataset, k=2)
    baselines = {"popularity": PopularityRecommender().fit(dataset)}
    result = simulate(model, dataset, NORTH, liked=liked, k=4, compare_models=baselines, segments=segments)
    top = result.recommendations
    assert list(top["rank"]) == [1, 2, 3, 4]
    index = dataset.item_indices(top["item_id"])
    assert (item_group[index] == 0).all()                              # North people buy group-0 items
    assert list(top["title"]) == list(dataset.item_labels(index))
    assert "I000" not in set(top["item_id"]) and "category" in top.columns
    assert top["score"].is_monotonic_decreasing
    assert list(result.comparisons) == ["popularity"] and len(result.comparisons["popularity"]) == 4
    assert result.segment == segments.labels[user_group == 0][0]                 # placed with the North people
    assert result.segment_name == segments.names[result.segment]
    assert result.interpreted["region"] == "North"


def test_simulation_exports_every_list_with_the_profile(grouped):
    dataset, _, _, model = grouped
    result = simulate(model, dataset, NORTH, k=4, compare_models={"popularity": PopularityRecommender().fit(dataset)})
    table = result.to_frame("Fused")
    assert list(table.columns[:5]) == ["model", "rank", "item_id", "title", "score"]
    assert list(table["model"]) == ["Fused"] * 4 + ["popularity"] * 4
    assert list(table["item_id"][:4]) == list(result.recommendations["item_id"])
    assert set(table["profile: region"]) == {"North"}


def test_simulate_matches_recommend_new_users(grouped):
    dataset, _, _, model = grouped
    result = simulate(model, dataset, NORTH, liked=["I000", "I003"], k=5)
    profiles = pd.DataFrame([{"user_id": "p", "region": "North", "age": 25, "interests": "cats|dogs"}])
    expected = model.recommend_new_users(profiles, k=5, histories={"p": ["I000", "I003"]})
    assert list(result.recommendations["item_id"]) == list(expected["item_id"])
    np.testing.assert_allclose(result.recommendations["score"], expected["score"], rtol=1e-6)


def test_simulate_explains_and_checks_the_sum(grouped):
    dataset, _, _, model = grouped
    result = simulate(model, dataset, NORTH, k=3)
    explanation = result.explanation
    assert result.explanation_columns == ["profile", "popularity"] and result.explanation_exact is True
    np.testing.assert_allclose(explanation[["profile", "popularity"]].sum(axis=1), explanation["score"], rtol=1e-5)
    assert list(explanation["item_id"]) == list(result.recommendations["item_id"])
    sloppy = simulate(SloppyExplainer().fit(dataset), dataset, NORTH, k=3)
    assert sloppy.explanation_exact is False and "approximate" in sloppy.notice
    plain = simulate(PopularityRecommender().fit(dataset), dataset, NORTH, k=3)
    assert plain.explanation is None and plain.explanation_exact is None


def test_simulate_reports_unseen_values_and_unknown_items(grouped):
    dataset, _, _, model = grouped
    result = simulate(model, dataset, {"region": "Atlantis", "age": 30}, k=3)
    assert result.interpreted["region"] == "(unknown)" and "region" in result.notice
    with pytest.raises(KeyError, match="no-such-item"):
        simulate(model, dataset, NORTH, liked=["no-such-item"])
    with pytest.raises(ValueError, match="k must be"):
        simulate(model, dataset, NORTH, k=0)


def test_change_one_thing_marks_entered_left_and_moved(grouped):
    dataset, _, item_group, model = grouped
    table = change_one_thing(model, dataset, {"region": "North"}, "region", "South", k=6)   # region decides alone
    assert list(table["rank"]) == list(range(1, 7))
    before = dataset.item_indices(table["before_item_id"])
    after = dataset.item_indices(table["after_item_id"])
    assert (item_group[before] == 0).all() and (item_group[after] == 1).all()
    assert set(table["before_change"]) == {"left"} and set(table["after_change"]) == {"entered"}
    assert table.attrs["n_changed"] == 6
    same = change_one_thing(model, dataset, {"region": "North"}, "region", "North", k=6)
    assert set(same["before_change"]) == set(same["after_change"]) == {"same"} and same.attrs["n_changed"] == 0
    with pytest.raises(KeyError, match="shoe_size"):
        change_one_thing(model, dataset, NORTH, "shoe_size", 44)


def test_change_one_thing_moves():
    class Shift(Recommender):
        """Item scores fixed, except that South people like item 0 least."""

        name = "shift"

        def _fit(self, dataset, callback):
            self._south = dataset.profile_encoder.feature_names.index("region=South")

        def score_users(self, user_index):
            raise NotImplementedError

        def score_new_users(self, static, behaviour, history):
            scores = np.tile(np.arange(self.dataset.n_items, 0, -1, dtype=np.float32), (static.shape[0], 1))
            scores[static[:, self._south] > 0, 0] = 0.5
            return scores

    dataset, *_ = grouped_dataset(sizes=(30, 30))
    table = change_one_thing(Shift().fit(dataset), dataset, NORTH, "region", "South", k=dataset.n_items)
    first = dataset.item_ids[0]
    assert table.loc[0, "before_item_id"] == first and table.loc[0, "before_change"] == f"moved to #{dataset.n_items}"
    assert table.loc[0, "after_change"] == "up 1" and table.iloc[-1]["after_change"] == f"down {dataset.n_items - 1}"


@pytest.mark.parametrize("category, segment", [("Electronics", 2), ("Books", 1), ("Toys", 4)])
def test_new_item_reaches_the_planted_segment_first(category, segment):
    data, dataset = synthetic_dataset()
    assert [s for s, cats in enumerate(data.truth["segment_categories"]) if category in cats] == [segment]
    audience = new_item_audience(PopularityRecommender().fit(dataset), dataset, {"category": category},
                                 segments=data.truth["user_segment"])
    assert audience.attrs["method"] == "content similarity"
    assert audience.loc[0, "group"] == str(segment)
    assert audience.loc[0, "vs_average"] > 0 and audience.loc[0, "top_decile_lift"] > 1
    assert audience["mean_affinity"].is_monotonic_decreasing
    assert audience["n_users"].sum() == (np.diff(dataset.matrix.indptr) > 0).sum()


def test_new_item_audience_uses_the_model_when_it_can(grouped):
    dataset, *_ = grouped
    model = ScoresNewItems().fit(dataset)
    audience = new_item_audience(model, dataset, {"category": "Books"}, by_attribute="age", k_min=5)
    assert audience.attrs["method"] == "model" and audience.attrs["grouped_by"] == "age"
    assert audience.loc[0, "group"] == "45-54"                           # the oldest band scores highest


def test_new_item_audience_suppresses_small_groups(grouped):
    dataset, user_group, *_ = grouped
    labels = np.where(user_group == 0, "north", "south").astype(object)
    labels[:4] = "tiny"
    audience = new_item_audience(None, dataset, {"category": "Books"}, segments=labels)
    assert list(audience["group"]) == ["north", "south", "tiny"]          # masked rows go last
    tiny = audience.iloc[-1]
    assert tiny["privacy"] == "suppressed (<10)" and np.isnan(tiny["mean_affinity"]) and np.isnan(tiny["n_users"])
    with pytest.raises(ValueError, match="segments .* or by_attribute"):
        new_item_audience(None, dataset, {"category": "Books"})


@pytest.fixture(scope="module")
def fused():
    """A small fused model (one epoch: these tests check the plumbing, not the quality)."""
    from recommender.models.fused import FusedRecommender
    from recommender.synthetic import generate

    data = generate(n_users=150, n_items=50, n_interactions=1200, seed=2)
    dataset = Dataset.from_frames(data.interactions, data.users, data.items)
    model = FusedRecommender(dim=8, hidden=16, gate_hidden=8, max_epochs=1, validation_share=0, item_item=False,
                             device="cpu", seed=0).fit(dataset)
    return dataset, model


def test_simulate_with_the_fused_model(fused):
    """The real explainable model: contributions add up to its scores, the gate is reported."""
    dataset, model = fused
    profile = {field.name: field.default for field in profile_form_schema(dataset)}
    result = simulate(model, dataset, profile, liked=list(dataset.item_ids[:2]), k=5)
    assert result.explanation_exact is True, result.notice
    assert {"profile", "liked items", "popularity"} <= set(result.explanation_columns)
    np.testing.assert_allclose(result.explanation[result.explanation_columns].sum(axis=1),
                               result.recommendations["score"], rtol=1e-4, atol=1e-4)
    assert result.explanation_by_part is not None and "content" in result.explanation_by_part.columns
    assert result.gate is not None and sum(result.gate.values()) == pytest.approx(1.0, abs=1e-4)


def _nearest_segment(segments, vectors: np.ndarray) -> np.ndarray:
    """The segment of user vectors by the clustering's own rule, computed here from its parts."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    z = (unit - segments.embedding_mean) / segments.embedding_scale
    return np.argmin(((z[:, None, :] - segments.centers[None, :, :]) ** 2).sum(axis=2), axis=1)


def _people(dataset, n: int = 12):
    """Profiles and two liked items of training users with a history, as a form would give them."""
    users = dataset.users.reset_index(drop=True)
    for user in np.flatnonzero(np.diff(dataset.matrix.indptr) >= 2)[:n]:
        profile = {column: users.loc[user, column] for column in dataset.profile_encoder.columns}
        yield profile, list(dataset.item_ids[dataset.matrix[user].indices[:2]])


@pytest.mark.parametrize("representation, basis", [("scores", "model scores"), ("embeddings", "model vector")])
def test_simulate_places_the_person_by_the_fused_model(fused, representation, basis):
    """Segments of the fused model's scores (the default) place a new person by the model's scores for
    them; segments of its vectors by their own fused vector (profile and liked items). Neither by the
    nearest average profile."""
    dataset, model = fused
    segments = segment_users(model, dataset, k=4, seed=0, representation=representation)
    assert segments.kind == representation and segments.model is model
    placed, by_model, by_profile = [], [], []
    for profile, liked in _people(dataset):
        result = simulate(model, dataset, profile, liked=liked, k=3, segments=segments)
        placed.append(result.segment)
        assert result.segment_basis == basis
        frame = pd.DataFrame([{"user_id": "p", **profile}])
        static, behaviour, history = dataset.encode_new_users(frame, {"p": liked})
        if representation == "scores":
            coordinates = segments.score_coordinates(model.score_new_users(static, behaviour, history))
        else:
            coordinates = model.new_user_embeddings(static, behaviour, history)
        by_model.append(int(_nearest_segment(segments, coordinates)[0]))
        by_profile.append(int(segments.assign(static=static)[0]))
    assert placed == by_model
    assert placed != by_profile            # the two rules disagree here, so the test tells them apart


def test_new_item_audience_is_scored_by_the_fused_model(fused):
    dataset, model = fused
    item = {"category": dataset.items["category"].iloc[0], "tags": []}
    segments = segment_users(model, dataset, k=3, seed=0)
    audience = new_item_audience(model, dataset, item, segments=segments, k_min=5)
    assert audience.attrs["method"] == "model" and "content similarity" not in audience.attrs["notice"]
    row = {column: item.get(column) for column in dataset.item_encoder.columns}
    scores = model.score_new_items(dataset.item_encoder.transform(pd.DataFrame([row], dtype=object)))[:, 0]
    assert audience["n_users"].sum() == dataset.n_users                 # everyone is scored, cold users too
    for _, group in audience.iterrows():
        members = segments.labels == segments.names.index(group["group"])
        assert group["mean_affinity"] == pytest.approx(scores[members].mean(), rel=1e-5)
