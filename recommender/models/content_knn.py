"""Content-based item kNN: recommend items that look like what a person already picked.

Items are compared by the cosine of their content features (category, brand, tags, price,
title words: :attr:`Dataset.item_features`). Each item keeps its :attr:`ContentKNNRecommender.k`
most similar items (a sparse items x items matrix with a zero diagonal); a person's score for
an item is the sum of its similarities to the items in their history. Items nobody has
interacted with yet still get scores through their content, which is what a new arrival needs.
A person without a history gets the most popular items; popularity also breaks ties.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping

import numpy as np
import scipy.sparse as sp

from ..dataset import Dataset
from .base import Callback, HistoryRecommender, keep_lowest_tied, register

logger = logging.getLogger(__name__)

#: Entries of one (items x items) similarity block while building the neighbour lists.
_BLOCK_FLOATS = 20_000_000


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1).astype(np.float32)


def top_k_similarity(unit: np.ndarray, k: int) -> sp.csr_matrix:
    """The ``k`` largest positive cosine similarities of every row to the other rows.

    Parameters
    ----------
    unit : ndarray of float32, shape (n, d)
        Rows of unit length (or zero).
    k : int

    Returns
    -------
    scipy.sparse.csr_matrix of float32, shape (n, n)
        Zero diagonal; at most ``k`` entries per row, indices sorted.

    Notes
    -----
    All pairs, block by block: the product runs on BLAS's threads while a second thread picks the
    previous block's ``k`` largest (``np.argpartition`` uses one core and releases the GIL). The
    block is negated in place for the partition rather than copied. Ties with the ``k``-th largest
    similarity keep the lowest indices (:func:`~recommender.models.base.keep_lowest_tied`).
    """
    n = unit.shape[0]
    k = min(int(k), max(n - 1, 0))
    if n == 0 or k == 0 or unit.shape[1] == 0:
        return sp.csr_matrix((n, n), dtype=np.float32)
    chunk = max(1, _BLOCK_FLOATS // n)

    def largest(start: int, negated: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        neighbours = np.argpartition(negated, k - 1, axis=1)[:, :k]
        kept = np.take_along_axis(negated, neighbours, axis=1)
        keep_lowest_tied(negated, k, neighbours, kept, largest=False)
        weights = -kept
        keep = weights > 0
        rows = np.broadcast_to(np.arange(start, start + len(negated))[:, None], neighbours.shape)
        return rows[keep], neighbours[keep], weights[keep]

    parts, pending = [], None
    with ThreadPoolExecutor(1) as selection:
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            negated = unit[start:stop] @ unit.T
            np.negative(negated, out=negated)
            negated[np.arange(stop - start), np.arange(start, stop)] = np.inf
            if pending is not None:
                parts.append(pending.result())      # at most two blocks in memory
            pending = selection.submit(largest, start, negated)
        parts.append(pending.result())
    rows, columns, values = (np.concatenate(part) for part in zip(*parts))
    matrix = sp.csr_matrix((values.astype(np.float32), (rows, columns)), shape=(n, n))
    matrix.sort_indices()
    matrix.indices = matrix.indices.astype(np.int32, copy=False)
    return matrix


@register
class ContentKNNRecommender(HistoryRecommender):
    """Item-item cosine similarity on item content features.

    Parameters
    ----------
    k : int, default 50
        Neighbours kept per item.
    popularity_weight : float, default 0.001
        Global popularity (scaled to 0..1) added to break ties.
    """

    name = "content_knn"

    def __init__(self, k: int = 50, popularity_weight: float = 0.001) -> None:
        self.k = k
        self.popularity_weight = popularity_weight

    def _fit(self, dataset: Dataset, callback: Callback | None) -> None:
        if int(self.k) < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if self.popularity_weight < 0:
            raise ValueError("popularity_weight must not be negative")
        counts = np.bincount(dataset.item_index, minlength=dataset.n_items).astype(np.float32)
        self._popularity = counts / max(float(counts.max(initial=0.0)), 1.0)
        if dataset.item_features.shape[1] == 0:
            logger.warning("content kNN: the data has no item features; it falls back to popularity")
        self._unit = _unit_rows(dataset.item_features)
        self._neighbours = top_k_similarity(self._unit, int(self.k))
        if callback is not None:
            callback(0, {}, {})

    # ------------------------------------------------------------------ scoring
    def _scores(self, history: sp.csr_matrix) -> np.ndarray:
        binary = sp.csr_matrix(history, dtype=np.float32, copy=True)
        binary.data = np.ones_like(binary.data)
        scores = np.asarray((binary @ self._neighbours).toarray(), dtype=np.float32)
        scores += np.float32(self.popularity_weight) * self._popularity[None, :]
        empty = np.diff(binary.indptr) == 0
        scores[empty] = self._popularity
        return scores

    def item_similarity(self, item_index: np.ndarray) -> np.ndarray:
        """Cosine similarity of the content features (all items, not only the kept neighbours)."""
        return (self._unit[np.asarray(item_index)] @ self._unit.T).astype(np.float32)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        neighbours = self._neighbours
        return {}, {"popularity": self._popularity, "neighbours_data": neighbours.data,
                    "neighbours_indices": neighbours.indices.astype(np.int32),
                    "neighbours_indptr": neighbours.indptr.astype(np.int64)}

    def _set_state(self, config: dict, arrays: Mapping[str, np.ndarray]) -> None:
        n_items = self.dataset.n_items
        popularity = np.asarray(arrays["popularity"], dtype=np.float32)
        data = np.asarray(arrays["neighbours_data"], dtype=np.float32)
        indices = np.asarray(arrays["neighbours_indices"], dtype=np.int32)
        indptr = np.asarray(arrays["neighbours_indptr"], dtype=np.int64)
        if popularity.shape != (n_items,):
            raise ValueError(f"popularity has shape {popularity.shape}, expected ({n_items},)")
        if (indptr.shape != (n_items + 1,) or len(data) != len(indices) or indptr[0] != 0
                or indptr[-1] != len(data) or np.any(np.diff(indptr) < 0)
                or (len(indices) and (indices.min() < 0 or indices.max() >= n_items))):
            raise ValueError(f"the neighbour lists do not fit {n_items} items")
        unit = _unit_rows(self.dataset.item_features)
        self._popularity = popularity
        self._neighbours = sp.csr_matrix((data, indices, indptr), shape=(n_items, n_items))
        self._unit = unit
