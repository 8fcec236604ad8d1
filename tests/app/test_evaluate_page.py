"""The Evaluate page: runs in the background, comparison table, charts, breakdowns, all protocols.

The run is a ``recommender.training.EvaluationJob`` in the session; the tests wait on it and
rerun the page, as the page's polling fragment would.
"""
from __future__ import annotations

import json

import pytest

from recommender import Dataset
from recommender.evaluation import ComparisonResult
from recommender.models.fused import FusedRecommender
from recommender.synthetic import generate
from recommender.training import available_protocols
from ui import state

EVALUATE_PAGE = "pages/3_Evaluate.py"
JOB_KEY = "recolens_evaluation_job"
PATIENCE = 120
FAST_MODELS = ["popularity", "segment_popularity"]


def texts(at, *kinds: str) -> str:
    return "\n".join(element.value for kind in kinds for element in getattr(at, kind))


def run_and_wait(at, button: str):
    at.button(key=button).click().run()
    assert not at.exception
    job = at.session_state[JOB_KEY]
    assert job.wait(PATIENCE)
    return at.run()


def test_a_warm_run_shows_the_table_summary_charts_and_breakdown(open_page, small_dataset):
    at = open_page(EVALUATE_PAGE, dataset=small_dataset)
    assert not at.exception
    assert "not reused" in texts(at, "markdown")                       # why the trained models are refitted
    at.selectbox(key="eval_protocol").set_value("warm")
    at.multiselect(key="eval_models").set_value(FAST_MODELS)
    at = run_and_wait(at, "run_evaluation")
    assert not at.exception
    table = at.dataframe[0].value
    assert sorted(table["Model"]) == ["Popularity", "Segment popularity"]
    assert {"NDCG@10", "Coverage", "AvgPop", "Gini"} <= set(table.columns)
    reading = texts(at, "info")
    assert "On the warm protocol" in reading                           # the plain-language reading
    assert "Segment popularity" in reading and "segment_popularity" not in reading   # display names
    charts = {chart.key for chart in at.get("plotly_chart")}
    assert {"bar_warm_ndcg@10", "bar_warm_coverage", "breakdown_chart_warm"} <= charts
    result = at.session_state[state.EVALUATION_KEY]
    assert isinstance(result, ComparisonResult) and result.split.kind == "warm"
    assert [button.key for button in at.get("download_button")] == ["download_evaluation"]

    attribute = at.selectbox(key="breakdown_attribute_warm")
    assert attribute.options[0].startswith("activity level")
    attribute.set_value("gender").run()
    assert not at.exception
    chart = next(chart for chart in at.get("plotly_chart") if chart.key == "breakdown_chart_warm")
    assert "gender" in chart.proto.spec and "(n=" in chart.proto.spec   # groups carry their sizes

    # Each model keeps one colour in every chart; the best bar is labelled, not recoloured.
    by_model = json.loads(chart.proto.spec)["data"]
    colours = {trace["name"]: trace["marker"]["color"] for trace in by_model}
    assert len(set(colours.values())) == 2
    for key in ("bar_warm_ndcg@10", "bar_warm_coverage", "bar_warm_avg_popularity"):
        bar = json.loads(next(c for c in at.get("plotly_chart") if c.key == key).proto.spec)["data"][0]
        assert dict(zip(bar["x"], bar["marker"]["color"])) == colours
        assert sorted(bar["text"]) == ["", "best"]


def test_run_all_protocols_gives_one_table_with_the_protocol_as_a_column(open_page, small_dataset):
    at = open_page(EVALUATE_PAGE, dataset=small_dataset)
    at.multiselect(key="eval_models").set_value(FAST_MODELS)
    at = run_and_wait(at, "run_all_protocols")
    assert not at.exception
    table = at.dataframe[0].value
    protocols = available_protocols(small_dataset)
    assert len(table) == 2 * len(protocols)
    assert table["Protocol"].nunique() == len(protocols)
    details = at.selectbox(key="detail_protocol")
    details.set_value("cold_user").run()
    assert not at.exception
    assert "new users scored from their profile only" in texts(at, "info")


def test_trained_settings_are_reused_and_a_long_run_can_be_cancelled(open_page, small_dataset):
    trained = FusedRecommender(max_epochs=1000, patience=1000, dim=8, hidden=16, device="cpu")
    at = open_page(EVALUATE_PAGE, dataset=small_dataset, models={"fused": trained})
    assert "Same settings as the trained model(s): Fused" in texts(at, "caption")
    at.multiselect(key="eval_models").set_value(["fused"])
    at.button(key="run_evaluation").click().run()
    job = at.session_state[JOB_KEY]
    fresh = job.factories["fused"]()
    assert fresh is not trained and fresh.dataset is None               # refitted, never the session's fit
    assert (fresh.max_epochs, fresh.dim, fresh.hidden) == (1000, 8, 16)
    at.button(key="run_all_protocols").click().run()                      # a second run while one runs
    assert "already running" in texts(at, "warning")
    assert at.session_state[JOB_KEY] is job
    at.button(key="cancel_evaluation").click().run()
    assert job.wait(PATIENCE)
    at.run()
    assert not at.exception
    assert job.snapshot().status == "cancelled"
    assert "cancelled" in texts(at, "info").lower()
    assert state.EVALUATION_KEY not in at.session_state or at.session_state[state.EVALUATION_KEY] is None


@pytest.fixture(scope="module")
def timeless_dataset() -> Dataset:
    data = generate(n_users=120, n_items=60, n_interactions=1000, seed=5)
    return Dataset.from_frames(data.interactions.drop(columns=["timestamp"]), data.users, data.items,
                               name="No timestamps")


def test_the_temporal_protocol_is_offered_only_with_timestamps(open_page, small_dataset, timeless_dataset):
    at = open_page(EVALUATE_PAGE, dataset=timeless_dataset)
    assert not at.exception
    assert "temporal" not in at.selectbox(key="eval_protocol").options
    assert "needs timestamps" in texts(at, "caption")
