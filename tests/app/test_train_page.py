"""The Train page: background training with progress and Cancel, bundle download and upload.

Training runs in a thread (``recommender.training.TrainingJob``); the tests wait on the job
object in the session (``job.wait``) and then rerun the page, as the page's own polling
fragment would.
"""
from __future__ import annotations

import pickle
import threading
import time

import pytest

from recommender import Dataset
from recommender.models import REGISTRY
from recommender.models.bundle import bundle_bytes
from recommender.synthetic import generate
from ui import state

TRAIN_PAGE = "pages/2_Train.py"
JOB_KEY = "recolens_training_job"
#: Safety net for waiting on a background job (not a speed claim).
PATIENCE = 120


def texts(at, *kinds: str) -> str:
    return "\n".join(element.value for kind in kinds for element in getattr(at, kind))


def session_models(at) -> dict:
    return dict(at.session_state[state.MODELS_KEY]) if state.MODELS_KEY in at.session_state else {}


def finish(at, job):
    """Wait for the background job, then rerun the page (what the polling fragment does)."""
    assert job.wait(PATIENCE)
    return at.run()


def quick_fused(at, epochs: int, early_stop: bool = True):
    """Small, fast fused settings in the Advanced expander."""
    at.number_input(key="fused_epochs").set_value(epochs)
    at.selectbox(key="fused_dim").set_value(16)
    at.checkbox(key="fused_early_stop").set_value(early_stop)
    return at


def test_the_page_renders_with_fused_preselected_and_explains_itself(open_page, small_dataset):
    at = open_page(TRAIN_PAGE, dataset=small_dataset)
    assert not at.exception
    assert at.checkbox(key="train_fused").value is True
    assert at.checkbox(key="train_ease").value is False
    captions = texts(at, "caption")
    assert "profile" in captions and "most popular items to everyone" in captions   # one sentence per model
    assert "processor" in captions or "GPU" in captions                              # the device in use
    assert at.number_input(key="fused_epochs").value == 80
    assert at.selectbox(key="fused_device").value == "auto"
    assert JOB_KEY not in at.session_state


def test_a_short_run_completes_and_the_models_join_the_session(open_page, small_dataset):
    at = quick_fused(open_page(TRAIN_PAGE, dataset=small_dataset), epochs=2)
    at.button(key="start_training").click().run()
    assert not at.exception
    job = at.session_state[JOB_KEY]
    at = finish(at, job)
    assert not at.exception
    models = session_models(at)
    assert set(models) == {"fused", "popularity"}
    assert models["fused"].max_epochs == 2 and models["fused"].dim == 16
    assert len(models["fused"].recommend([small_dataset.user_ids[0]], k=5)) == 5
    sidebar = texts(at.sidebar, "markdown")
    assert "Fused (profile + history + content)" in sidebar and "Popularity" in sidebar   # display names
    assert "- fused" not in sidebar                                  # not the internal registry name
    charts = {chart.key for chart in at.get("plotly_chart")}
    assert "curve_loss" in charts                                    # the loss curve
    # 200 users are too few to hold back validation users: the page says why there is no NDCG curve.
    assert "curve_ndcg" in charts or "No validation curve" in texts(at, "caption")
    downloads = {button.key for button in at.get("download_button")}
    assert downloads == {"download_fused", "download_popularity"}


