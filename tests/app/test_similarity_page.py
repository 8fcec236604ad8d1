"""The Similarity page: the four heatmaps, the three item signals, and the explanation of a pair."""
from __future__ import annotations

import json

import numpy as np
import pytest

from recommender import Dataset
from recommender.models.fused import FusedRecommender
from recommender.synthetic import generate

SIMILARITY_PAGE = "pages/5_Similarity.py"
ITEM_IDS_KEY = "recolens_similarity_item_ids"


def texts(at, *kinds: str) -> str:
    return "\n".join(element.value for kind in kinds for element in getattr(at, kind))


def heatmap(at, key: str) -> dict:
    element = next(element for element in at.get("plotly_chart") if element.key == key)
    return json.loads(element.proto.spec)


def z_values(spec: dict) -> np.ndarray:
    z = spec["data"][0]["z"]
    if isinstance(z, dict):   # plotly's binary encoding of numeric arrays
        import base64

        shape = [int(n) for n in str(z["shape"]).split(",")]
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(shape)
    return np.array(z, dtype=float)


def shown_items(at) -> list[str]:
    """Ids of the items on the heatmap (the pair selectboxes' options; AppTest lists their labels)."""
    return at.session_state[ITEM_IDS_KEY]


@pytest.fixture(scope="module")
def fused(small_dataset):
    return FusedRecommender(dim=8, hidden=16, gate_hidden=8, max_epochs=2, patience=1, device="cpu",
                            seed=0).fit(small_dataset)


def test_item_heatmap_sources_and_the_pair_explanation(open_page, small_dataset, fused):
    at = open_page(SIMILARITY_PAGE, dataset=small_dataset, models={"fused": fused})
    assert not at.exception, at.exception
    assert at.radio(key="sim_source").value == "model"
    model_z = z_values(heatmap(at, "sim_item_heatmap"))
    assert model_z.shape == (30, 30)
    # The pair starts on the two most similar items shown, and is explained under every signal.
    a, b = at.selectbox(key="sim_pair_a").value, at.selectbox(key="sim_pair_b").value
    assert a != b
    assert {m.label for m in at.metric} >= {"People with A", "People with B", "People with both"}
    assert "Co-occurrence" in texts(at, "caption") and "Content features" in texts(at, "caption")
    assert sorted(at.dataframe[0].value["item_id"]) == sorted([a, b])

    at.radio(key="sim_source").set_value("cooccurrence").run()
    assert not at.exception, at.exception
    cooccurrence_z = z_values(heatmap(at, "sim_item_heatmap"))
    assert cooccurrence_z.shape == (30, 30) and not np.allclose(cooccurrence_z, model_z)
    at.radio(key="sim_source").set_value("content").run()
    assert not at.exception, at.exception
    # Choosing another pair explains that pair.
    other = next(item for item in shown_items(at) if item not in (a, b))
    at.selectbox(key="sim_pair_b").set_value(other).run()
    assert not at.exception, at.exception
    assert sorted(at.dataframe[0].value["item_id"]) == sorted([a, other])

    # One category: only its items.
    category = small_dataset.category_names[0]
    at.radio(key="sim_item_mode").set_value("category").run()
    at.selectbox(key="sim_category").set_value(category).run()
    assert not at.exception, at.exception
    shown = shown_items(at)
    assert at.selectbox(key="sim_pair_a").value in shown
    column = small_dataset.items["category"].astype(str).to_numpy()
    index = small_dataset.item_indices(shown)
    assert (column[index] == category).all()


def test_people_segment_and_attribute_heatmaps(open_page, small_dataset, fused):
    at = open_page(SIMILARITY_PAGE, dataset=small_dataset, models={"fused": fused})
    at.radio(key="sim_kind").set_value("users").run()
    assert not at.exception, at.exception
    assert z_values(heatmap(at, "sim_user_heatmap")).shape == (40, 40)
    assert "random sample of 40" in texts(at, "caption")

    at.radio(key="sim_kind").set_value("segments").run()
    assert not at.exception, at.exception
    assert "No segments yet" in texts(at, "info")
    at.button(key="sim_make_segments").click().run()
    assert not at.exception, at.exception
    spec = heatmap(at, "sim_segment_heatmap")
    assert len(spec["data"][0]["x"] if not isinstance(spec["data"][0]["x"], dict) else [0]) >= 1
    assert len(spec["layout"]["xaxis"]["ticktext"]) == len(small_dataset.category_names)

    # Now that segments exist, people can be compared by segment averages.
    at.radio(key="sim_kind").set_value("users").run()
    at.radio(key="sim_user_mode").set_value("segments").run()
    assert not at.exception, at.exception
    assert "average member of two segments" in texts(at, "caption")

    at.radio(key="sim_kind").set_value("attribute").run()
    at.selectbox(key="sim_attribute").set_value("region").run()
    assert not at.exception, at.exception
    spec = heatmap(at, "sim_attribute_heatmap")
    regions = set(small_dataset.users["region"].dropna().astype(str))
    assert set(spec["layout"]["yaxis"]["ticktext"]) <= regions | {"(unknown)", "(other)"}
    # A high threshold hides small cells and says so.
    at.number_input(key="sim_k_min").set_value(60).run()
    assert not at.exception, at.exception
    assert "hidden to protect privacy" in texts(at, "caption")


@pytest.fixture(scope="module")
def hostile_dataset():
    """The small shop with markup in the most popular item's title and in a profile value."""
    data = generate(n_users=200, n_items=80, n_interactions=2000, seed=7)
    items, users = data.items.copy(), data.users.copy()
    popular = data.interactions["item_id"].value_counts().index[0]
    items.loc[items["item_id"] == popular, "title"] = "<img src=x onerror=alert(1)>"
    users.loc[users.index[:60], "region"] = "<b>North</b>"
    return Dataset.from_frames(data.interactions, users, items, name="Hostile shop")


def test_without_a_model_the_page_uses_the_data_and_shows_file_text_as_text(open_page, hostile_dataset):
    at = open_page(SIMILARITY_PAGE, dataset=hostile_dataset)
    assert not at.exception, at.exception
    assert at.radio(key="sim_source").value == "cooccurrence"
    spec = json.dumps(heatmap(at, "sim_item_heatmap"))
    assert "<img" not in spec and "&lt;img src=x onerror=alert(1)&gt;" in spec
    at.radio(key="sim_source").set_value("model").run()
    assert not at.exception, at.exception
    assert "No trained model has item vectors" in texts(at, "warning")

    at.radio(key="sim_kind").set_value("attribute").run()
    at.selectbox(key="sim_attribute").set_value("region").run()
    assert not at.exception, at.exception
    spec = heatmap(at, "sim_attribute_heatmap")
    assert "&lt;b&gt;North&lt;/b&gt;" in spec["layout"]["yaxis"]["ticktext"]
    assert "<b>North" not in json.dumps(spec)
