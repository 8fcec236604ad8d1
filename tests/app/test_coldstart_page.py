"""The Cold-start page: a new person's lists and their explanation, one change, a new item's audience.

A small fused model is trained once for the module; each test opens the page in a fresh
session (``open_page``) and drives it through its widgets. The expected lists come from the
library (``simulate``), so a test fails if the page shows anything else.
"""
from __future__ import annotations

import json

import pytest

from recommender import Dataset
from recommender.analysis.coldstart import profile_form_schema, simulate
from recommender.features import UNKNOWN
from recommender.models import PopularityRecommender
from recommender.models.fused import SOURCES, FusedRecommender
from recommender.synthetic import generate

PAGE = "pages/6_Cold_start.py"
VERSION = 1                      # dataset version open_page puts into the session
PERSON_KEY = "recolens_coldstart_person"


def fit_fused(dataset: Dataset) -> FusedRecommender:
    return FusedRecommender(dim=16, hidden=32, gate_hidden=8, max_epochs=2, patience=1, seed=0,
                            device="cpu").fit(dataset)


@pytest.fixture(scope="module")
def fused(small_dataset) -> FusedRecommender:
    return fit_fused(small_dataset)


def texts(at) -> str:
    elements = [*at.main.markdown, *at.main.caption, *at.main.info, *at.main.warning, *at.main.error]
    return "\n".join(element.value for element in elements)


def field_key(dataset: Dataset, column: str, prefix: str = "cs_field") -> str:
    names = [spec.name for spec in profile_form_schema(dataset)]
    return f"{prefix}_{VERSION}_{names.index(column)}"


def default_profile(dataset: Dataset) -> dict:
    return {spec.name: spec.default for spec in profile_form_schema(dataset)}


def table(at, key: str):
    """The table the page shows in the container keyed ``key``."""
    return at.main.get_by_key(key).dataframe[0].value


def chart_keys(at) -> set[str]:
    return {chart.key for chart in at.get("plotly_chart")}


def submit(at):
    at.button(key="cs_submit").click().run()
    assert not at.exception
    return at


def test_page_renders_the_form_from_the_profile_schema(open_page, small_dataset, fused):
    at = open_page(PAGE, dataset=small_dataset, models={"fused": fused})
    assert not at.exception
    assert "No fused model" not in texts(at)
    region = at.selectbox(key=field_key(small_dataset, "region"))
    assert region.options[0] == UNKNOWN                               # "not given" is offered
    assert set(small_dataset.users["region"].dropna()) <= set(region.options)
    assert at.slider(key=field_key(small_dataset, "age")).value == 31   # the median age
    assert "Fill in the form" in texts(at)


def test_submitting_a_profile_shows_titled_lists_and_the_explanation(open_page, small_dataset, fused):
    at = submit(open_page(PAGE, dataset=small_dataset, models={"fused": fused}))
    expected = simulate(fused, small_dataset, default_profile(small_dataset), k=10)
    shown = table(at, "cs_list_0")
    assert list(shown["Item"]) == list(expected.recommendations["title"])
    assert "Fused (profile + history + content)" in texts(at).replace("*", "").splitlines()
    assert [tab.label for tab in at.tabs][:2] == ["Popularity", "Segment popularity"]   # the comparisons, beside it
    for position in range(3):
        assert len(table(at, f"cs_list_{position}")) == 10
    details = table(at, "cs_details_0")
    assert {"category", "price", "tags", "Score"} <= set(details.columns)     # item features are shown
    assert "cs_explanation_chart" in chart_keys(at)
    chart = next(chart for chart in at.get("plotly_chart") if chart.key == "cs_explanation_chart")
    traces = json.loads(chart.proto.spec)["data"]
    assert [trace["name"] for trace in traces] == [*expected.explanation_columns, "score (sum)"]
    assert len(traces[0]["y"]) == 10                                  # one stacked bar per recommended item
    assert "add up exactly to the model's score" in texts(at)
    assert "lands in segment" in texts(at) and "the model trusts" in texts(at)
    assert "placed by the model's own scores for this person" in texts(at)
    numbers = table(at, "cs_explanation_table")
    parts = numbers[expected.explanation_columns].sum(axis=1)
    assert (parts - numbers["Score"]).abs().max() < 1e-3


