"""What is special about FusedRecommender (the shared contract is in test_contract.py)."""
import copy
import threading

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from recommender import Dataset, ModelFitError
from recommender.analysis.coldstart import profile_form_schema
from recommender.models import PopularityRecommender, Recommender
from recommender.models import fused as fused_module
from recommender.models.device import available_devices, resolve_device
from recommender.models.fused import NEW_ITEM_SHIFT_GRID, SOURCES, FusedRecommender
from recommender.models.fused import calibration as fused_calibration
from recommender.models.fused import data as fused_data
from recommender.models.fused import model as fused_model
from recommender.models.fused.data import _Prepared
from recommender.models.fused.model import _Prefetch, _WeightAverage
from recommender.models.fused.network import _FusedNetwork
from recommender.synthetic import generate

#: Small and fast: the planted patterns below are learnt in well under a second.
FAST = {"dim": 16, "hidden": 32, "gate_hidden": 8, "max_epochs": 12, "patience": 4, "batch_size": 64}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny fits are dominated by thread start-up; one thread keeps them fast on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _planted(seed: int = 0) -> Dataset:
    """Gender decides the liked category; one cold item per category (never interacted with).

    Category B is more popular overall (more men, more interactions each), so popularity alone
    recommends B items to everyone, while women only like A.
    """
    rng = np.random.default_rng(seed)
    n_users, per_category = 240, 20
    genders = np.where(np.arange(n_users) % 3 == 0, "F", "M")
    users = pd.DataFrame({"user_id": [f"u{i:03d}" for i in range(n_users)], "gender": genders,
                          "region": rng.choice(["north", "south", "east"], size=n_users)})
    items = pd.DataFrame({
        "item_id": [f"{c}{i:02d}" for c in "AB" for i in range(per_category + 1)],
        "category": [c for c in "AB" for _ in range(per_category + 1)],
        "colour": rng.choice(["red", "blue", "green"], size=2 * (per_category + 1)),
    })
    rows = []
    for user, gender in zip(users["user_id"], genders):
        category = "A" if gender == "F" else "B"
        n = int(rng.integers(4, 9))
        for i in rng.choice(per_category, size=n, replace=False):  # item number 20 stays cold
            rows.append((user, f"{category}{i:02d}"))
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id"])
    return Dataset.from_frames(interactions, users, items, name="planted")


@pytest.fixture(scope="module")
def planted():
    return _planted()


@pytest.fixture(scope="module")
def planted_model(planted):
    return FusedRecommender(**FAST, seed=0).fit(planted)


def _people(planted: Dataset, genders) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
    profiles = pd.DataFrame({"user_id": [f"p{i}" for i in range(len(genders))], "gender": list(genders),
                             "region": ["north"] * len(genders)})
    return planted.encode_new_users(profiles)


def test_catalogue_vectors_are_kept_between_requests_until_a_weight_changes(planted, planted_model):
    net = planted_model._net
    static, behaviour, history = _people(planted, ["F", "M"])
    first = planted_model.score_new_users(static, behaviour, history)
    kept = net._item_parts_cache
    assert kept is not None and net.n_content
    np.testing.assert_array_equal(planted_model.score_new_users(static, behaviour, history), first)
    assert net._item_parts_cache is kept                      # reused, not recomputed
    net._item_parts_cache = None
    np.testing.assert_array_equal(planted_model.score_new_users(static, behaviour, history), first)
    assert copy.deepcopy(net)._item_parts_cache is None
    for weight in (net.item_embedding, net.content_out.weight):   # each change is seen: new vectors
        try:
            with torch.no_grad():
                weight.mul_(2.0)
            assert not np.allclose(planted_model.score_new_users(static, behaviour, history), first)
        finally:
            with torch.no_grad():
                weight.div_(2.0)                              # exact: the shared model is restored
    np.testing.assert_array_equal(planted_model.score_new_users(static, behaviour, history), first)


def test_finds_a_pattern_only_the_profile_reveals(planted, planted_model):
    static, behaviour, history = _people(planted, ["F", "M"] * 5)
    liked = np.array([[c == ("A" if g == "F" else "B") for c in planted.items["category"]]
                      for g in ["F", "M"] * 5])

    def precision(model):
        scores = model.score_new_users(static, behaviour, history)
        top = np.argsort(-scores, axis=1)[:, :10]
        return np.take_along_axis(liked, top, axis=1).mean()

    popularity = PopularityRecommender().fit(planted)
    assert precision(popularity) <= 0.6  # the same list for everyone: right for men only
    assert precision(planted_model) >= 0.9
    gate = planted_model.gate_weights(static, behaviour, history)
    assert (gate["history"] == 0).all() and (gate["item_item"] == 0).all()
    np.testing.assert_allclose(gate[list(SOURCES)].sum(axis=1), 1.0, rtol=1e-5)


