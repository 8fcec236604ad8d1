"""Bundles that are hostile, damaged, of another dataset, or half written (RELIABILITY.md 10-11)."""
import io
import os
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load as load_arrays
from safetensors.numpy import save as save_arrays

from recommender import BundleError
from recommender.models import REGISTRY, EASERecommender, PopularityRecommender, Recommender
from recommender.models import bundle as bundle_module
from recommender.models.bundle import bundle_bytes, check_compatible

from .test_contract import MODEL_NAMES, build


class _Payload:
    """Unpickling this creates a file: proof that a loader ran code from the file."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def _rewrite(data: bytes, replacements: dict) -> bytes:
    """The bundle ``data`` with some members replaced (name -> bytes)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, replacements.get(info.filename, source.read(info.filename)))
    return out.getvalue()


@pytest.fixture(scope="module")
def ease(dataset):
    return EASERecommender(l2=50.0).fit(dataset)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_pickle_with_a_payload_never_runs(protocol, tmp_path):
    target = tmp_path / "pwned.txt"
    payload = pickle.dumps(_Payload(target), protocol=protocol)
    # The payload is real: unpickling it does create the file.
    pickle.loads(payload).close()
    assert target.exists()
    target.unlink()
    path = tmp_path / "model.recolens"
    path.write_bytes(payload)
    with pytest.raises(BundleError, match="pickle|not a RecoLens"):
        Recommender.load(path)
    with pytest.raises(BundleError):
        Recommender.load(payload)
    assert not target.exists()


def test_a_torch_checkpoint_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "checkpoint.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    assert zipfile.is_zipfile(path)
    with pytest.raises(BundleError, match="PyTorch"):
        Recommender.load(path)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_a_truncated_bundle_gets_a_message(keep, ease, tmp_path):
    data = bundle_bytes(ease)
    path = tmp_path / "cut.recolens"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(BundleError, match="damaged or truncated"):
        Recommender.load(path)


def test_a_file_that_is_not_a_bundle(tmp_path):
    path = tmp_path / "notes.recolens"
    path.write_text("user_id,item_id\n1,2\n")
    with pytest.raises(BundleError, match="not a RecoLens model bundle"):
        Recommender.load(path)
    with pytest.raises(BundleError, match="no model bundle"):
        Recommender.load(tmp_path / "missing.recolens")


def test_weights_of_the_wrong_shape_name_the_mismatch(ease, dataset):
    data = bundle_bytes(ease)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        arrays = load_arrays(archive.read("model.safetensors"))
    arrays["weights"] = np.zeros((dataset.n_items + 1, dataset.n_items + 1), dtype=np.float32)
    damaged = _rewrite(data, {"model.safetensors": save_arrays(arrays)})
    with pytest.raises(BundleError, match=r"dimension mismatch.*\(101, 101\)"):
        Recommender.load(damaged)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_checks_the_shape_of_every_array(name, dataset):
    model = build(name).fit(dataset)
    data = bundle_bytes(model)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        arrays = load_arrays(archive.read("model.safetensors"))
    assert Recommender.load(data).recommend(dataset.user_ids[:2], k=3).shape == (6, 4)
    for key, value in arrays.items():
        if value.ndim == 0 or value.shape[0] == 0:
            continue
        shrunk = dict(arrays, **{key: np.ascontiguousarray(value[:-1])})
        with pytest.raises(BundleError, match="dimension mismatch"):
            Recommender.load(_rewrite(data, {"model.safetensors": save_arrays(shrunk)}))


def test_weights_from_another_dataset_are_refused(ease, dataset, other_dataset):
    foreign = bundle_bytes(EASERecommender(l2=50.0).fit(other_dataset))
    with zipfile.ZipFile(io.BytesIO(foreign)) as archive:
        foreign_weights = archive.read("model.safetensors")
    mixed = _rewrite(bundle_bytes(ease), {"model.safetensors": foreign_weights})
    with pytest.raises(BundleError, match="dimension mismatch"):
        Recommender.load(mixed)


def test_loading_through_the_wrong_class(ease, tmp_path):
    path = ease.save(tmp_path / "ease.recolens")
    with pytest.raises(BundleError, match="'ease' model, not PopularityRecommender"):
        PopularityRecommender.load(path)
    assert isinstance(EASERecommender.load(path), EASERecommender)


def test_an_unknown_model_type_is_refused(ease):
    data = bundle_bytes(ease)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        meta = archive.read("recolens.json").decode()
    altered = _rewrite(data, {"recolens.json": meta.replace('"model": "ease"', '"model": "from-the-future"')})
    with pytest.raises(BundleError, match="unknown model type 'from-the-future'"):
        Recommender.load(altered)


@pytest.mark.parametrize("meta", [b"[]", b"not json", b'{"format": "recolens-bundle", "version": [1]}',
                                  b'{"format": "recolens-bundle", "version": 1}',
                                  b'{"format": "recolens-bundle", "version": 1, "model": "ease", "dataset": []}'])
def test_damaged_metadata_gets_a_message(meta, ease):
    with pytest.raises(BundleError, match="RecoLens model bundle|damaged"):
        Recommender.load(_rewrite(bundle_bytes(ease), {"recolens.json": meta}))


def _interrupt(monkeypatch, where):
    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundle_module.os, where, fail)


@pytest.mark.parametrize("where", ["replace", "fsync"])
def test_an_interrupted_save_keeps_the_previous_bundle(where, ease, dataset, tmp_path, monkeypatch):
    path = tmp_path / "model.recolens"
    previous = PopularityRecommender().fit(dataset)
    previous.save(path)
    before = path.read_bytes()
    with monkeypatch.context() as patch:
        _interrupt(patch, where)
        with pytest.raises(OSError, match="No space left"):
            ease.save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.recolens"], "a temporary file was left behind"
    loaded = Recommender.load(path)
    assert isinstance(loaded, PopularityRecommender)
    users = list(dataset.user_ids[:5])
    pd.testing.assert_frame_equal(loaded.recommend(users, k=5), previous.recommend(users, k=5))


def test_a_save_replaces_the_previous_bundle(ease, dataset, tmp_path):
    path = tmp_path / "model.recolens"
    PopularityRecommender().fit(dataset).save(path)
    ease.save(path)
    assert isinstance(Recommender.load(path), EASERecommender)
    assert sorted(os.listdir(tmp_path)) == ["model.recolens"]


def test_check_compatible_names_both_datasets(ease, dataset, other_dataset):
    assert check_compatible(ease, dataset) is None
    message = check_compatible(ease, other_dataset)
    assert "'small synthetic'" in message and "'other synthetic'" in message
    assert f"{dataset.n_items:,} items" in message and f"{other_dataset.n_items:,} items" in message


def test_a_loaded_model_brings_its_own_data(ease, dataset):
    loaded = Recommender.load(bundle_bytes(ease))
    assert check_compatible(loaded, dataset) is None
    assert loaded.dataset.n_interactions == dataset.n_interactions
    np.testing.assert_array_equal(loaded.dataset.user_ids, dataset.user_ids)


def test_registry_names_are_the_bundle_names():
    for name, cls in REGISTRY.items():
        assert cls.name == name
