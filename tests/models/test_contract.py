"""The contract every registered model follows (one suite, parametrised over the registry).

A new model is covered as soon as it is registered. Give it small, fast hyperparameters in
:data:`FAST_PARAMS`; models without an entry are built with their defaults. Models that
have no notion of item similarity are listed in :data:`NO_ITEM_SIMILARITY`.
"""
import inspect

import numpy as np
import pandas as pd
import pytest

from recommender.models import REGISTRY, Recommender

#: Small, fast hyperparameters per model name (extend for new models).
FAST_PARAMS = {
    "als": {"factors": 8, "iterations": 3, "num_threads": 1},
    "profile_knn": {"k": 20},
    "content_knn": {"k": 10},
    "ease": {"l2": 50.0},
    "fused": {},
}

#: Models allowed to raise NotImplementedError from similar_items.
NO_ITEM_SIMILARITY = {"popularity", "segment_popularity", "profile_knn"}

#: Library models only: a test elsewhere may register a throwaway model.
MODEL_NAMES = sorted(name for name, cls in REGISTRY.items() if cls.__module__.startswith("recommender."))


def build(name: str, **overrides) -> Recommender:
    return REGISTRY[name](**{**FAST_PARAMS.get(name, {}), **overrides})


@pytest.fixture(scope="module")
def fitted(dataset):
    """Fit each model once per module (on first use)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = build(name).fit(dataset)
        return cache[name]

    return get


def _seen(dataset, user_id):
    row = dataset.matrix[dataset.user_indices([user_id])[0]]
    return set(dataset.item_ids[row.indices])


def _active_users(dataset, n=5):
    counts = np.diff(dataset.matrix.indptr)
    return list(dataset.user_ids[np.flatnonzero(counts >= 3)[:n]])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fit_returns_self_and_params_rebuild_the_model(name, dataset):
    model = build(name)
    assert model.fit(dataset) is model
    clone = type(model)(**model.get_params())
    assert clone.get_params() == model.get_params()
    assert repr(model).startswith(type(model).__name__)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_scores_are_finite_float32_of_the_right_shape(name, fitted, dataset):
    users = np.arange(min(dataset.n_users, 40))
    scores = fitted(name).score_users(users)
    assert scores.shape == (len(users), dataset.n_items)
    assert scores.dtype == np.float32
    assert np.isfinite(scores).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_recommend_frame(name, fitted, dataset):
    users = _active_users(dataset)
    frame = fitted(name).recommend(users, k=7)
    assert list(frame.columns) == ["user_id", "rank", "item_id", "score"]
    assert pd.api.types.is_integer_dtype(frame["rank"])
    assert frame["score"].dtype == np.float32
    assert set(frame["item_id"]) <= set(dataset.item_ids)
    assert list(frame["user_id"].drop_duplicates()) == users
    for _, group in frame.groupby("user_id", sort=False):
        assert group["rank"].tolist() == list(range(1, 8))
        assert np.all(np.diff(group["score"].to_numpy()) <= 0), "not sorted by score"
        assert group["item_id"].is_unique


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_exclude_seen(name, fitted, dataset):
    model = fitted(name)
    user = _active_users(dataset, 1)[0]
    seen = _seen(dataset, user)
    everything = model.recommend(user, k=dataset.n_items, exclude_seen=True)
    assert not seen & set(everything["item_id"])
    assert len(everything) == dataset.n_items - len(seen)
    with_seen = model.recommend(user, k=dataset.n_items, exclude_seen=False)
    assert len(with_seen) == dataset.n_items
    assert seen <= set(with_seen["item_id"])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_unknown_user_raises_key_error_naming_it(name, fitted, dataset):
    with pytest.raises(KeyError, match="U99999"):
        fitted(name).recommend([dataset.user_ids[0], "U99999"], k=3)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_k_larger_than_the_catalogue(name, fitted, dataset):
    user = _active_users(dataset, 1)[0]
    frame = fitted(name).recommend(user, k=10 * dataset.n_items)
    assert len(frame) == dataset.n_items - len(_seen(dataset, user))
    assert frame["item_id"].is_unique


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_users_without_interactions_get_a_full_list(name, fitted, dataset):
    cold = dataset.user_ids[np.diff(dataset.matrix.indptr) == 0]
    assert len(cold), "the fixture should contain users without interactions"
    frame = fitted(name).recommend(cold[:3], k=5)
    assert frame.groupby("user_id").size().tolist() == [5] * min(3, len(cold))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_new_users_with_unseen_values_and_a_missing_column(name, fitted, dataset, new_profiles):
    frame = fitted(name).recommend_new_users(new_profiles, k=5)
    assert frame.groupby("user_id", sort=False).size().to_dict() == {"ordinary": 5, "unseen": 5, "partial": 5}
    assert set(frame["item_id"]) <= set(dataset.item_ids)
    assert np.isfinite(frame["score"]).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_new_user_histories_are_excluded(name, fitted, dataset, new_profiles):
    history = list(dataset.item_ids[:4])
    frame = fitted(name).recommend_new_users(new_profiles, k=dataset.n_items,
                                             histories={"ordinary": history})
    ordinary = frame[frame["user_id"] == "ordinary"]
    assert not set(history) & set(ordinary["item_id"])
    assert len(ordinary) == dataset.n_items - len(history)
    assert len(frame[frame["user_id"] == "unseen"]) == dataset.n_items


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_unknown_item_in_a_history_raises_key_error(name, fitted, new_profiles):
    with pytest.raises(KeyError, match="NO-SUCH-ITEM"):
        fitted(name).recommend_new_users(new_profiles, k=3, histories={"ordinary": ["NO-SUCH-ITEM"]})


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_similar_items_exclude_the_item_itself(name, fitted, dataset):
    model = fitted(name)
    items = list(dataset.item_ids[:3])
    if name in NO_ITEM_SIMILARITY:
        with pytest.raises(NotImplementedError):
            model.similar_items(items, k=5)
        return
    frame = model.similar_items(items, k=5)
    assert list(frame.columns) == ["item_id", "rank", "similar_item_id", "score"]
    assert frame.groupby("item_id", sort=False).size().tolist() == [5, 5, 5]
    assert not (frame["item_id"] == frame["similar_item_id"]).any()
    whole = model.similar_items(items[0], k=dataset.n_items)
    assert len(whole) == dataset.n_items - 1 and whole["similar_item_id"].is_unique


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_unknown_item_in_similar_items_raises_key_error(name, fitted):
    if name in NO_ITEM_SIMILARITY:
        pytest.skip(f"{name} has no item similarity")
    with pytest.raises(KeyError, match="NO-SUCH-ITEM"):
        fitted(name).similar_items(["NO-SUCH-ITEM"], k=3)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_save_load_round_trip(name, fitted, dataset, new_profiles, tmp_path):
    model = fitted(name)
    path = model.save(tmp_path / f"{name}.recolens")
    loaded = Recommender.load(path)
    assert type(loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    users = list(dataset.user_ids[:20])
    pd.testing.assert_frame_equal(loaded.recommend(users, k=10), model.recommend(users, k=10))
    histories = {"ordinary": list(dataset.item_ids[:3])}
    pd.testing.assert_frame_equal(loaded.recommend_new_users(new_profiles, k=10, histories=histories),
                                  model.recommend_new_users(new_profiles, k=10, histories=histories))
    if name not in NO_ITEM_SIMILARITY:
        items = list(dataset.item_ids[:5])
        pd.testing.assert_frame_equal(loaded.similar_items(items, k=5), model.similar_items(items, k=5))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fitting_twice_gives_the_same_recommendations(name, fitted, dataset):
    users = list(dataset.user_ids[:20])
    again = build(name).fit(dataset)
    pd.testing.assert_frame_equal(again.recommend(users, k=10), fitted(name).recommend(users, k=10))


def _devices():
    import torch

    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())}
    return available


DEVICE_MODELS = [name for name in MODEL_NAMES if "device" in inspect.signature(REGISTRY[name]).parameters]


@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
@pytest.mark.parametrize("name", DEVICE_MODELS)
def test_runs_on_each_available_device(name, device, dataset, new_profiles):
    if not _devices()[device]:
        pytest.skip(f"no {device} device here")
    model = build(name, device=device).fit(dataset)
    scores = model.score_users(np.arange(5))
    assert isinstance(scores, np.ndarray) and scores.dtype == np.float32 and np.isfinite(scores).all()
    assert len(model.recommend(list(dataset.user_ids[:3]), k=4)) == 12
    assert len(model.recommend_new_users(new_profiles, k=4)) == 12


@pytest.mark.parametrize("k", [1, 3, 6, 9])
def test_top_k_in_blocks_of_rows_equals_one_block(monkeypatch, k):
    """The shared ranking partially sorts a few rows at a time (bounded memory) with the same result."""
    import scipy.sparse as sp

    from recommender.models import base

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(23, 6)).astype(np.float32)     # many ties
    exclude = sp.random(23, 6, density=0.3, random_state=1, format="csr")
    whole_items, whole_values = base.top_k(scores.copy(), k, exclude)
    monkeypatch.setattr(base, "TOP_K_BLOCK_FLOATS", 2 * 6 + 5)        # two rows at a time
    items, values = base.top_k(scores.copy(), k, exclude)
    np.testing.assert_array_equal(items, whole_items)
    np.testing.assert_array_equal(values, whole_values)


def test_top_k_breaks_every_tie_by_the_lowest_item_index():
    """Also between the items tied with the k-th best, which np.argpartition picks by its own algorithm
    (a SIMD variant chosen by the processor): the same scores must give the same list on every machine."""
    import scipy.sparse as sp

    from recommender.models.base import top_k

    rng = np.random.default_rng(0)
    for trial in range(200):
        n_rows, n_items = rng.integers(1, 12), rng.integers(1, 60)
        scores = rng.integers(0, rng.integers(1, 5), size=(n_rows, n_items)).astype(np.float32)
        exclude = sp.random(n_rows, n_items, density=rng.random() * 0.5, random_state=trial, format="csr")
        k = int(rng.integers(0, n_items + 3))
        ranked = scores.copy()
        items, values = top_k(ranked, k, exclude)
        assert items.shape == values.shape == (n_rows, min(k, n_items))
        for row in range(n_rows):
            excluded = set(exclude[row].indices)
            # Excluded items score -inf: last, by index among themselves.
            expected = sorted(range(n_items), key=lambda item: (item in excluded,
                                                                0.0 if item in excluded else -scores[row, item],
                                                                item))[:k]
            assert list(items[row]) == expected, (trial, row)
            assert all(np.isneginf(values[row][i]) == (item in excluded) for i, item in enumerate(expected))


def test_rankings_do_not_depend_on_numpys_simd_variant():
    """np.argpartition picks other tied items with AVX-512, AVX2 or neither (NumPy chooses by processor;
    NPY_DISABLE_CPU_FEATURES makes this machine act like an older one): the rankings must not."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import hashlib, numpy as np\n"
        "from recommender.models.base import top_k\n"
        "from recommender.models import content_knn\n"
        "rng = np.random.default_rng(0)\n"
        "scores = np.tile(rng.poisson(3, 2000).astype(np.float32), (50, 1))\n"
        "features = rng.integers(0, 2, size=(1500, 8)).astype(np.float32)\n"
        "items, _ = top_k(scores, 10)\n"
        "near = content_knn.top_k_similarity(content_knn._unit_rows(features), 20)\n"
        "print(hashlib.md5(items.tobytes() + near.indices.tobytes()).hexdigest())\n")
    root = Path(__file__).resolve().parents[2]
    outputs = set()
    for disabled in ("", "AVX512_ICL X86_V4", "AVX512_ICL X86_V4 X86_V3"):
        run = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                             env={"PATH": "", "PYTHONPATH": str(root), "NPY_DISABLE_CPU_FEATURES": disabled})
        if run.returncode != 0:
            assert disabled and "NPY_DISABLE_CPU_FEATURES" in run.stderr, run.stderr   # unknown on this NumPy
            continue
        outputs.add(run.stdout.strip())
    assert len(outputs) == 1
