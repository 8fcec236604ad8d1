"""The one contract every recommender in RecoLens follows.

Models work on dense integer indices; external ids are translated at the edge by the
:class:`~recommender.dataset.Dataset` the model was fitted on. A subclass implements
:meth:`Recommender._fit`, :meth:`Recommender.score_users` and
:meth:`Recommender.score_new_users` (and, to be saved, :meth:`_get_state` /
:meth:`_set_state`); ranking, exclusion of seen items, id translation and persistence
live here once.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..dataset import Dataset, new_user_labels

logger = logging.getLogger(__name__)

#: ``callback(epoch, losses, metrics)``; returning ``False`` asks training to stop early.
Callback = Callable[[int, Mapping[str, float], Mapping[str, float]], Any]

#: Model classes by :attr:`Recommender.name`, filled by :func:`register`.
REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make a model known to bundles, the CLI and the pages by its ``name``."""
    REGISTRY[cls.name] = cls
    return cls


#: How many users are scored at once (bounds memory at batch x n_items floats).
SCORE_BATCH = 1024

#: Scores that :func:`top_k` partially sorts at once (its temporaries take 12 bytes per score).
TOP_K_BLOCK_FLOATS = 4_000_000


def top_k(scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the ``k`` best items per row, best first.

    Parameters
    ----------
    scores : ndarray of float, shape (n_rows, n_items)
        Modified in place where ``exclude`` is set.
    k : int
        Clipped to the catalogue size. Excluded items come last, with the score -inf, where fewer
        than ``k`` items remain. Ties are broken by item index (lowest first), also between the
        items tied with the ``k``-th best, so the same scores give the same list on every machine.
    exclude : scipy.sparse.csr_matrix, shape (n_rows, n_items), optional
        Non-zero entries are never recommended.

    Returns
    -------
    items : ndarray of int64, shape (n_rows, k)
    values : ndarray of float32, shape (n_rows, k)
    """
    n_rows, n_items = scores.shape
    k = max(0, min(int(k), n_items))
    if exclude is not None and exclude.nnz:
        coo = exclude.tocoo()
        scores[coo.row, coo.col] = -np.inf
    items = np.zeros((n_rows, k), dtype=np.int64)
    values = np.zeros((n_rows, k), dtype=np.float32)
    if k == 0:
        return items, values
    # The partial sort needs a negated copy and an int64 index of its whole input: done in blocks
    # of rows, they stay at TOP_K_BLOCK_FLOATS entries (1,000 users x 100,000 items would be 1.2 GB).
    rows = max(1, TOP_K_BLOCK_FLOATS // n_items)
    for start in range(0, n_rows, rows):
        block = scores[start:start + rows]
        if k < n_items:
            part = np.argpartition(-block, k - 1, axis=1)[:, :k]
            part_scores = np.take_along_axis(block, part, axis=1)
            keep_lowest_tied(block, k, part, part_scores)
        else:
            part = np.tile(np.arange(n_items), (len(block), 1))
            part_scores = block
        # Within the k, ties are ordered by item index.
        order = np.lexsort((part, -part_scores), axis=1)
        items[start:start + rows] = np.take_along_axis(part, order, axis=1)
        values[start:start + rows] = np.take_along_axis(part_scores, order, axis=1)
    return items, values


def straddling_ties(values: np.ndarray, part_values: np.ndarray, largest: bool = True
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """After ``np.argpartition``: the rows where more items tie with the ``k``-th best than it kept.

    ``part_values`` are the values of the ``k`` positions per row that the partial sort kept
    (``largest=False`` when the best values are the smallest). Which tied items it keeps depends on
    its algorithm, and NumPy picks a SIMD variant by processor (AVX-512, AVX2 or none), so in these
    rows the same values could give different lists on two machines. Returns the rows, the ``k``-th
    value per row (shape (n, 1)), and masks of the tied entries in ``values`` and in ``part_values``.
    Rows without such a tie (almost all, with learnt scores) cost two passes: compare and count.
    """
    kth = part_values.min(axis=1, keepdims=True) if largest else part_values.max(axis=1, keepdims=True)
    tied = values == kth
    kept = part_values == kth
    return np.flatnonzero(tied.sum(axis=1) > kept.sum(axis=1)), kth, tied, kept


def keep_lowest_tied(values: np.ndarray, k: int, part: np.ndarray, part_values: np.ndarray,
                     largest: bool = True) -> None:
    """After ``np.argpartition``: where items tie with the ``k``-th best, keep those with the lowest indices.

    ``part`` (the ``k`` positions per row of ``values`` the partial sort kept, ``part_values`` their
    values) is edited in place; the values do not change. See :func:`straddling_ties` for why.
    """
    rows, _, tied, kept = straddling_ties(values, part_values, largest)
    if not len(rows):
        return
    # The partial sort kept every better item and n_kept of the tied ones: swap those for the
    # n_kept tied items with the lowest indices (np.nonzero lists each row's columns in order).
    n_kept = kept[rows].sum(axis=1)
    row, column = np.nonzero(tied[rows])
    rank = np.arange(len(row)) - np.searchsorted(row, row)
    subset = part[rows]
    subset[kept[rows]] = column[rank < n_kept[row]]
    part[rows] = subset


class Recommender(ABC):
    """Base class: hyperparameters in the constructor, learned state created in :meth:`fit`."""

    #: Short name used in tables, the CLI and bundles.
    name: ClassVar[str] = "base"
    #: Whether the model can use a person's profile (else new users get its fallback).
    uses_profile: ClassVar[bool] = False

    dataset: Dataset | None = None

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def _fit(self, dataset: Dataset, callback: Callback | None) -> None:
        """Learn from ``dataset`` (already stored on ``self.dataset``)."""

    @abstractmethod
    def score_users(self, user_index: np.ndarray) -> np.ndarray:
        """Scores of every item for known users: float32, shape (len(user_index), n_items)."""

    @abstractmethod
    def score_new_users(self, static: np.ndarray, behaviour: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        """Scores for people not in the training data, from :meth:`Dataset.encode_new_users` output.

        Returns float32, shape (n_people, n_items).
        """

    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON-able config and named arrays that rebuild the fitted model with :meth:`_set_state`."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")

    def _set_state(self, config: dict, arrays: Mapping[str, np.ndarray]) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be loaded")

    def get_params(self) -> dict:
        """Constructor arguments (hyperparameters)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in ("dataset",)}

    # ------------------------------------------------------------------ public API
    def fit(self, dataset: Dataset, callback: Callback | None = None) -> "Recommender":
        """Learn from ``dataset``; returns ``self``."""
        self.dataset = dataset
        self._fit(dataset, callback)
        return self

    def _require_fitted(self) -> Dataset:
        if self.dataset is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit(dataset) first.")
        return self.dataset

    def recommend(self, user_ids: Iterable | str, k: int = 10, exclude_seen: bool = True) -> pd.DataFrame:
        """Top-``k`` items for users in the training data.

        Returns
        -------
        pandas.DataFrame
            Columns ``user_id``, ``rank`` (1-based), ``item_id``, ``score``; external ids.

        Raises
        ------
        KeyError
            Naming any user id that is not in the data.
        """
        dataset = self._require_fitted()
        ids = [user_ids] if isinstance(user_ids, str) else list(user_ids)
        index = dataset.user_indices(ids)
        frames = []
        for start in range(0, len(index), SCORE_BATCH):
            batch = index[start:start + SCORE_BATCH]
            scores = np.array(self.score_users(batch), dtype=np.float32, copy=True)
            exclude = dataset.matrix[batch] if exclude_seen else None
            items, values = top_k(scores, k, exclude)
            frames.append(_as_frame(np.asarray(ids, dtype=object)[start:start + len(batch)], items, values,
                                    dataset.item_ids))
        return _concat(frames)

    def recommend_new_users(self, profiles: pd.DataFrame, k: int = 10,
                            histories: Mapping[str, Sequence] | None = None) -> pd.DataFrame:
        """Top-``k`` items for people who are not in the training data.

        Parameters
        ----------
        profiles : pandas.DataFrame
            A ``user_id`` column (any labels) and the training data's profile columns.
        histories : dict, optional
            Label -> item ids the person already interacted with (excluded, and used as signal).
        """
        dataset = self._require_fitted()
        labels = new_user_labels(profiles)
        static, behaviour, history = dataset.encode_new_users(profiles, histories)
        scores = np.array(self.score_new_users(static, behaviour, history), dtype=np.float32, copy=True)
        items, values = top_k(scores, k, history)
        return _as_frame(np.asarray(labels, dtype=object), items, values, dataset.item_ids)

    def item_embeddings(self) -> np.ndarray | None:
        """Learned item vectors (n_items, d) where the model has them."""
        return None

    def user_embeddings(self) -> np.ndarray | None:
        """Learned user vectors (n_users, d) where the model has them."""
        return None

    def item_similarity(self, item_index: np.ndarray) -> np.ndarray:
        """Similarity of the given items to every item, shape (len(item_index), n_items).

        Default: cosine similarity of :meth:`item_embeddings`.
        """
        embeddings = self.item_embeddings()
        if embeddings is None:
            raise NotImplementedError(f"{type(self).__name__} has no item similarity")
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        unit = embeddings / np.where(norms > 0, norms, 1)
        return (unit[item_index] @ unit.T).astype(np.float32)

    def similar_items(self, item_ids: Iterable | str, k: int = 10) -> pd.DataFrame:
        """The ``k`` most similar items to each given item (itself excluded).

        Returns columns ``item_id``, ``rank``, ``similar_item_id``, ``score``.
        """
        dataset = self._require_fitted()
        ids = [item_ids] if isinstance(item_ids, str) else list(item_ids)
        index = dataset.item_indices(ids)
        scores = np.array(self.item_similarity(index), dtype=np.float32, copy=True)
        scores[np.arange(len(index)), index] = -np.inf
        items, values = top_k(scores, k)
        frame = _as_frame(np.asarray(ids, dtype=object), items, values, dataset.item_ids)
        return frame.rename(columns={"user_id": "item_id", "item_id": "similar_item_id"})

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write a bundle (weights, JSON config, id maps, encoders; never a pickle) atomically."""
        from .bundle import save_model

        return save_model(self, path)

    @classmethod
    def load(cls, path, *, dataset: Dataset | None = None) -> "Recommender":
        """Load a bundle written by :meth:`save` (of this class, or any class when called on the base)."""
        from .bundle import load_model

        model = load_model(path)
        if cls is not Recommender and not isinstance(model, cls):
            from ..errors import BundleError

            raise BundleError(f"the bundle holds a '{model.name}' model, not {cls.__name__}.")
        return model

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def _as_frame(labels: np.ndarray, items: np.ndarray, values: np.ndarray, item_ids: np.ndarray) -> pd.DataFrame:
    n_rows, k = items.shape
    valid = np.isfinite(values)
    return pd.DataFrame({
        "user_id": np.repeat(labels, k)[valid.ravel()],
        "rank": np.tile(np.arange(1, k + 1), n_rows)[valid.ravel()],
        "item_id": item_ids[items.ravel()[valid.ravel()]],
        "score": values.ravel()[valid.ravel()],
    })


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame({"user_id": pd.Series(dtype=object), "rank": pd.Series(dtype=int),
                             "item_id": pd.Series(dtype=object), "score": pd.Series(dtype=np.float32)})
    return pd.concat(frames, ignore_index=True)


class HistoryRecommender(Recommender):
    """A model that scores a person from the items they interacted with alone (item-item models).

    Subclasses implement :meth:`_scores`; known and new people are scored the same way.
    """

    @abstractmethod
    def _scores(self, history: sp.csr_matrix) -> np.ndarray:
        """Scores, float32 (n_rows, n_items), for a users x items history matrix."""

    def score_users(self, user_index: np.ndarray) -> np.ndarray:
        return self._scores(self._require_fitted().matrix[np.asarray(user_index)])

    def score_new_users(self, static: np.ndarray, behaviour: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        return self._scores(history)