def test_explanations_add_up_to_the_scores(planted, planted_model):
    static, behaviour, _ = _people(planted, ["F", "M", "F"])
    history = sp.csr_matrix(([1.0, 1.0, 1.0], ([1, 2, 2], [3, 0, 5])), shape=(3, planted.n_items))
    items = np.array([0, 5, 20, 21, 30, 41])
    frame = planted_model.explain(static, behaviour, history, items)
    assert len(frame) == 3 * len(items)
    assert frame["item_index"].tolist() == items.tolist() * 3
    scores = planted_model.score_new_users(static, behaviour, history)[:, items].ravel()
    parts = frame[list(SOURCES)].sum(axis=1)
    np.testing.assert_allclose(parts, frame["total"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(frame["total"], scores, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(frame[["collaborative", "content", "popularity"]].sum(axis=1), frame["total"],
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(frame["profile_collaborative"] + frame["profile_content"], frame["profile"],
                               atol=1e-9)
    # The person without history gets nothing from the history-based sources.
    first = frame[frame["person"] == "new_1"]
    assert (first[["history", "item_item", "content_similarity", "gate_history", "gate_item_item",
                   "gate_content_similarity"]] == 0).all().all()
    assert (frame.loc[frame["person"] != "new_1", "gate_history"] > 0).all()


def test_explanations_for_known_users_match_score_users(planted, planted_model):
    users = np.array([0, 1, 7])
    frame = planted_model.explain(user_index=users)
    scores = planted_model.score_users(users).ravel()
    np.testing.assert_allclose(frame["total"], scores, rtol=1e-4, atol=1e-4)
    assert frame["person"].unique().tolist() == list(planted.user_ids[users])
    with pytest.raises(ValueError, match="either user_index"):
        planted_model.explain(np.zeros((1, 1)), np.zeros((1, 1)), user_index=users)


def test_explain_new_users_labels_people_and_items(planted, planted_model):
    profiles = pd.DataFrame({"user_id": ["ann", "bob"], "gender": ["F", "M"]})
    frame = planted_model.explain_new_users(profiles, ["A00", "B00"], histories={"bob": ["B01"]})
    assert frame[["person", "item_id"]].values.tolist() == [["ann", "A00"], ["ann", "B00"], ["bob", "A00"],
                                                            ["bob", "B00"]]
    listed = planted_model.recommend_new_users(profiles, k=planted.n_items, histories={"bob": ["B01"]})
    expected = listed.set_index(["user_id", "item_id"])["score"]
    for person, item, total in frame[["person", "item_id", "total"]].itertuples(index=False):
        assert total == pytest.approx(expected[(person, item)], abs=1e-4)
    with pytest.raises(KeyError, match="NOPE"):
        planted_model.explain_new_users(profiles, ["NOPE"])


def test_known_users_are_scored_like_new_people_with_the_same_inputs(planted, planted_model):
    users = np.array([2, 3])
    as_new = planted_model.score_new_users(planted.user_features[users], planted.behaviour_features[users],
                                           planted.matrix[users])
    np.testing.assert_allclose(planted_model.score_users(users), as_new, rtol=1e-5, atol=1e-5)


def test_new_items_are_scored_from_content_and_can_be_recommended(planted, planted_model):
    cold = planted.item_indices(["A20", "B20"])
    assert (np.bincount(planted.item_index, minlength=planted.n_items)[cold] == 0).all()
    category_a = (planted.items["category"] == "A").to_numpy()
    # New people with a short history: each new item ranks among its own category's items,
    # above every item of the other category (content similarity to the history).
    profiles = pd.DataFrame({"user_id": ["f", "m"], "gender": ["F", "M"], "region": ["north"] * 2})
    histories = {"f": ["A01", "A02", "A03"], "m": ["B01", "B02", "B03"]}
    scores = planted_model.score_new_users(*planted.encode_new_users(profiles, histories))
    assert np.isfinite(scores).all()
    assert scores[0, cold[0]] > scores[0, ~category_a].max()
    assert scores[1, cold[1]] > scores[1, category_a].max()
    listed = planted_model.recommend_new_users(profiles.iloc[:1], k=planted.n_items // 2, histories=histories)
    assert "A20" in set(listed["item_id"])


def test_without_a_history_the_profile_moves_new_items_the_right_way(planted, planted_model):
    # Known weakness, measured: a new person *without* history gets new items ranked by the
    # profile tower's content part and content-predicted popularity only (the similar-people
    # source, which carries the gender pattern here, knows nothing about an item nobody picked).
    # On this data that does not reliably put A20 above every B item for a woman (2 of 8 seeds);
    # what holds is the direction: A20 gains on B20 for a woman compared with a man.
    cold = planted.item_indices(["A20", "B20"])
    scores = planted_model.score_new_users(*_people(planted, ["F", "M"]))
    assert np.isfinite(scores).all()
    woman, man = scores[0, cold], scores[1, cold]
    assert (woman[0] - woman[1]) > (man[0] - man[1])


def test_same_seed_same_model_on_cpu(planted):
    first = FusedRecommender(**FAST, seed=3, device="cpu").fit(planted)
    second = FusedRecommender(**FAST, seed=3, device="cpu").fit(planted)
    other = FusedRecommender(**FAST, seed=4, device="cpu").fit(planted)
    users = np.arange(20)
    np.testing.assert_array_equal(first.score_users(users), second.score_users(users))
    assert not np.array_equal(first.score_users(users), other.score_users(users))


def test_prefetch_yields_the_source_in_order_and_stops_at_its_end():
    prefetch = _Prefetch(iter(range(50)), depth=2)
    assert list(prefetch) == list(range(50))
    with pytest.raises(StopIteration):   # and again, without waiting for a thread that has ended
        next(prefetch)
    prefetch.close()


def test_prefetch_raises_the_sources_error_in_the_consumer():
    def source():
        yield 1
        raise ValueError("broken batch")

    prefetch = _Prefetch(source())
    assert next(prefetch) == 1
    for _ in range(2):
        with pytest.raises(ValueError, match="broken batch"):
            next(prefetch)
    prefetch.close()


def test_prefetch_close_stops_an_endless_source_that_is_ahead():
    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    prefetch = _Prefetch(endless(), depth=2)
    assert [next(prefetch) for _ in range(3)] == [0, 1, 2]
    prefetch.close()
    assert not prefetch._thread.is_alive()
    assert len(produced) <= 3 + 2 + 1          # at most ``depth`` ahead (plus the one being put)


def test_a_fit_leaves_no_batch_thread_running(planted):
    import threading

    FusedRecommender(**{**FAST, "max_epochs": 2}, seed=1).fit(planted)
    assert not [t for t in threading.enumerate() if t.name == "recolens-batches"]


def test_training_steps_run_on_one_thread_and_validation_on_torchs_own(planted, monkeypatch):
    """With ``threads=1`` the steps share the CPU with the batch thread; validation and the gate
    calibration, while that thread waits, get torch's thread count back, and the fit restores it."""
    seen: dict[str, set] = {"steps": set(), "validation": set(), "calibration": set()}
    for name, key in (("_train_epoch", "steps"), ("_validate", "validation"), ("_calibrate_gate", "calibration")):
        original = getattr(FusedRecommender, name)

        def recorded(self, *args, _original=original, _key=key):
            seen[_key].add(torch.get_num_threads())
            return _original(self, *args)

        monkeypatch.setattr(FusedRecommender, name, recorded)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        model = FusedRecommender(**{**FAST, "max_epochs": 2}, threads=1, seed=1, device="cpu").fit(planted)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    assert seen == {"steps": {1}, "validation": {3}, "calibration": {3}}
    assert model._idle_batch_threads is None


@pytest.mark.parametrize("device, torch_threads, n_items, expected", [
    ("cpu", 3, 100, 1),      # exact softmax: one thread
    ("cpu", 3, 101, 2),      # sampled softmax: one fewer than torch's count...
    ("cpu", 16, 101, fused_module.SAMPLED_SOFTMAX_THREADS),   # ...at most the cap
    ("cpu", 1, 101, 1),
    ("cuda", 3, 101, 3),     # a GPU leaves the CPU threads alone
])
def test_default_training_threads(device, torch_threads, n_items, expected):
    model = FusedRecommender(full_softmax_items=100)
    before = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        with model._thread_limit(torch.device(device), n_items):
            inside = torch.get_num_threads()
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert (inside, after) == (expected, torch_threads)


def test_fitting_leaves_global_random_state_alone(planted):
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    FusedRecommender(**{**FAST, "max_epochs": 2}, seed=1).fit(planted)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()


def test_callback_every_epoch_and_false_stops_keeping_a_usable_model(planted):
    calls = []

    def callback(epoch, losses, metrics):
        calls.append((epoch, dict(losses), dict(metrics)))
        return False if epoch == 3 else None

    model = FusedRecommender(**{**FAST, "max_epochs": 10, "patience": 10}, seed=0).fit(planted, callback=callback)
    assert [epoch for epoch, _, _ in calls] == [1, 2, 3]
    assert all(np.isfinite(losses["train"]) for _, losses, _ in calls)
    assert all("val_ndcg@10" in metrics for _, _, metrics in calls)
    assert len(model.training_history) == 3
    frame = model.recommend(list(planted.user_ids[:2]), k=5)
    assert len(frame) == 10 and np.isfinite(frame["score"]).all()


def test_callback_sees_every_epoch_until_early_stopping(planted):
    epochs = []
    model = FusedRecommender(**{**FAST, "max_epochs": 6}, seed=0).fit(
        planted, callback=lambda epoch, losses, metrics: epochs.append(epoch))
    assert epochs == list(range(1, len(model.training_history) + 1))
    assert 1 <= model._config["best_epoch"] <= len(epochs)


def _record_step_users(monkeypatch) -> list[np.ndarray]:
    """The users of each training step the training loop takes, in order (filled while fitting)."""
    batches: list[np.ndarray] = []
    original = _Prefetch.__next__

    def recording(self):
        step = original(self)
        batches.append(np.asarray(step.users).copy())
        return step

    monkeypatch.setattr(_Prefetch, "__next__", recording)
    return batches


def test_epoch_steps_cap_an_epoch_and_the_next_epoch_continues_the_pass(planted, monkeypatch):
    """Large data is validated (and can stop or be cancelled) every ``epoch_steps`` steps; the
    passes over the training users stay whole shuffled passes across epoch boundaries."""
    batches = _record_step_users(monkeypatch)
    steps_at_epoch_end = []
    model = FusedRecommender(**{**FAST, "max_epochs": 5, "patience": 10, "batch_size": 32}, epoch_steps=2, seed=0)
    model.fit(planted, callback=lambda epoch, losses, metrics: steps_at_epoch_end.append(len(batches)))
    assert steps_at_epoch_end == [2, 4, 6, 8, 10]
    assert len(model.training_history) == 5
    # 10 steps of 32 people: the first pass (every training user once) runs on into the second.
    users = np.concatenate(batches)
    pass_length = len(np.unique(users))            # every training user, once
    assert 0 < pass_length < len(users)
    first_pass = users[:pass_length]
    assert len(np.unique(first_pass)) == pass_length
    assert set(users[pass_length:]) <= set(first_pass)


def test_an_epoch_of_small_data_is_min_epoch_steps_steps_across_passes(planted, monkeypatch):
    """On small data an epoch is ``min_epoch_steps`` steps, more than one pass (the passes stay
    whole shuffled passes across epochs), the weight average spans it, and ``epoch_steps`` still
    caps it."""
    batches = _record_step_users(monkeypatch)
    spans = []
    original_average = _WeightAverage.__init__

    def recording_average(self, params, span):
        spans.append(span)
        original_average(self, params, span)

    monkeypatch.setattr(_WeightAverage, "__init__", recording_average)
    ends = []
    settings = {**FAST, "max_epochs": 3, "patience": 10, "batch_size": 64}
    FusedRecommender(**settings, min_epoch_steps=10, seed=0).fit(
        planted, callback=lambda epoch, losses, metrics: ends.append(len(batches)))
    assert ends == [10, 20, 30] and spans == [10]
    users = np.concatenate(batches)
    pass_length = len(np.unique(users))                 # every training user once: 4 steps of 64
    assert pass_length <= 4 * 64 < 10 * 64
    for start in range(0, len(users) - pass_length + 1, pass_length):
        assert len(np.unique(users[start:start + pass_length])) == pass_length
    batches.clear(), ends.clear(), spans.clear()
    FusedRecommender(**settings, min_epoch_steps=10, epoch_steps=3, seed=0).fit(
        planted, callback=lambda epoch, losses, metrics: ends.append(len(batches)))
    assert ends == [3, 6, 9] and spans == [3]
    with pytest.raises(ValueError, match="min_epoch_steps"):
        FusedRecommender(min_epoch_steps=0).fit(planted)


def test_validation_keeps_the_fixed_sources_without_changing_a_metric(planted, monkeypatch):
    """Keeping the validation people's fixed-source scores between epochs (and for the gate
    calibration) is exact: with the cache switched off, the same seed gives bit-identical
    validation histories, calibrated offsets and scores."""
    calls = {"main thread": 0}          # the batch thread computes the training steps' own
    original = _FusedNetwork.fixed_scores

    def counted(self, *args, **kwargs):
        calls["main thread"] += threading.current_thread() is threading.main_thread()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(_FusedNetwork, "fixed_scores", counted)
    # On the CPU, where a seeded fit is bit-for-bit reproducible (a GPU's atomic additions are not).
    kept = FusedRecommender(**{**FAST, "max_epochs": 4, "warmup_epochs": 0}, seed=5, device="cpu").fit(planted)
    kept_calls, calls["main thread"] = calls["main thread"], 0
    monkeypatch.setattr(fused_model, "VALIDATION_CACHE_FLOATS", 0)
    recomputed = FusedRecommender(**{**FAST, "max_epochs": 4, "warmup_epochs": 0}, seed=5,
                                  device="cpu").fit(planted)
    # Three validation sets, each one chunk: recomputed in each of the three later epochs, and
    # once more by the gate calibration.
    assert calls["main thread"] - kept_calls == 3 * 3 + 3
    assert len(kept.training_history) == 4
    for a, b in zip(kept.training_history, recomputed.training_history):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    assert kept._config == recomputed._config
    users = np.arange(planted.n_users)
    np.testing.assert_array_equal(kept.score_users(users), recomputed.score_users(users))


def test_the_calibration_reads_kept_scores_across_uneven_chunks(planted, monkeypatch):
    """Validation keeps its scores per SCORE_BATCH people and the calibration reads them in batches of
    CALIBRATION_BATCH; with sizes that do not divide each other the result is still that without the cache."""
    monkeypatch.setattr(fused_model, "SCORE_BATCH", 5)
    monkeypatch.setattr(fused_calibration, "SCORE_BATCH", 5)
    monkeypatch.setattr(fused_calibration, "CALIBRATION_BATCH", 3)
    settings = {**FAST, "max_epochs": 3, "warmup_epochs": 0}
    kept = FusedRecommender(**settings, seed=5).fit(planted)
    monkeypatch.setattr(fused_model, "VALIDATION_CACHE_FLOATS", 0)
    recomputed = FusedRecommender(**settings, seed=5).fit(planted)
    assert kept._config == recomputed._config
    users = np.arange(planted.n_users)
    np.testing.assert_array_equal(kept.score_users(users), recomputed.score_users(users))


def test_calibration_batches_hold_at_most_score_chunk_floats_of_stacked_sources(planted, monkeypatch):
    """The calibration stacks every source's scores of the whole catalogue per person: large catalogues
    take fewer people at once (the 10M fit's memory peak), with the same choices."""
    settings = {**FAST, "max_epochs": 3, "warmup_epochs": 0}
    whole = FusedRecommender(**settings, seed=5).fit(planted)
    calls: list[int] = []
    during: list[bool] = []
    candidates, source_scores = FusedRecommender._calibration_candidates, _FusedNetwork.source_scores

    def calibrating(self, *args, **kwargs):
        during.append(True)
        try:
            return candidates(self, *args, **kwargs)
        finally:
            during.pop()

    def recorded(net, *args, **kwargs):
        if during:
            calls.append(len(args[0]))
        return source_scores(net, *args, **kwargs)

    monkeypatch.setattr(FusedRecommender, "_calibration_candidates", calibrating)
    monkeypatch.setattr(_FusedNetwork, "source_scores", recorded)
    monkeypatch.setattr(fused_model, "SCORE_CHUNK_FLOATS", 4 * planted.n_items * len(SOURCES) + 1)
    bounded = FusedRecommender(**settings, seed=5).fit(planted)
    assert max(calls) == 4
    assert bounded._config == whole._config


def test_scoring_chunks_hold_at_most_score_chunk_floats(planted, planted_model, monkeypatch):
    """Large catalogues are scored a few people at a time (every source is computed for a whole chunk)."""
    model, users = planted_model, np.arange(planted.n_users)
    whole = model.score_users(users)
    sizes: list[int] = []
    logits = _FusedNetwork.logits
    monkeypatch.setattr(_FusedNetwork, "logits", lambda net, *a, **k: sizes.append(len(a[0])) or logits(net, *a, **k))
    monkeypatch.setattr(fused_model, "SCORE_CHUNK_FLOATS", 7 * model._net.n_items + 3)
    chunked = model.score_users(users)
    assert max(sizes) == 7 and sum(sizes) == planted.n_users
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def test_validation_ndcg_chunk_by_chunk_equals_the_whole_score_matrix(planted, monkeypatch):
    """Validation never holds every validation person's catalogue scores at once, and loses nothing by it."""
    monkeypatch.setattr(fused_model, "VALIDATION_CACHE_FLOATS", 0)   # no kept scores: bounded chunks
    monkeypatch.setattr(fused_model, "SCORE_CHUNK_FLOATS", 7 * planted.n_items + 3)
    pairs, chunks = [], []
    validate, score_chunks = FusedRecommender._validate, FusedRecommender._score_chunks

    def counted(self, *args, **kwargs):
        for start, stop, scores in score_chunks(self, *args, **kwargs):
            chunks.append(stop - start)
            yield start, stop, scores

    def checked(self, prepared):
        metrics = validate(self, prepared)
        for kind, entry in prepared.validation.items():
            whole = self._score_arrays(prepared.static[entry.users], entry.behaviour, entry.history)
            pairs.append((metrics[f"val_ndcg@10_{kind}"], float(np.mean(fused_data._ndcg(
                whole, entry.history, entry.relevant)))))
        return metrics

    monkeypatch.setattr(FusedRecommender, "_score_chunks", counted)
    monkeypatch.setattr(FusedRecommender, "_validate", checked)
    FusedRecommender(**{**FAST, "max_epochs": 2}, warmup_epochs=0, seed=0).fit(planted)
    assert max(chunks) == 7 and chunks.count(7) > len(pairs)   # several chunks per kind of people
    assert len(pairs) >= 4 and any(value > 0 for value, _ in pairs)
    for chunked, whole in pairs:
        assert chunked == pytest.approx(whole, abs=1e-12)


def test_epoch_steps_of_a_pass_or_more_train_exactly_like_full_passes(planted):
    users = np.arange(30)
    full = FusedRecommender(**FAST, epoch_steps=None, seed=2).fit(planted)
    capped = FusedRecommender(**FAST, epoch_steps=1000, seed=2).fit(planted)
    np.testing.assert_array_equal(full.score_users(users), capped.score_users(users))
    assert len(full.training_history) == len(capped.training_history)


@pytest.mark.parametrize("warmup, best, epochs", [(2, 4, 6), (0, 1, 3)])
def test_warm_up_epochs_are_not_candidates_for_the_best_model(planted, monkeypatch, warmup, best, epochs):
    # A lucky validation score just after initialisation must not end the fit before the towers learn.
    values = iter([0.9, 0.8, 0.1, 0.2, 0.15, 0.12, 0.11, 0.1])
    monkeypatch.setattr(FusedRecommender, "_validate", lambda self, prepared: {"val_ndcg@10": next(values)})
    model = FusedRecommender(**{**FAST, "max_epochs": 8, "patience": 2}, warmup_epochs=warmup, seed=0).fit(planted)
    assert model._config["best_epoch"] == best
    assert len(model.training_history) == epochs


def test_a_fit_shorter_than_the_warm_up_keeps_its_last_epoch(planted):
    model = FusedRecommender(**{**FAST, "max_epochs": 1}, warmup_epochs=2, seed=0).fit(planted)
    assert model._config["best_epoch"] == 1
    assert np.isfinite(model.score_users(np.arange(5))).all()


def test_a_huge_learning_rate_raises_model_fit_error_naming_it(planted):
    model = FusedRecommender(**FAST, learning_rate=1e6, seed=0)
    with pytest.raises(ModelFitError, match="learning rate"):
        model.fit(planted)


@pytest.mark.parametrize("weight_average", [True, False])
def test_nan_after_a_good_epoch_keeps_the_last_good_weights(planted, monkeypatch, weight_average):
    snapshots = {}
    original = _FusedNetwork.source_scores
    validate = FusedRecommender._validate

    def poisoned(self, *args, **kwargs):
        gate, scores = original(self, *args, **kwargs)
        if self.training and snapshots:
            scores = {name: value * float("nan") for name, value in scores.items()}
        return gate, scores

    def snapshot(self, prepared):
        # The model validated (and kept if best): the averaged weights, or the trained ones.
        metrics = validate(self, prepared)
        snapshots[len(snapshots) + 1] = model.score_users(np.arange(5))
        return metrics

    monkeypatch.setattr(_FusedNetwork, "source_scores", poisoned)
    monkeypatch.setattr(FusedRecommender, "_validate", snapshot)
    model = FusedRecommender(**FAST, seed=0, weight_average=weight_average)
    with pytest.raises(ModelFitError, match="epoch 2.*learning rate.*epoch 1"):
        model.fit(planted)
    monkeypatch.setattr(_FusedNetwork, "source_scores", original)
    np.testing.assert_array_equal(model.score_users(np.arange(5)), snapshots[1])


def test_nan_in_the_first_epoch_leaves_the_model_unfitted(planted, monkeypatch):
    original = _FusedNetwork.source_scores

    def poisoned(self, *args, **kwargs):
        gate, scores = original(self, *args, **kwargs)
        return gate, {name: value * float("inf") for name, value in scores.items()}

    monkeypatch.setattr(_FusedNetwork, "source_scores", poisoned)
    model = FusedRecommender(**FAST, seed=0)
    with pytest.raises(ModelFitError, match="learning rate"):
        model.fit(planted)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.score_users(np.arange(2))


def test_save_and_load_give_identical_scores_and_explanations(planted, planted_model, tmp_path):
    loaded = Recommender.load(planted_model.save(tmp_path / "fused.recolens"))
    assert isinstance(loaded, FusedRecommender)
    users = np.arange(10)
    np.testing.assert_array_equal(loaded.score_users(users), planted_model.score_users(users))
    static, behaviour, history = _people(planted, ["F"])
    pd.testing.assert_frame_equal(loaded.explain(static, behaviour, history, [0, 1]),
                                  planted_model.explain(static, behaviour, history, [0, 1]))
    np.testing.assert_array_equal(loaded.item_embeddings(), planted_model.item_embeddings())


def test_weights_of_other_data_are_rejected(planted, planted_model):
    config, arrays = planted_model._get_state()
    model = FusedRecommender(**FAST)
    model.dataset = planted
    with pytest.raises(ValueError, match="n_items"):
        model._set_state({**config, "n_items": config["n_items"] + 1}, arrays)
    name = "net.item_embedding"
    with pytest.raises(ValueError, match="item_embedding"):
        model._set_state(config, {**arrays, name: arrays[name][:, :-1]})


def test_gpu_weights_are_moved_to_the_cpu_before_saving(planted_model):
    _, arrays = planted_model._get_state()
    assert all(isinstance(value, np.ndarray) for value in arrays.values())


def test_embeddings_and_similar_items(planted, planted_model):
    items = planted_model.item_embeddings()
    users = planted_model.user_embeddings()
    assert items.shape == (planted.n_items, FAST["dim"]) and users.shape == (planted.n_users, FAST["dim"])
    similar = planted_model.similar_items("A00", k=5)
    assert similar["similar_item_id"].str.startswith("A").mean() >= 0.8


def test_explicit_ratings_fit(planted):
    interactions = pd.DataFrame({"user_id": planted.user_ids[planted.user_index],
                                 "item_id": planted.item_ids[planted.item_index],
                                 "rating": np.array([2.0, 4.0, 5.0])[np.arange(planted.n_interactions) % 3]})
    rated = Dataset.from_frames(interactions, columns={"rating": "rating"})
    model = FusedRecommender(**FAST, seed=0).fit(rated)
    assert model._config["positive_threshold"] == pytest.approx(3.5)
    assert np.isfinite(model.score_users(np.arange(5))).all()


@pytest.mark.parametrize("settings, message", [
    ({"dim": 0}, "dim"), ({"learning_rate": -1.0}, "learning_rate"), ({"cold_rate": 0.7, "few_shot_rate": 0.5},
                                                                       "cold_rate"),
    ({"weight_average": "yes"}, "weight_average"),
])
def test_bad_settings_are_rejected(planted, settings, message):
    with pytest.raises(ValueError, match=message):
        FusedRecommender(**settings).fit(planted)


def test_the_weight_average_is_an_exponential_moving_average_swapped_in_and_back():
    layer = torch.nn.Linear(3, 2)
    frozen = torch.nn.Parameter(torch.ones(2), requires_grad=False)     # not averaged
    average = _WeightAverage([layer.weight, layer.bias, frozen], span=3)   # weight 2 / (3 + 1) = 0.5
    expected = [layer.weight.detach().clone(), layer.bias.detach().clone()]
    for step in range(4):
        with torch.no_grad():
            layer.weight.add_(float(step + 1))
            layer.bias.mul_(-2.0)
        average.update()
        expected = [0.5 * e + 0.5 * p.detach() for e, p in zip(expected, (layer.weight, layer.bias))]
    trained = [layer.weight.detach().clone(), layer.bias.detach().clone()]
    with pytest.raises(RuntimeError, match="inside"):
        with average.applied():
            torch.testing.assert_close(layer.weight.detach(), expected[0])
            torch.testing.assert_close(layer.bias.detach(), expected[1])
            raise RuntimeError("inside")
    assert torch.equal(layer.weight.detach(), trained[0]) and torch.equal(layer.bias.detach(), trained[1])
    assert len(average.params) == 2


def test_the_kept_model_is_the_weight_average(planted, monkeypatch):
    """Validation and the kept best model use the averaged weights, not the last step's."""
    validated = []
    original = FusedRecommender._validate

    def recording(self, prepared):
        validated.append({name: p.detach().clone() for name, p in self._net.named_parameters()})
        return original(self, prepared)

    monkeypatch.setattr(FusedRecommender, "_validate", recording)
    model = FusedRecommender(**{**FAST, "max_epochs": 3, "patience": 5}, warmup_epochs=0, seed=1).fit(planted)
    best = validated[model._config["best_epoch"] - 1]
    for name, kept in model._net.named_parameters():
        if name != "cold_item_gate_offset":      # moved by the calibration after training
            torch.testing.assert_close(kept.detach(), best[name], rtol=0, atol=0)
    # ...and those were not the trained weights: without the average, the same seed ends elsewhere.
    plain = FusedRecommender(**{**FAST, "max_epochs": 3, "patience": 5}, warmup_epochs=0, seed=1,
                             weight_average=False).fit(planted)
    assert not np.allclose(model.score_users(np.arange(10)), plain.score_users(np.arange(10)))


@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
def test_runs_on_each_available_device(planted, device):
    if device not in available_devices():
        pytest.skip(f"no {device} here")
    model = FusedRecommender(**{**FAST, "max_epochs": 2}, device=device).fit(planted)
    scores = model.score_users(np.arange(4))
    assert isinstance(scores, np.ndarray) and scores.dtype == np.float32 and np.isfinite(scores).all()
    static, behaviour, history = _people(planted, ["F"])
    assert np.isfinite(model.score_new_users(static, behaviour, history)).all()


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            resolve_device("cuda:0")


def test_new_user_embeddings_of_training_users_reproduce_user_embeddings(planted, planted_model):
    users = np.array([0, 1, 5, 17])
    vectors = planted_model.new_user_embeddings(planted.user_features[users], planted.behaviour_features[users],
                                                planted.matrix[users])
    assert vectors.shape == (4, FAST["dim"]) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, planted_model.user_embeddings()[users], rtol=1e-5, atol=1e-6)
    static, behaviour, history = _people(planted, ["F", "M"])
    without_history = planted_model.new_user_embeddings(static, behaviour, history)
    assert not np.allclose(without_history[0], without_history[1])  # the profile alone places them apart
    with pytest.raises(ValueError, match="encode_new_users"):
        planted_model.new_user_embeddings(static[:, :-1], behaviour, history)


def test_score_new_items_matches_how_the_catalogue_scores_an_item_without_interactions(planted, planted_model):
    cold = planted.item_indices(["A20", "B20"])  # in the catalogue, never interacted with
    scores = planted_model.score_new_items(planted.item_features[cold])
    assert scores.shape == (planted.n_users, 2) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, planted_model.score_users(np.arange(planted.n_users))[:, cold],
                               rtol=1e-4, atol=1e-4)


@pytest.fixture
def shifted(planted, planted_model):
    """The planted model with its new-item shift set to -1.5 (restored afterwards)."""
    net = planted_model._net
    before = net.new_item_shift.clone()
    net.new_item_shift.fill_(-1.5)
    planted_model._new_item_cache = None
    yield planted_model
    net.new_item_shift.copy_(before)
    planted_model._new_item_cache = None


def test_the_new_item_shift_moves_items_without_interactions_only(planted, planted_model):
    users = np.arange(planted.n_users)
    cold = planted.item_indices(["A20", "B20"])
    warm = np.setdiff1d(np.arange(planted.n_items), cold)
    net = planted_model._net
    before = net.new_item_shift.clone()
    base = planted_model.score_users(users)
    try:
        net.new_item_shift.copy_(before - 1.5)
        moved = planted_model.score_users(users)
    finally:
        net.new_item_shift.copy_(before)
    np.testing.assert_allclose(moved[:, cold], base[:, cold] - 1.5, atol=1e-5)
    np.testing.assert_array_equal(moved[:, warm], base[:, warm])


def test_the_new_item_shift_is_in_new_item_scores_explanations_and_bundles(planted, shifted, tmp_path):
    users = np.arange(planted.n_users)
    cold = planted.item_indices(["A20", "B20"])
    scores = shifted.score_users(users)
    np.testing.assert_allclose(shifted.score_new_items(planted.item_features[cold]), scores[:, cold],
                               rtol=1e-4, atol=1e-4)
    frame = shifted.explain(user_index=users[:5], item_index=cold)
    np.testing.assert_allclose(frame["total"].to_numpy().reshape(5, 2), scores[:5][:, cold], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(frame[list(SOURCES)].sum(axis=1), frame["total"], atol=1e-6)
    loaded = Recommender.load(shifted.save(tmp_path / "shifted.recolens"))
    np.testing.assert_allclose(loaded.score_users(users), scores, rtol=1e-6, atol=1e-6)


def test_a_bundle_saved_before_the_new_item_shift_loads_without_one(planted, planted_model):
    config, arrays = planted_model._get_state()
    arrays = {name: value for name, value in arrays.items() if name != "net.new_item_shift"}
    restored = FusedRecommender(**FAST)
    restored.dataset = planted
    restored._set_state(config, arrays)
    assert float(restored._net.new_item_shift) == 0.0
    arrays.pop("net.log_temperature")
    with pytest.raises(ValueError, match="lacks the weights log_temperature"):
        restored._set_state(config, arrays)


def test_short_and_long_histories_get_their_own_calibrated_gate_offsets(planted, planted_model):
    # Histories of 1..SHORT_HISTORY items take the few-shot offsets, longer ones the warm offsets,
    # none the new-person offsets: each changes the gate of its own people only.
    from recommender.models.fused import SHORT_HISTORY
    net = planted_model._net
    position = SOURCES.index("popularity")
    lengths = [0, 1, SHORT_HISTORY, SHORT_HISTORY + 1, SHORT_HISTORY + 3]
    people = _people(planted, ["F"] * len(lengths))
    history = sp.lil_matrix((len(lengths), planted.n_items), dtype=np.float32)
    for row, length in enumerate(lengths):
        history[row, :length] = 1.0
    static, behaviour = people[0], people[1]
    saved = [buffer.clone() for buffer in (net.short_history_gate_offset, net.history_gate_offset)]
    try:
        base = planted_model.gate_weights(static, behaviour, history.tocsr())["popularity"].to_numpy()
        net.short_history_gate_offset[position] += 3.0
        short = planted_model.gate_weights(static, behaviour, history.tocsr())["popularity"].to_numpy()
        net.short_history_gate_offset.copy_(saved[0])
        net.history_gate_offset[position] += 3.0
        long = planted_model.gate_weights(static, behaviour, history.tocsr())["popularity"].to_numpy()
    finally:
        net.short_history_gate_offset.copy_(saved[0])
        net.history_gate_offset.copy_(saved[1])
    moved_short, moved_long = short > base + 1e-6, long > base + 1e-6
    assert moved_short.tolist() == [False, True, True, False, False]
    assert moved_long.tolist() == [False, False, False, True, True]


def test_gate_lifts_follow_the_calibration_for_history_people_only(planted):
    # Without validation people there is nothing to search, so the offsets are exactly the fixed
    # lifts: item-item for long histories, similar people for short ones, none for new people.
    from recommender.models.fused import LONG_HISTORY_GATE_LIFT, SHORT_HISTORY_GATE_LIFT
    model = FusedRecommender(**{**FAST, "max_epochs": 2}, validation_share=0.0, seed=0).fit(planted)
    net = model._net

    def expected(lift):
        return [float(lift.get(source, 0.0)) for source in SOURCES]

    assert net.history_gate_offset.tolist() == expected(LONG_HISTORY_GATE_LIFT) != [0.0] * len(SOURCES)
    assert net.short_history_gate_offset.tolist() == expected(SHORT_HISTORY_GATE_LIFT) != [0.0] * len(SOURCES)
    assert net.new_person_gate_offset.tolist() == [0.0] * len(SOURCES)
    assert model._config["history_gate_offset"] == expected(LONG_HISTORY_GATE_LIFT)
    assert model._config["short_history_gate_offset"] == expected(SHORT_HISTORY_GATE_LIFT)


@pytest.mark.parametrize("share, max_users, new, warm", [
    (0.1, 1500, 28, 12),     # 24 validation users: 28 new people (12 % of 240), not 12
    (0.5, 1500, 60, 60),     # half the share is already more than 12 %: unchanged
    (0.1, 20, 10, 10),       # max_validation_users still bounds the validation
])
def test_small_data_holds_out_more_new_validation_people(planted, share, max_users, new, warm):
    """The new-person offsets are chosen on the held-out new people; on small data half the
    validation share is too few to choose on, so up to MIN_NEW_VALIDATION_PEOPLE (at most 12 % of
    the users) are held out, and the known-user half keeps its size."""
    assert planted.n_users == 240
    prepared = _Prepared.build(planted, None, 1.0, share, max_users, np.random.default_rng(0))
    new_people = prepared.validation["cold_user"].users
    assert len(new_people) == new
    assert len(prepared.validation["warm"].users) == warm
    assert prepared.n_validation_users == new + warm
    assert prepared.train_binary[new_people].nnz == 0       # new people are not trained on
    np.testing.assert_array_equal(prepared.validation["few_shot"].users, new_people)


@pytest.mark.parametrize("kind, share", [("few_shot", 1.0), ("few_shot", 0.0), ("warm", 1.0), ("warm", 0.0)])
def test_practice_shows_users_first_items_by_time(monkeypatch, kind, share):
    """A new person arrives with their first items, and a known user's next items follow their past:
    few-shot practice shows a user's first 1-5 items (a share FIRST_ITEMS_SHARE of the time) and warm
    practice their earliest 50-80 % (PAST_ITEMS_SHARE); random items otherwise. Time order here is
    unrelated to item ids."""
    rng = np.random.default_rng(0)
    n_users, n_items, per_user = 60, 40, 12
    user = np.repeat(np.arange(n_users), per_user)
    item = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    days = rng.permutation(len(user))
    dataset = Dataset.from_frames(pd.DataFrame({
        "user_id": [f"u{u:02d}" for u in user], "item_id": [f"i{i:02d}" for i in item],
        "timestamp": pd.Timestamp("2024-01-01") + pd.to_timedelta(days, unit="D")}))
    monkeypatch.setattr(fused_data, "FIRST_ITEMS_SHARE" if kind == "few_shot" else "PAST_ITEMS_SHARE", share)
    prepared = _Prepared.build(dataset, None, 1.0, 0.0, 0, np.random.default_rng(1))
    batch = prepared.make_batch(np.arange(n_users), cold_rate=0.0, few_shot_rate=float(kind == "few_shot"),
                                rng=np.random.default_rng(2))
    order = np.lexsort((dataset.timestamps, dataset.user_index))
    by_user = np.split(dataset.item_index[order], np.cumsum(np.bincount(dataset.user_index))[:-1])
    shown = np.split(batch.items, batch.offsets[1:])
    n_history = batch.n_history.astype(int)
    low, high = (1, 5) if kind == "few_shot" else (6, 10)     # 50-80 % of 12, rounded
    assert ((n_history >= low) & (n_history <= high)).all()
    first = [set(shown[row]) == set(by_user[u][:n_history[row]]) for row, u in enumerate(batch.users)]
    if share == 1.0:
        assert all(first)
    else:
        assert np.mean(first) < 0.5     # random items: a user's first ones only by chance


def test_both_history_offsets_are_calibrated_recorded_and_saved(planted, planted_model, tmp_path):
    config = planted_model._config
    assert len(config["short_history_gate_offset"]) == len(config["history_gate_offset"]) == len(SOURCES)
    np.testing.assert_array_equal(planted_model._net.short_history_gate_offset.cpu().numpy(),
                                  np.array(config["short_history_gate_offset"], dtype=np.float32))
    loaded = Recommender.load(planted_model.save(tmp_path / "offsets.recolens"))
    np.testing.assert_array_equal(loaded._net.short_history_gate_offset.cpu().numpy(),
                                  planted_model._net.short_history_gate_offset.cpu().numpy())


def test_a_bundle_saved_before_short_history_offsets_gives_short_histories_the_long_ones(planted, planted_model):
    # Before, one set of offsets served every person with a history.
    config, arrays = planted_model._get_state()
    arrays = {name: value for name, value in arrays.items() if name != "net.short_history_gate_offset"}
    arrays["net.history_gate_offset"] = np.arange(len(SOURCES), dtype=np.float32) / 10
    restored = FusedRecommender(**FAST)
    restored.dataset = planted
    restored._set_state(config, arrays)
    np.testing.assert_array_equal(restored._net.short_history_gate_offset.cpu().numpy(),
                                  arrays["net.history_gate_offset"])


def test_the_calibrated_new_item_shift_is_recorded(planted_model):
    shift = planted_model._config.get("new_item_shift")
    assert shift in NEW_ITEM_SHIFT_GRID
    assert float(planted_model._net.new_item_shift) == shift


def test_score_new_items_reaches_the_segment_whose_taste_it_matches(planted, planted_model, tmp_path):
    loaded = Recommender.load(planted_model.save(tmp_path / "fused.recolens"))
    new_items = planted.item_encoder.transform(pd.DataFrame({"category": ["A", "B"], "colour": ["red", "red"]},
                                                            dtype=object))
    scores = loaded.score_new_items(new_items)
    women = (planted.users["gender"] == "F").to_numpy()
    assert scores[women, 0].mean() > scores[~women, 0].mean()  # an A item appeals to women
    assert scores[~women, 1].mean() > scores[women, 1].mean()  # a B item to men
    assert (scores[women, 0] > scores[women, 1]).mean() >= 0.9
    with pytest.raises(ValueError, match="item_encoder"):
        loaded.score_new_items(new_items[:, :-1])
    with pytest.raises(ValueError, match="item_encoder"):
        loaded.score_new_items(new_items[0])


def test_a_new_item_gets_nothing_from_the_interaction_sources_and_content_similarity_from_history(
        planted, planted_model):
    cold = planted.item_indices(["A20"])[0]
    static, behaviour, _ = _people(planted, ["M"])
    likes_a = sp.csr_matrix((np.ones(3), ([0, 0, 0], planted.item_indices(["A00", "A01", "A02"]))),
                            shape=(1, planted.n_items))
    frame = planted_model.explain(static, behaviour, likes_a, [cold, planted.item_indices(["B00"])[0]])
    new_item, other = frame.iloc[0], frame.iloc[1]
    # Nobody interacted with A20: item-item and similar people say nothing (the average item, 0).
    assert new_item["item_item"] == 0 and new_item["similar_people"] == 0
    # ...but it looks like the A items this person liked, unlike B00.
    assert new_item["content_similarity"] > 0 > other["content_similarity"]
    np.testing.assert_allclose(frame[list(SOURCES)].sum(axis=1), frame["total"], atol=1e-6)


def test_similar_people_source_can_be_switched_off_and_the_gate_reflects_it(planted):
    model = FusedRecommender(**{**FAST, "max_epochs": 2}, similar_people=0, content_neighbours=0, seed=0).fit(planted)
    static, behaviour, _ = _people(planted, ["F"])
    history = sp.csr_matrix(([1.0], ([0], [3])), shape=(1, planted.n_items))
    gate = model.gate_weights(static, behaviour, history)
    assert gate["similar_people"].iloc[0] == 0 and gate["content_similarity"].iloc[0] == 0
    assert gate["history"].iloc[0] > 0
    with pytest.raises(ValueError, match="similar_people"):
        FusedRecommender(similar_people=-1).fit(planted)


def test_a_persons_scores_do_not_depend_on_who_else_is_scored_with_them():
    # Many people share a profile in generated data, so the similar-people source must break ties
    # between equally similar neighbours the same way whatever the batch (torch.topk did not:
    # this case moved one score by 0.13 and reordered a top-10).
    data = generate(n_users=200, n_items=80, n_interactions=2000, seed=7)
    dataset = Dataset.from_frames(data.interactions, data.users, data.items)
    model = FusedRecommender(dim=16, hidden=32, gate_hidden=8, max_epochs=2, patience=1, device="cpu",
                             seed=0).fit(dataset)
    person = {spec.name: spec.default for spec in profile_form_schema(dataset)}   # what the simulator starts from
    other = {**person, "region": next(r for r in data.users["region"].unique() if r != person["region"])}
    profiles = pd.DataFrame([{"user_id": "a", **person}, {"user_id": "b", **other}])
    alone = model.score_new_users(*dataset.encode_new_users(profiles.iloc[:1]))
    together = model.score_new_users(*dataset.encode_new_users(profiles))
    np.testing.assert_allclose(together[0], alone[0], rtol=1e-5, atol=1e-5)


def test_sampled_softmax_training_finds_the_planted_pattern(planted):
    # A catalogue above full_softmax_items trains on sampled candidates (how large catalogues fit).
    model = FusedRecommender(**FAST, full_softmax_items=10, sampled_items=16, seed=0).fit(planted)
    static, behaviour, history = _people(planted, ["F", "M"] * 5)
    top = np.argsort(-model.score_new_users(static, behaviour, history), axis=1)[:, :10]
    wanted = np.array([["A" if g == "F" else "B"] for g in ["F", "M"] * 5])
    assert (planted.items["category"].to_numpy()[top] == wanted).mean() >= 0.8


def test_sources_restricted_to_candidate_columns_equal_the_full_columns(planted, planted_model):
    # The sampled softmax builds content-similarity and similar-people scores for its candidates
    # only; they must be exactly the candidates' columns of the full scores.
    net, pool = planted_model._net, planted_model._pool
    users = np.arange(0, 40)
    inputs = planted_model._inputs(planted.user_features[users], planted.behaviour_features[users],
                                   planted.matrix[users])
    _, items, _, n_history, _ = inputs
    candidates = np.array([0, 3, 7, 20, 21, 30, 41])
    index = torch.from_numpy(candidates)
    full = net.content_similarity_scores(items, n_history)
    torch.testing.assert_close(net.content_similarity_scores(items, n_history, index), full[:, index])
    has_history = planted.matrix[users].getnnz(axis=1) > 0
    whole = pool.scores(planted.user_features[users], planted.behaviour_features[users], has_history, exclude=users)
    some = pool.scores(planted.user_features[users], planted.behaviour_features[users], has_history, exclude=users,
                       columns=candidates)
    np.testing.assert_allclose(some, whole[:, candidates], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("per_source, rescored", [(2, "all"), (12, "some"), (50, "none")])
@pytest.mark.parametrize("cold_complete", [True, False])
def test_gate_calibration_on_candidates_equals_scoring_the_whole_catalogue(planted, planted_model, monkeypatch,
                                                                           per_source, rescored, cold_complete):
    # The calibration rescores validation people on their candidate items only; whatever the
    # offsets, its NDCG@10 must be that of scoring the whole catalogue: exact where the bound
    # proves the top 10 lies among the candidates, by full rescoring of the others.
    from recommender.models.fused.data import _ndcg, _Validation
    model, net = planted_model, planted_model._net
    users = np.arange(0, planted.n_users, 3)
    matrix = sp.csr_matrix(planted.matrix[users])
    shown = matrix.copy()
    shown.data = (np.arange(len(shown.data)) % 2 == 0).astype(shown.data.dtype)   # half the items shown
    shown.eliminate_zeros()
    shown = (sp.diags((np.arange(len(users)) % 4 != 0).astype(np.float32)) @ shown).tocsr()   # some people new
    shown.eliminate_zeros()
    hidden = (matrix - shown.multiply(matrix)).tocsr()
    hidden.eliminate_zeros()
    entry = _Validation(users=users, history=shown, behaviour=planted.behaviour_features[users], relevant=hidden)
    static = planted.user_features[users]
    candidates = model._calibration_candidates(static, entry, per_source=per_source)
    # The two items without interactions are candidates of every person (few enough); without
    # that, the bound must also cover them through the new-item gate and shift.
    assert candidates["cold_complete"]
    candidates["cold_complete"] = cold_complete
    saved = [buffer.clone() for buffer in (net.new_person_gate_offset, net.history_gate_offset, net.new_item_shift)]
    calls: list[int] = []
    try:
        for new_offset, history_offset, shift in [(0.0, 0.0, 0.0), (3.0, -1.0, -2.0), (-2.0, 2.0, -0.5)]:
            net.new_person_gate_offset[SOURCES.index("popularity")] = new_offset
            net.history_gate_offset[SOURCES.index("history")] = history_offset
            net.new_item_shift.fill_(shift)
            full = _ndcg(model._score_arrays(static, entry.behaviour, entry.history), entry.history, entry.relevant)
            score_arrays = type(model)._score_arrays
            monkeypatch.setattr(model, "_score_arrays", lambda *a: calls.append(len(a[0])) or score_arrays(model, *a))
            np.testing.assert_allclose(model._candidate_ndcg(candidates), full, atol=1e-6)
            monkeypatch.undo()
        # 2 per source: every top 10 may reach beyond the candidates; 12: the bound proves some;
        # 50 (more than the catalogue): all are candidates.
        assert {0: "none", 3 * len(users): "all"}.get(sum(calls), "some") == rescored
    finally:
        net.new_person_gate_offset.copy_(saved[0])
        net.history_gate_offset.copy_(saved[1])
        net.new_item_shift.copy_(saved[2])


def test_popularity_alone_ranks_items_exactly_like_the_popularity_baseline(planted, planted_model):
    # The popularity source counts every interaction (the validation people's too) once fitted, so
    # the calibration's "popularity alone" end of its grid really is the popularity baseline.
    net = planted_model._net
    saved = net.new_person_gate_offset.clone()
    try:
        net.new_person_gate_offset[SOURCES.index("popularity")] = 30.0
        scores = planted_model.score_new_users(*_people(planted, ["F"]))[0]
    finally:
        net.new_person_gate_offset.copy_(saved)
    counts = np.bincount(planted.item_index, minlength=planted.n_items)
    known = counts > 0
    order = np.argsort(-scores[known], kind="stable")
    assert (np.diff(counts[known][order]) <= 0).all()               # more interactions, higher score
    assert len(np.unique(counts[known])) > 5                          # (a real ranking, not ties only)