def test_lists_give_the_category_room_beside_the_title(open_page, small_dataset, fused):
    """Three lists side by side cut the category off at 1,400 px: two columns with set widths keep both."""
    at = submit(open_page(PAGE, dataset=small_dataset, models={"fused": fused}))
    for key in ("cs_list_0", "cs_list_1"):
        element = at.main.get_by_key(key).dataframe[0]
        assert list(element.value.columns) == ["#", "Item", "category"]
        widths = {name: spec.get("width") for name, spec in json.loads(element.proto.columns).items()}
        assert widths["#"] < widths["category"] < widths["Item"]
        assert widths["#"] + widths["Item"] + widths["category"] <= 430     # half the main area at 1,400 px
    assert "also in Popularity" in texts(at)


def test_an_unknown_value_and_a_value_never_seen_work(open_page, small_dataset, fused):
    at = open_page(PAGE, dataset=small_dataset, models={"fused": fused})
    at.selectbox(key=field_key(small_dataset, "region")).set_value(UNKNOWN)
    at.checkbox(key=field_key(small_dataset, "age") + "_unknown").check()
    at = submit(at)
    assert "region: (unknown)" in texts(at).replace("\\", "")
    assert "age: (unknown)" in texts(at).replace("\\", "")
    assert len(table(at, "cs_list_0")) == 10

    # A value typed into the box (never seen in training) is encoded as unknown and said so.
    # (Set before the page's first run: AppTest cannot set a value outside a selectbox's options.)
    at = submit(open_page(PAGE, dataset=small_dataset, models={"fused": fused},
                          session={field_key(small_dataset, "region"): "Atlantis"}))
    assert at.session_state[PERSON_KEY]["profile"]["region"] == "Atlantis"
    assert "not seen in training" in texts(at)
    expected = simulate(fused, small_dataset, {**default_profile(small_dataset), "region": None}, k=10)
    assert list(table(at, "cs_list_0")["Item"]) == list(expected.recommendations["title"])


def test_liked_items_are_used_but_never_recommended(open_page, small_dataset, fused):
    profile = default_profile(small_dataset)
    before = simulate(fused, small_dataset, profile, k=10,
                      compare_models={"popularity": PopularityRecommender().fit(small_dataset)})
    liked = [*before.recommendations["item_id"][:2], before.comparisons["popularity"]["item_id"].iloc[0]]
    at = open_page(PAGE, dataset=small_dataset, models={"fused": fused})
    at.multiselect(key=f"cs_liked_{VERSION}").set_value(liked)
    at = submit(at)
    for position in range(3):
        shown = table(at, f"cs_details_{position}")
        assert len(shown) == 10
        assert not set(liked) & set(shown["Item id"])
    assert "the liked items" in texts(at)                            # the gate gives them weight
    assert "With no liked items" not in texts(at)


def test_change_one_thing_shows_before_and_after(open_page, small_dataset, fused):
    at = submit(open_page(PAGE, dataset=small_dataset, models={"fused": fused}))
    assert [button.key for button in at.get("download_button")] == ["cs_download"]   # the lists, as CSV
    names = [spec.name for spec in profile_form_schema(small_dataset)]
    at.selectbox(key=f"cs_change_attribute_{VERSION}").set_value(names.index("region")).run()
    at.selectbox(key=f"cs_change_value_{VERSION}_{names.index('region')}").set_value("North").run()
    assert not at.exception
    profile = default_profile(small_dataset)
    before = table(at, "cs_change_before")
    after = table(at, "cs_change_after")
    assert list(before["Item"]) == list(simulate(fused, small_dataset, profile, k=10).recommendations["title"])
    expected = simulate(fused, small_dataset, {**profile, "region": "North"}, k=10).recommendations["title"]
    assert list(after["Item"]) == list(expected)
    assert set(after["Change"]) <= {"same", "entered"} | {f"{d} {n}" for d in ("up", "down") for n in range(1, 10)}
    assert "Central → North" in texts(at)


