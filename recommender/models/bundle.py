"""Model bundles: one ``.recolens`` file that can never execute code when loaded.

A bundle is a ZIP archive holding

* ``recolens.json``: format version, model name, hyperparameters and model config,
  the dataset's id maps, column roles and fitted encoders (all plain JSON);
* ``model.safetensors``: the model's arrays (weights, factors);
* ``interactions.safetensors``: the training interactions (int32 indices, weights, times);
* ``users.parquet`` / ``items.parquet``: the profile and item tables.

Nothing is unpickled: JSON, safetensors and Parquet carry data only. Saving writes a
temporary file beside the target and renames it with :func:`os.replace`, so an interrupted
save leaves the previous bundle intact.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import pandas as pd
from safetensors import SafetensorError
from safetensors.numpy import load as load_arrays
from safetensors.numpy import save as save_arrays

from ..dataset import Dataset
from ..errors import BundleError
from ..features import TableEncoder
from ..errors import Report

FORMAT = "recolens-bundle"
VERSION = 1
SUFFIX = ".recolens"
#: Largest bundle (compressed or unpacked) accepted, bytes.
MAX_BUNDLE_BYTES = 2 * 1024**3
_MEMBERS = {"recolens.json", "model.safetensors", "interactions.safetensors", "users.parquet", "items.parquet"}

BundleSource = Union[str, os.PathLike, BinaryIO, bytes]


_ID = "__recolens_id__"


def _table_bytes(frame: pd.DataFrame, ids: np.ndarray) -> bytes:
    """A side table as Parquet, with the ids as a column so zero-column tables keep their rows."""
    buffer = io.BytesIO()
    table = frame.astype("string")
    table.insert(0, _ID, pd.array([str(i) for i in ids], dtype="string"))
    table.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _read_table_bytes(data: bytes) -> pd.DataFrame:
    table = pd.read_parquet(io.BytesIO(data))
    return table.drop(columns=[_ID]) if _ID in table.columns else table


def bundle_bytes(model) -> bytes:
    """The bundle of a fitted model as bytes (what :func:`save_model` writes)."""
    dataset = model._require_fitted()
    config, arrays = model._get_state()
    meta = {
        "format": FORMAT, "version": VERSION, "model": model.name, "params": model.get_params(),
        "config": config,
        "dataset": {
            "name": dataset.name, "user_ids": [str(u) for u in dataset.user_ids],
            "item_ids": [str(i) for i in dataset.item_ids], "user_roles": dataset.user_roles,
            "item_roles": dataset.item_roles, "profile_encoder": dataset.profile_encoder.to_dict(),
            "item_encoder": dataset.item_encoder.to_dict(), "has_ratings": dataset.has_ratings,
            "item_label_column": dataset.item_label_column, "category_column": dataset.category_column,
            "fingerprint": dataset.fingerprint,
        },
    }
    interactions = {"user_index": dataset.user_index.astype(np.int32),
                    "item_index": dataset.item_index.astype(np.int32),
                    "weights": dataset.weights.astype(np.float32)}
    if dataset.timestamps is not None:
        interactions["timestamps"] = dataset.timestamps.astype(np.float64)
    arrays = {k: np.ascontiguousarray(np.asarray(v)) for k, v in arrays.items()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("recolens.json", json.dumps(meta, default=_json_default))
        archive.writestr("model.safetensors", save_arrays(arrays) if arrays else save_arrays({"_": np.zeros(1)}))
        archive.writestr("interactions.safetensors", save_arrays(interactions))
        archive.writestr("users.parquet", _table_bytes(dataset.users, dataset.user_ids))
        archive.writestr("items.parquet", _table_bytes(dataset.items, dataset.item_ids))
    return buffer.getvalue()


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a bundle config")


def save_model(model, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` atomically (temp file + ``os.replace``)."""
    path = Path(path)
    data = bundle_bytes(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _read_source(source: BundleSource) -> bytes:
    if isinstance(source, bytes):
        data = source
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise BundleError(f"no model bundle at {path}.")
        if path.stat().st_size > MAX_BUNDLE_BYTES:
            raise BundleError(f"{path.name} is larger than {MAX_BUNDLE_BYTES / 1024**3:.0f} GB; not a RecoLens bundle.")
        data = path.read_bytes()
    else:
        source.seek(0)
        data = source.read(MAX_BUNDLE_BYTES + 1)
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError("the file is too large to be a RecoLens bundle.")
    return data


def read_bundle(source: BundleSource) -> tuple[dict, dict[str, np.ndarray], Dataset]:
    """Validate and read a bundle: ``(meta, model arrays, dataset)``. Never executes code."""
    data = _read_source(source)
    if data[:1] == b"\x80" or data[:2] in (b"(d", b"(l", b"cc"):
        raise BundleError("this file is a Python pickle. RecoLens never loads pickles because they can run "
                          "code; export the model again from RecoLens (a .recolens bundle).")
    if not data.startswith(b"PK"):
        raise BundleError("this is not a RecoLens model bundle (expected a .recolens file saved by RecoLens).")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = set(archive.namelist())
    except zipfile.BadZipFile:
        raise BundleError("the bundle is damaged or truncated (not a complete archive); save it again.") from None
    if any(name.endswith(".pkl") or name.endswith("data.pkl") for name in names):
        raise BundleError("this file is a PyTorch/pickle checkpoint, which can run code when loaded; "
                          "RecoLens only loads .recolens bundles.")
    missing = _MEMBERS - names
    if missing:
        raise BundleError(f"this is not a complete RecoLens bundle (missing {', '.join(sorted(missing))}).")
    if sum(info.file_size for info in archive.infolist()) > MAX_BUNDLE_BYTES:
        raise BundleError("the bundle unpacks to more than the size limit; refusing to open it.")
    try:
        meta = json.loads(archive.read("recolens.json"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise BundleError("this is not a RecoLens model bundle.")
        if not isinstance(meta.get("dataset"), dict):
            raise BundleError("the bundle's data description is missing or damaged; save it again.")
        if int(meta.get("version", 0)) > VERSION:
            raise BundleError(f"the bundle was written by a newer RecoLens (format {meta['version']}); update RecoLens.")
        arrays = load_arrays(archive.read("model.safetensors"))
        interactions = load_arrays(archive.read("interactions.safetensors"))
        users = _read_table_bytes(archive.read("users.parquet"))
        items = _read_table_bytes(archive.read("items.parquet"))
    except BundleError:
        raise
    except (zipfile.BadZipFile, EOFError, ValueError, TypeError, KeyError, OSError, SafetensorError) as exc:
        raise BundleError(f"the bundle is damaged or truncated ({type(exc).__name__}); save it again.") from None
    dataset = _dataset_from_meta(meta["dataset"], interactions, users, items)
    return meta, arrays, dataset


def _dataset_from_meta(meta: dict, interactions: dict, users: pd.DataFrame, items: pd.DataFrame) -> Dataset:
    try:
        user_ids = np.asarray(meta["user_ids"], dtype=object)
        item_ids = np.asarray(meta["item_ids"], dtype=object)
        dataset = Dataset(
            user_ids=user_ids, item_ids=item_ids,
            user_index=interactions["user_index"].astype(np.int32),
            item_index=interactions["item_index"].astype(np.int32),
            weights=interactions["weights"].astype(np.float32), timestamps=interactions.get("timestamps"),
            users=users, items=items, user_roles=dict(meta["user_roles"]), item_roles=dict(meta["item_roles"]),
            profile_encoder=TableEncoder.from_dict(meta["profile_encoder"]),
            item_encoder=TableEncoder.from_dict(meta["item_encoder"]), has_ratings=bool(meta["has_ratings"]),
            item_label_column=meta.get("item_label_column"), category_column=meta.get("category_column"),
            report=Report(), name=str(meta.get("name", "bundle")))
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"the bundle's data description is damaged ({exc}).") from None
    n = len(dataset.user_index)
    if (len(users) != len(user_ids) or len(items) != len(item_ids) or len(dataset.item_index) != n
            or len(dataset.weights) != n or (n and (dataset.user_index.max() >= len(user_ids)
                                                   or dataset.item_index.max() >= len(item_ids)
                                                   or min(dataset.user_index.min(), dataset.item_index.min()) < 0))):
        raise BundleError("the bundle's id maps and interactions do not match; it is damaged.")
    return dataset


def load_model(source: BundleSource):
    """Rebuild the model stored in a bundle (any registered model class)."""
    from .base import REGISTRY

    meta, arrays, dataset = read_bundle(source)
    name = meta.get("model")
    if name not in REGISTRY:
        raise BundleError(f"the bundle holds an unknown model type {name!r}; it may come from a newer RecoLens.")
    cls = REGISTRY[name]
    try:
        model = cls(**meta.get("params", {}))
        model.dataset = dataset
        model._set_state(meta.get("config", {}), arrays)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise BundleError(f"the bundle's weights do not fit a {name} model for this data "
                          f"(dimension mismatch: {str(exc)[:200]}). It is damaged or from another version.") from None
    return model


def check_compatible(model, dataset: Dataset) -> str | None:
    """A message if ``model`` was trained on other data than ``dataset`` (else ``None``)."""
    trained = model._require_fitted()
    if trained.fingerprint == dataset.fingerprint:
        return None
    return (f"this model was trained on '{trained.name}' ({trained.n_users:,} users, {trained.n_items:,} items), "
            f"not on the loaded data '{dataset.name}' ({dataset.n_users:,} users, {dataset.n_items:,} items). "
            "It comes with its own copy of that data, which can be used instead.")
