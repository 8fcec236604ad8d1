"""Background training and evaluation jobs (``recommender.training``)."""
from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recommender import Dataset, ModelFitError
from recommender.models import Recommender
from recommender.models.fused import FusedRecommender
from recommender.synthetic import generate
from recommender.training import (CANCELLED, DONE, FAILED, RUNNING, EvaluationJob, TrainingJob, available_protocols,
                                  best_cells,
                                  describe_device, describe_model, evaluation_factories, expected_epochs, make_model,
                                  model_names, protocol_table)

#: Upper bound on any wait in these tests (a safety net against a hung thread, not a speed claim).
PATIENCE = 120


@pytest.fixture(scope="module")
def shop() -> Dataset:
    data = generate(n_users=200, n_items=80, n_interactions=2000, seed=7)
    return Dataset.from_frames(data.interactions, data.users, data.items, name="tiny shop")


class SteppedModel(Recommender):
    """A fake model whose epochs advance only when the test releases ``gate`` (deterministic timing).

    Not registered, so it never leaks into the model registry.
    """

    name = "stepped"

    def __init__(self, max_epochs: int = 4, gate: threading.Semaphore | None = None, fail_at: int | None = None,
                 error: type[Exception] = ModelFitError) -> None:
        self.max_epochs = max_epochs
        self.gate = gate
        self.fail_at = fail_at
        self.error = error
        self._scores: np.ndarray | None = None

    def _fit(self, dataset: Dataset, callback) -> None:
        scores = None
        for epoch in range(1, self.max_epochs + 1):
            if self.gate is not None and not self.gate.acquire(timeout=PATIENCE):
                raise RuntimeError("test gate never opened")
            if self.fail_at == epoch:
                message = ("the loss became NaN; the learning rate is probably too high"
                           if self.error is ModelFitError else "out of memory")
                raise self.error(message)
            scores = np.full(dataset.n_items, float(epoch), dtype=np.float32)
            if callback is not None and callback(epoch, {"train": 1.0 / epoch}, {"val_ndcg@10": epoch / 10}) is False:
                break
        self._scores = scores

    def score_users(self, user_index: np.ndarray) -> np.ndarray:
        if self._scores is None:
            raise RuntimeError("not fitted")
        return np.tile(self._scores, (len(user_index), 1))

    def score_new_users(self, static: np.ndarray, behaviour: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        return self.score_users(np.zeros(history.shape[0], dtype=np.int32))


def wait_until(condition, what: str):
    """Poll ``condition()`` until it returns something truthy (bounded by PATIENCE)."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


# ---------------------------------------------------------------------- training
def test_a_job_trains_baselines_and_reports_one_step_each(shop):
    job = TrainingJob(shop, {"popularity": make_model("popularity"), "ease": make_model("ease")})
    assert job.snapshot().status == "pending"
    job.start()
    assert job.wait(PATIENCE)
    snap = job.snapshot()
    assert snap.status == DONE and snap.finished and snap.progress == 1.0
    assert set(snap.fitted) == {"popularity", "ease"}
    assert [model.status for model in snap.models] == ["done", "done"]
    assert all(model.epoch == 1 and len(model.history) == 1 for model in snap.models)
    assert "Trained Popularity, EASE in" in snap.message          # display names, in the pages' order
    recommendations = snap.fitted["ease"].recommend([shop.user_ids[0]], k=5)
    assert len(recommendations) == 5


def test_a_fused_job_records_losses_and_validation_ndcg_per_epoch(shop):
    model = FusedRecommender(max_epochs=3, patience=10, dim=8, hidden=16, validation_share=0.2, device="cpu")
    job = TrainingJob(shop, {"fused": model}).start()
    assert job.wait(PATIENCE)
    snap = job.snapshot()
    assert snap.status == DONE, snap.message
    assert snap.n_epochs == 3 and snap.epoch == 3
    assert [record.epoch for record in snap.history] == [1, 2, 3]
    assert all(np.isfinite(record.losses["train"]) for record in snap.history)
    assert all(0 <= record.metrics["val_ndcg@10"] <= 1 for record in snap.history)
    frame = snap.history_frame()
    assert list(frame["epoch"]) == [1, 2, 3] and "val_ndcg@10" in frame
    assert snap.fitted["fused"] is model


def test_cancel_stops_fused_within_one_epoch_and_keeps_a_usable_model(shop):
    model = FusedRecommender(max_epochs=500, patience=500, dim=8, hidden=16, device="cpu")
    job = TrainingJob(shop, {"fused": model}).start()
    wait_until(lambda: job.snapshot().epoch >= 1, "the first epoch")
    epochs_when_cancelled = job.cancel()
    assert job.wait(PATIENCE)
    snap = job.snapshot()
    assert snap.status == CANCELLED
    assert epochs_when_cancelled >= 1
    assert snap.models[0].epoch <= epochs_when_cancelled + 1 < 500
    assert snap.models[0].status == "cancelled" and "best model so far is kept" in snap.models[0].message
    kept = snap.fitted["fused"]
    recommendations = kept.recommend([shop.user_ids[0]], k=5)
    assert len(recommendations) == 5 and recommendations["score"].notna().all()


def test_cancel_skips_queued_models_and_keeps_the_ones_finished(shop):
    gate = threading.Semaphore(0)
    job = TrainingJob(shop, [("stepped", SteppedModel(max_epochs=5, gate=gate)),
                             ("popularity", make_model("popularity"))]).start()
    gate.release()
    wait_until(lambda: job.snapshot().epoch == 1, "epoch 1")
    assert job.cancel() == 1
    gate.release()   # epoch 2 ends, its callback sees the cancel
    assert job.wait(PATIENCE)
    snap = job.snapshot()
    assert snap.status == CANCELLED
    stepped, popularity = snap.models
    assert (stepped.status, stepped.epoch, stepped.usable) == ("cancelled", 2, True)
    assert (popularity.status, popularity.usable) == ("skipped", False)
    assert list(snap.fitted) == ["stepped"]
    assert "Kept: Stepped." in snap.message


def test_snapshots_are_consistent_and_immutable_while_running(shop):
    gate = threading.Semaphore(0)
    job = TrainingJob(shop, [("stepped", SteppedModel(max_epochs=4, gate=gate)),
                             ("popularity", make_model("popularity"))]).start()
    snapshots = []
    for epoch in range(1, 4):
        gate.release()
        snap = wait_until(lambda e=epoch: (s := job.snapshot()).epoch == e and s, f"epoch {epoch}")
        snapshots.append(snap)
        assert snap.status == RUNNING and not snap.finished
        assert snap.current == "stepped" and snap.fitted == {}
        assert [record.epoch for record in snap.history] == list(range(1, epoch + 1))
        assert snap.n_epochs == 4
        assert snap.progress == pytest.approx((epoch / 4 + 0) / 2)
        assert [model.status for model in snap.models] == ["running", "queued"]
    gate.release()
    assert job.wait(PATIENCE)
    # Earlier snapshots did not change under the worker's feet.
    assert [len(snap.history) for snap in snapshots] == [1, 2, 3]
    assert [snap.elapsed for snap in snapshots] == sorted(snap.elapsed for snap in snapshots)
    assert job.snapshot().status == DONE and set(job.snapshot().fitted) == {"stepped", "popularity"}


def test_reading_snapshots_from_another_thread_never_sees_a_torn_state(shop):
    gate = threading.Semaphore(0)
    job = TrainingJob(shop, {"stepped": SteppedModel(max_epochs=30, gate=gate)}).start()
    torn = []

    def reader():
        while not job.snapshot().finished:
            snap = job.snapshot()
            model = snap.models[0]
            if model.epoch != len(model.history) and model.status == "running":
                torn.append(snap)

    thread = threading.Thread(target=reader)
    thread.start()
    for _ in range(30):
        gate.release()
    assert job.wait(PATIENCE)
    thread.join(PATIENCE)
    assert torn == []
    assert job.snapshot().models[0].epoch == 30


def test_a_diverging_fit_fails_with_the_message_and_no_model(shop):
    job = TrainingJob(shop, {"stepped": SteppedModel(max_epochs=5, fail_at=3),
                             "popularity": make_model("popularity")}).start()
    assert job.wait(PATIENCE)
    snap = job.snapshot()
    assert snap.status == FAILED
    assert "learning rate" in snap.message and snap.message.startswith("Stepped: ")
    stepped, popularity = snap.models
    assert (stepped.status, stepped.epoch, stepped.usable) == ("failed", 2, False)
    assert popularity.status == "done"       # one failure does not stop the others
    assert list(snap.fitted) == ["popularity"]


def test_an_unexpected_error_is_a_plain_message_and_the_traceback_is_logged(shop, caplog):
    with caplog.at_level(logging.ERROR, logger="recommender.training"):
        job = TrainingJob(shop, {"stepped": SteppedModel(fail_at=1, error=MemoryError)}).start()
        assert job.wait(PATIENCE)
    snap = job.snapshot()
    assert snap.status == FAILED
    assert snap.message == "Stepped could not be trained: out of memory"
    assert "Traceback" not in snap.message
    assert any(record.exc_info for record in caplog.records)


def test_invalid_settings_fail_with_the_models_own_message(shop):
    job = TrainingJob(shop, {"fused": FusedRecommender(learning_rate=-1.0, device="cpu")}).start()
    assert job.wait(PATIENCE)
    snap = job.snapshot()
    assert snap.status == FAILED
    assert "learning_rate must be a positive number" in snap.message


def test_a_job_runs_once_and_checks_its_arguments(shop):
    job = TrainingJob(shop, {"popularity": make_model("popularity")}).start()
    with pytest.raises(RuntimeError, match="already started"):
        job.start()
    assert job.wait(PATIENCE)
    with pytest.raises(ValueError, match="no models to train"):
        TrainingJob(shop, {})
    with pytest.raises(TypeError, match="not a Recommender"):
        TrainingJob(shop, {"x": object()})
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        make_model("nope")


def test_model_catalogue_and_descriptions():
    names = model_names()
    assert names[0] == "fused" and {"popularity", "ease", "als"} <= set(names)
    assert all(describe_model(name) for name in names)
    assert expected_epochs(FusedRecommender(max_epochs=7)) == 7
    assert expected_epochs(make_model("als", iterations=4)) == 4
    assert expected_epochs(make_model("popularity")) is None


def test_describe_device():
    kind, sentence = describe_device("cpu")
    assert kind == "cpu" and "processor" in sentence
    kind, sentence = describe_device("tpu")
    assert kind == "unavailable" and "unknown device" in sentence


# ---------------------------------------------------------------------- evaluation
def test_an_evaluation_job_runs_several_protocols_and_stacks_them(shop):
    factories = evaluation_factories(["popularity", "segment_popularity"])
    job = EvaluationJob(shop, factories, ["warm", "cold_user"], k=5).start()
    assert job.wait(PATIENCE)
    snap = job.snapshot()
    assert snap.status == DONE, snap.message
    assert list(snap.results) == ["warm", "cold_user"] and snap.progress == 1.0
    table = protocol_table(snap.results)
    assert list(table.columns[:3]) == ["protocol", "model", "test_users"]
    assert len(table) == 4 and set(table["protocol"]) == {"warm", "cold_user"}
    assert "ndcg@5" in table and table["fit_seconds"].notna().all()


def test_an_evaluation_reports_a_protocol_the_data_cannot_support(shop):
    no_times = Dataset.from_frames(generate(n_users=60, n_items=30, n_interactions=400, seed=1).interactions
                                   .drop(columns=["timestamp"]), name="no times")
    assert "temporal" not in available_protocols(no_times)
    assert "temporal" in available_protocols(shop)
    job = EvaluationJob(no_times, evaluation_factories(["popularity"]), ["temporal", "warm"], k=5).start()
    assert job.wait(PATIENCE)
    snap = job.snapshot()
    assert snap.status == DONE and list(snap.results) == ["warm"]
    assert "temporal" in snap.errors and "timestamp" in snap.errors["temporal"].lower()


def test_a_cancelled_evaluation_stops_at_the_next_report(shop):
    job = EvaluationJob(shop, evaluation_factories(["popularity"]), ["warm"], k=5)
    job.cancel()
    job.start()
    assert job.wait(PATIENCE)
    snap = job.snapshot()
    assert snap.status == CANCELLED and snap.results == {}


def test_evaluation_factories_build_fresh_models_with_the_given_settings():
    factories = evaluation_factories(["fused", "popularity"], {"fused": {"dim": 12, "seed": 3}})
    first, second = factories["fused"](), factories["fused"]()
    assert first is not second and first.dataset is None
    assert (first.dim, first.seed) == (12, 3)
    with pytest.raises(KeyError, match="unknown model"):
        evaluation_factories(["nope"])


def test_a_real_divergence_names_the_learning_rate_and_keeps_only_usable_weights(shop):
    model = FusedRecommender(learning_rate=1e12, max_epochs=10, dim=8, hidden=16, device="cpu")
    job = TrainingJob(shop, {"fused": model}).start()
    assert job.wait(PATIENCE)
    snap = job.snapshot()
    assert snap.status == FAILED
    assert "learning rate" in snap.message.lower()
    assert ("fused" in snap.fitted) == snap.models[0].usable
    if snap.models[0].usable:
        assert np.isfinite(model.score_users(np.arange(3))).all()


def test_best_cells_marks_the_best_value_per_column_and_per_group():
    table = pd.DataFrame({"protocol": ["warm", "warm", "cold_user", "cold_user"],
                          "model": ["a", "b", "a", "b"], "test_users": [50, 50, 20, 20],
                          "ndcg@10": [0.3, 0.2, 0.1, 0.4], "avg_popularity": [0.5, 0.2, 0.3, 0.3],
                          "gini": [0.9, np.nan, 0.8, 0.7], "fit_seconds": [1.0, 2.0, 3.0, 4.0]})
    mask = best_cells(table, group="protocol")
    assert mask["ndcg@10"].tolist() == [True, False, False, True]          # higher is better
    assert mask["avg_popularity"].tolist() == [False, True, True, True]    # lower is better; ties all count
    assert mask["gini"].tolist() == [True, False, False, True]             # NaN is never best
    assert not mask[["protocol", "model", "test_users", "fit_seconds"]].any().any()
    overall = best_cells(table)
    assert overall["ndcg@10"].tolist() == [False, False, False, True]