def test_new_item_mode_shows_the_audience_and_hides_small_groups(open_page, small_dataset, fused):
    at = open_page(PAGE, dataset=small_dataset, models={"fused": fused})
    at.radio(key="cs_mode").set_value("A new item").run()
    assert not at.exception
    at.selectbox(key=f"cs_item_grouping_{VERSION}").set_value("region")
    at.button(key="cs_item_submit").click().run()
    assert not at.exception
    audience = table(at, "cs_audience_table")
    assert set(audience["Group"]) <= set(small_dataset.users["region"].dropna()) | {UNKNOWN}
    assert audience["People"].sum() == small_dataset.n_users            # the model scores everyone
    assert "cs_audience_chart" in chart_keys(at)
    assert "model's own score for the new item" in texts(at) and "content similarity" not in texts(at)

    sizes = small_dataset.users["region"].value_counts()
    threshold = int(sizes.sort_values().iloc[1]) + 1                 # at least two regions fall below it
    at.number_input(key=f"cs_item_k_min_{VERSION}").set_value(threshold)
    at.button(key="cs_item_submit").click().run()
    audience = table(at, "cs_audience_table")
    hidden = audience[audience["Privacy"] != ""]
    assert len(hidden) >= 2 and hidden["People"].isna().all()
    assert "hidden to protect privacy" in texts(at)


def test_without_a_fused_model_the_page_says_so_and_shows_the_baselines(open_page, small_dataset):
    at = open_page(PAGE, dataset=small_dataset, models={})
    assert "No fused model" in texts(at)
    assert "Train a fused model" in [link.label for link in at.main.get("page_link")]
    at = submit(at)
    names = texts(at).replace("*", "").splitlines()
    assert "Segment popularity" in names and "Popularity" in names
    assert len(table(at, "cs_list_0")) == 10 and len(table(at, "cs_list_1")) == 10
    assert "cs_explanation_chart" not in chart_keys(at)
    assert not at.exception


def test_without_a_fused_model_the_new_item_audience_says_it_is_content_similarity(open_page, small_dataset):
    at = open_page(PAGE, dataset=small_dataset, models={})
    at.radio(key="cs_mode").set_value("A new item").run()
    at.selectbox(key=f"cs_item_grouping_{VERSION}").set_value("region")
    at.button(key="cs_item_submit").click().run()
    assert not at.exception
    assert "content similarity, not a model score" in texts(at)
    assert "no model was given" in texts(at)
    assert table(at, "cs_audience_table")["People"].sum() < small_dataset.n_users   # people without history: out


def test_text_from_files_is_shown_as_text(open_page):
    data = generate(n_users=200, n_items=80, n_interactions=2000, seed=3)
    items = data.items.copy()
    items["title"] = "<script>alert(1)</script> " + items["title"].astype(str)
    users = data.users.copy()
    users["region"] = "<b>" + users["region"].astype(str) + "</b>"
    dataset = Dataset.from_frames(data.interactions, users, items, name="<img src=x onerror=alert(1)>")
    at = submit(open_page(PAGE, dataset=dataset, models={"fused": fit_fused(dataset)}))
    shown = texts(at)
    assert "\\<b\\>" in shown                                         # the region value, escaped
    assert "<b>" not in shown and "<script>" not in shown
    spec = next(chart for chart in at.get("plotly_chart") if chart.key == "cs_explanation_chart").proto.spec
    assert "<script>" not in spec and "&lt;script&gt;" in spec
    assert table(at, "cs_list_0")["Item"].str.startswith("<script>").all()   # tables hold the raw text


def test_the_segments_of_the_segments_page_are_reused(open_page, small_dataset, fused):
    segments_page = "pages/4_Segments.py"
    at = open_page(segments_page, dataset=small_dataset, models={"fused": fused})
    assert not at.exception
    at = submit(at.switch_page(PAGE).run())
    assert "segments from the Segments page" in texts(at)


def test_a_model_that_keeps_popularity_for_strangers_says_why(open_page, small_dataset, fused):
    # When validation showed that profiles do not beat popularity for new people, the fused
    # model ranks them by popularity alone; the page must not claim it goes by who they are.
    position = SOURCES.index("popularity")
    saved = fused._net.new_person_gate_offset.clone()
    try:
        fused._net.new_person_gate_offset[position] = 30.0
        at = submit(open_page(PAGE, dataset=small_dataset, models={"fused": fused}))
    finally:
        fused._net.new_person_gate_offset.copy_(saved)
    assert "the model trusts popularity 100 %" in texts(at)
    assert "it recommends what is popular" in texts(at)
    assert "goes by who the person is" not in texts(at)
    at = submit(open_page(PAGE, dataset=small_dataset, models={"fused": fused}))
    assert "goes by who the person is" in texts(at)