def test_a_model_finished_in_the_background_reaches_any_page(open_page, small_dataset, monkeypatch):
    """Training started on Train; the person moves on before it ends: the next page gets the model."""
    gate = threading.Event()

    class GatedPopularity(REGISTRY["popularity"]):
        """Popularity that waits for the test before fitting (so the job is surely still running)."""

        def _fit(self, dataset, callback):
            gate.wait(PATIENCE)
            super()._fit(dataset, callback)

    monkeypatch.setitem(REGISTRY, "popularity", GatedPopularity)
    at = open_page(TRAIN_PAGE, dataset=small_dataset)
    at.checkbox(key="train_fused").uncheck()
    at.checkbox(key="train_popularity").check()
    at.button(key="start_training").click().run()
    job = at.session_state[JOB_KEY]
    at.switch_page("pages/3_Evaluate.py").run()      # the person leaves the Train page while it trains
    assert job.running and session_models(at) == {}
    progress = [element.proto.text for element in at.sidebar.get("progress")]
    assert progress and progress[0].startswith("Training in the background")    # the sidebar says it is running
    gate.set()
    assert job.wait(PATIENCE)
    at.run()                                         # any rerun of this page (a click, the sidebar's poll)
    assert not at.exception
    assert set(session_models(at)) == {"popularity"}
    assert session_models(at)["popularity"] is job.snapshot().fitted["popularity"]
    assert "Popularity" in texts(at.sidebar, "markdown")
    assert not at.sidebar.get("progress")
    assert "Popularity ready on every page." in texts(at, "success")
    at.run()
    assert "Training finished" not in texts(at, "success")       # announced once
    assert set(session_models(at)) == {"popularity"}


def test_a_diverging_model_is_stopped_with_a_message_naming_the_learning_rate(open_page, small_dataset,
                                                                             monkeypatch, fitted_popularity):
    """RELIABILITY 12 on the page: the fit diverges for real (a learning rate far above the form's limit)."""
    class Diverging(REGISTRY["fused"]):
        def __init__(self, **params):
            super().__init__(**{**params, "learning_rate": 1e12})

    monkeypatch.setitem(REGISTRY, "fused", Diverging)
    at = quick_fused(open_page(TRAIN_PAGE, dataset=small_dataset, models={"ease": fitted_popularity}), epochs=5)
    at.button(key="start_training").click().run()
    at = finish(at, at.session_state[JOB_KEY])
    assert not at.exception
    job = at.session_state[JOB_KEY]
    fused = next(model for model in job.snapshot().models if model.name == "fused")
    errors = texts(at, "error")
    assert "learning rate" in errors.lower() and "Training failed" in errors
    assert "Traceback" not in errors
    models = session_models(at)
    assert models["ease"] is fitted_popularity and "popularity" in models    # nothing else was lost
    assert ("fused" in models) == fused.usable                                # only usable weights are kept
    if fused.usable:
        assert len(models["fused"].recommend([small_dataset.user_ids[0]], k=3)) == 3


def wait_for(condition, what: str):
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_cancel_stops_a_long_run_and_keeps_the_model_and_a_second_click_is_refused(open_page, small_dataset):
    at = quick_fused(open_page(TRAIN_PAGE, dataset=small_dataset), epochs=1000, early_stop=False)
    at.button(key="start_training").click().run()
    job = at.session_state[JOB_KEY]
    assert job.running
    assert job.names == ["popularity", "fused"]                       # quick baselines first
    wait_for(lambda: "popularity" in job.snapshot().fitted, "popularity to finish")
    at.run()
    assert "popularity" in session_models(at) and job.running        # finished models arrive while others train
    at.button(key="start_training").click().run()                    # clicking Train again while it runs
    assert "already running" in texts(at, "warning")
    assert at.session_state[JOB_KEY] is job                          # the running job is untouched
    at.button(key="cancel_training").click().run()
    assert not at.exception
    assert job.cancel_requested
    at = finish(at, job)
    snap = job.snapshot()
    assert snap.status == "cancelled" and snap.models[0].epoch < 1000
    model = session_models(at)["fused"]
    assert model is snap.fitted["fused"]
    assert len(model.recommend([small_dataset.user_ids[1]], k=3)) == 3
    assert "cancelled" in texts(at, "info").lower()


