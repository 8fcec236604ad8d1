"""The Segments page: segments of a trained model, the map, cards, comparison, privacy and exports."""
from __future__ import annotations

import json

import pytest

from recommender.evaluation import compare_models
from recommender.models.fused import FusedRecommender
from ui import state

SEGMENTS_PAGE = "pages/4_Segments.py"


def texts(at, *kinds: str) -> str:
    return "\n".join(element.value for kind in kinds for element in getattr(at, kind))


def chart(at, key: str):
    return next(element for element in at.get("plotly_chart") if element.key == key)


def cards(at) -> list[str]:
    """Titles of the segment cards ("**0. name**")."""
    return [m.value for m in at.markdown if m.value.startswith("**") and ". " in m.value[:8]
            and m.value.endswith("**") and "\n" not in m.value]


@pytest.fixture(scope="module")
def fused(small_dataset):
    return FusedRecommender(dim=8, hidden=16, gate_hidden=8, max_epochs=2, patience=1, device="cpu",
                            seed=0).fit(small_dataset)


def test_segments_of_the_fused_model_with_map_cards_comparison_privacy_and_export(open_page, small_dataset, fused):
    at = open_page(SEGMENTS_PAGE, dataset=small_dataset, models={"fused": fused})
    assert not at.exception, at.exception
    assert at.selectbox(key="seg_source").value == "fused"
    keys = {element.key for element in at.get("plotly_chart")}
    assert {"seg_silhouette", "seg_map", "seg_compare_chart"} <= keys
    auto_k = len(cards(at))
    assert auto_k >= 2
    assert "Run an evaluation" not in texts(at, "caption") and "run an evaluation" in texts(at, "caption")
    buttons = {button.key for button in at.get("download_button")}
    assert buttons == {"seg_download_assignments", "seg_download_summary"}

    # Colour the map by a profile attribute: the legend lists its values.
    at.selectbox(key="seg_colour").set_value("gender").run()
    assert not at.exception, at.exception
    spec = json.loads(chart(at, "seg_map").proto.spec)
    assert "gender" in spec["layout"]["title"]["text"]
    groups = set(small_dataset.users["gender"].dropna().astype(str))
    assert {trace["name"] for trace in spec["data"]} <= groups | {"(unknown)", "(other)"}
    hover = " ".join(text for trace in spec["data"] for text in trace["text"])
    assert "likes:" in hover and small_dataset.user_ids[0] in hover      # who the person is and what they like
    at.radio(key="seg_projection").set_value("tsne").run()
    assert not at.exception, at.exception
    assert chart(at, "seg_map")

    # By default a person is described by the model's scores; its user vectors are the alternative.
    assert at.radio(key="seg_representation").value == "scores"
    assert "model scores (what it would recommend to each person)" in texts(at, "caption")
    at.radio(key="seg_representation").set_value("embeddings").run()
    assert not at.exception, at.exception
    assert "model user embeddings" in texts(at, "caption")
    at.radio(key="seg_representation").set_value("scores").run()

    # Profile features join the representation.
    at.toggle(key="seg_profile").set_value(True).run()
    assert not at.exception, at.exception
    assert "plus the profile attributes" in texts(at, "caption")

    # Override k: one card per segment.
    at.toggle(key="seg_override_k").set_value(True).run()
    at.slider(key="seg_k").set_value(5).run()
    assert not at.exception, at.exception
    assert len(cards(at)) == 5
    assert "5 segments from" in texts(at, "caption")

    # With 5 segments of 200 people one has at most 40: a threshold of 45 hides it everywhere and says so.
    at.number_input(key="seg_k_min").set_value(45).run()
    assert not at.exception, at.exception
    notes = texts(at, "info")
    assert "fewer than 45 people are hidden" in notes
    assert len(cards(at)) < 5
    assert "Segments below the privacy threshold are left out" in texts(at, "caption")


def test_segment_quality_comes_from_the_evaluation(open_page, small_dataset, fused):
    evaluation = compare_models(small_dataset, {"popularity": "popularity"}, protocol="warm", k=10)
    at = open_page(SEGMENTS_PAGE, dataset=small_dataset, models={"fused": fused},
                   session={state.EVALUATION_KEY: evaluation})
    assert not at.exception, at.exception
    quality = [m.value for m in at.markdown if m.value.startswith("**Model quality (NDCG@10)**")]
    assert quality and all("Popularity" in text for text in quality)
    assert any(element.key == "seg_quality" for element in at.get("plotly_chart"))


def test_without_a_model_the_page_says_why_and_segments_the_profiles(open_page, small_dataset):
    at = open_page(SEGMENTS_PAGE, dataset=small_dataset)
    assert not at.exception, at.exception
    assert "No trained model learns a vector per person" in texts(at, "info")
    assert at.selectbox(key="seg_source").value == "__profile__"
    assert len(cards(at)) >= 2
    at.selectbox(key="seg_source").set_value("__interactions__").run()
    assert not at.exception, at.exception
    assert "interaction profile" in texts(at, "caption")


def test_a_model_trained_later_replaces_the_profile_only_choice(open_page, small_dataset, fused):
    at = open_page(SEGMENTS_PAGE, dataset=small_dataset)
    assert at.selectbox(key="seg_source").value == "__profile__"
    # The user trains a model on the Train page, then comes back: its segments are shown.
    at.session_state[state.MODELS_KEY] = {"fused": fused}
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="seg_source").value == "fused"
    # An explicit choice made while the model is there is kept.
    at.selectbox(key="seg_source").set_value("__interactions__").run()
    at.run()
    assert at.selectbox(key="seg_source").value == "__interactions__"