class _Payload:
    """Unpickling this would create a file: proof that a pickle never runs."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).touch, (self.marker,))


@pytest.fixture
def fitted_popularity(small_dataset):
    return REGISTRY["popularity"]().fit(small_dataset)


def test_uploading_a_pickle_is_refused_and_nothing_changes(open_page, small_dataset, fitted_popularity, tmp_path):
    marker = tmp_path / "payload_ran"
    evil = pickle.dumps(_Payload(marker))
    at = open_page(TRAIN_PAGE, dataset=small_dataset, models={"popularity": fitted_popularity})
    at.file_uploader(key="upload_bundle").set_value(("model.recolens", evil, "application/octet-stream")).run()
    assert not at.exception
    errors = texts(at, "error")
    assert "pickle" in errors and "Nothing was changed" in errors
    assert not marker.exists()
    assert at.session_state[state.DATASET_KEY] is small_dataset
    assert session_models(at) == {"popularity": fitted_popularity}


def test_a_bundle_of_the_loaded_data_is_restored(open_page, small_dataset, fitted_popularity):
    data = bundle_bytes(fitted_popularity)
    at = open_page(TRAIN_PAGE, dataset=small_dataset)
    at.file_uploader(key="upload_bundle").set_value(("shop.recolens", data, "application/zip")).run()
    assert not at.exception
    restored = session_models(at)["popularity"]
    assert restored.recommend([small_dataset.user_ids[0]], k=5)["item_id"].tolist() == \
        fitted_popularity.recommend([small_dataset.user_ids[0]], k=5)["item_id"].tolist()
    assert at.session_state[state.DATASET_KEY] is small_dataset
    assert "Loaded Popularity from shop.recolens" in texts(at, "success")


@pytest.fixture(scope="module")
def other_bundle() -> bytes:
    data = generate(n_users=60, n_items=40, n_interactions=300, seed=3)
    other = Dataset.from_frames(data.interactions, data.users, data.items, name="Other shop")
    return bundle_bytes(REGISTRY["popularity"]().fit(other))


def test_a_bundle_of_other_data_can_be_declined(open_page, small_dataset, other_bundle):
    at = open_page(TRAIN_PAGE, dataset=small_dataset)
    at.file_uploader(key="upload_bundle").set_value(("other.recolens", other_bundle, "application/zip")).run()
    assert "trained on" in texts(at, "warning") and "Other shop" in texts(at, "warning")
    assert session_models(at) == {}                  # nothing loaded until the person decides
    at.button(key="bundle_keep").click().run()
    assert not at.exception
    assert at.session_state[state.DATASET_KEY] is small_dataset
    assert session_models(at) == {}
    assert "was not loaded" in texts(at, "info")


def test_a_bundle_of_other_data_can_switch_the_session_to_its_data(open_page, small_dataset, other_bundle,
                                                                    fitted_popularity):
    at = open_page(TRAIN_PAGE, dataset=small_dataset, models={"ease": fitted_popularity})
    at.file_uploader(key="upload_bundle").set_value(("other.recolens", other_bundle, "application/zip")).run()
    at.button(key="bundle_switch").click().run()
    assert not at.exception
    dataset = at.session_state[state.DATASET_KEY]
    assert dataset.name == "Other shop" and dataset.n_users == 60
    models = session_models(at)
    assert list(models) == ["popularity"]                             # the old data's models are gone
    assert models["popularity"].dataset is dataset
    assert "Other shop" in texts(at.sidebar, "markdown")


def test_loading_other_data_during_training_discards_its_models(open_page, small_dataset):
    at = quick_fused(open_page(TRAIN_PAGE, dataset=small_dataset), epochs=1000, early_stop=False)
    at.checkbox(key="train_popularity").uncheck()
    at.button(key="start_training").click().run()
    job = at.session_state[JOB_KEY]
    data = generate(n_users=60, n_items=40, n_interactions=300, seed=4)
    other = Dataset.from_frames(data.interactions, data.users, data.items, name="Loaded meanwhile")
    at.session_state[state.DATASET_KEY] = other                      # what the Data page does meanwhile
    at.session_state[state.VERSION_KEY] = 2
    at.session_state[state.MODELS_KEY] = {}
    at.run()
    assert job.cancel_requested                                       # no point finishing on the old data
    at = finish(at, job)
    assert not at.exception
    assert "discarded" in texts(at, "warning")
    assert session_models(at) == {}
    assert at.session_state[state.DATASET_KEY] is other
    assert JOB_KEY not in at.session_state
