"""Nearest neighbours by profile: recommend what similar people picked.

Similarity of two people is the cosine of their static profile features, plus (weighted by
:attr:`ProfileKNNRecommender.behaviour_weight`) the cosine of their category shares when the
person has a history. A person's score for an item is the similarity-weighted share of their
``k`` nearest neighbours who interacted with it, plus a little popularity to break ties.

Neighbours are found by exact dense matrix products in chunks sized so that one chunk's
similarity block stays near :data:`_BLOCK_FLOATS` floats (about 80 MB), which handles
100,000 users without an index structure.
"""
from __future__ import annotations

import logging
from typing import Mapping

import numpy as np
import scipy.sparse as sp

from ..dataset import Dataset
from .base import Callback, Recommender, register, straddling_ties

logger = logging.getLogger(__name__)

#: Entries of one (queries x neighbours) similarity block.
_BLOCK_FLOATS = 20_000_000


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1).astype(np.float32)


def _share_columns(dataset: Dataset) -> np.ndarray:
    """Positions of the ``share:<category>`` columns of the behaviour features."""
    names = dataset.behaviour_encoder.feature_names
    return np.asarray([i for i, name in enumerate(names) if name.startswith("share:")], dtype=np.int64)


def neighbour_scores(queries: np.ndarray, pool_columns: np.ndarray, pool_users: np.ndarray,
                     pool_items: sp.csr_matrix, k: int, exclude: np.ndarray | None = None,
                     columns: np.ndarray | None = None, block_floats: int = _BLOCK_FLOATS) -> np.ndarray:
    """Similarity-weighted share of each query's ``k`` most similar pool users who picked each item.

    Shared by :class:`ProfileKNNRecommender` and the fused model's ``similar_people`` source.

    Parameters
    ----------
    queries : ndarray of float32, shape (n, d)
        Query vectors (unit static profile, then weighted unit category shares).
    pool_columns : ndarray of float32, shape (d, n_pool)
        The pool users' vectors as columns: one product gives every similarity.
    pool_users : ndarray of int, shape (n_pool,)
        Training index of each pool user, sorted (to find a query's own position).
    pool_items : scipy.sparse.csr_matrix, shape (n_pool, n_items)
        Binary interactions of the pool users.
    k : int
        Neighbours per query (all of the pool when it is smaller).
    exclude : ndarray of int, shape (n,), optional
        Training index of each query: never one's own neighbour.
    columns : ndarray of int, optional
        Return only these items' columns (n, len(columns)), without building whole rows.
    block_floats : int
        Entries of one (queries x pool) similarity block (bounds memory).

    Returns
    -------
    ndarray of float32, shape (n, n_items) or (n, len(columns))

    Neighbours are chosen per row with ``argpartition``; pool users tied with the ``k``-th
    similarity (people with the same profile often are) share its places (:func:`_neighbour_weights`).
    The result depends only on that row: a person's scores never depend on who else is in the
    batch, nor on the processor or the order of the data.
    """
    n_rows, n_pool = queries.shape[0], pool_columns.shape[1]
    out = np.zeros((n_rows, pool_items.shape[1] if columns is None else len(columns)), dtype=np.float32)
    if n_pool == 0:
        return out
    k = min(int(k), n_pool)
    chunk = max(1, block_floats // n_pool)
    for start in range(0, n_rows, chunk):
        stop = min(start + chunk, n_rows)
        similarity = queries[start:stop] @ pool_columns
        if exclude is not None:
            position = np.minimum(np.searchsorted(pool_users, exclude[start:stop]), n_pool - 1)
            own = pool_users[position] == exclude[start:stop]
            similarity[np.flatnonzero(own), position[own]] = -np.inf
        rows, neighbours, weights = _neighbour_weights(similarity, k)
        weights = np.where(np.isfinite(weights), np.maximum(weights, 0.0), 0.0)
        totals = np.bincount(rows, weights=weights, minlength=stop - start)[rows]
        weights = np.divide(weights, totals, out=np.zeros_like(weights), where=totals > 0).astype(np.float32)
        mixing = sp.csr_matrix((weights, (rows, neighbours)), shape=(stop - start, n_pool))
        product = mixing @ pool_items          # sparse: the k neighbours' items of each query
        out[start:stop] = (product if columns is None else product[:, columns]).toarray()
    return out


def _neighbour_weights(similarity: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's ``k`` most similar pool users as ``(row, pool position, similarity)`` entries.

    Where pool users tie with the ``k``-th similarity beyond the ``k`` places (people with the same
    profile often do), every tied one is kept with the weight ``similarity * places / tied``: the
    expected weight over every way of breaking the tie, so no tie-break (no processor's partial sort,
    no order of the data) decides who counts.
    """
    n_rows, n_pool = similarity.shape
    if k >= n_pool:
        rows = np.repeat(np.arange(n_rows), n_pool)
        return rows, np.tile(np.arange(n_pool), n_rows), similarity.ravel().astype(np.float64)
    neighbours = np.argpartition(similarity, n_pool - k, axis=1)[:, n_pool - k:]
    weights = np.take_along_axis(similarity, neighbours, axis=1).astype(np.float64)
    shared, kth, tied, kept = straddling_ties(similarity, weights)
    plain = np.setdiff1d(np.arange(n_rows), shared, assume_unique=True)
    rows, columns, values = [np.repeat(plain, k)], [neighbours[plain].ravel()], [weights[plain].ravel()]
    if len(shared):
        subset, kth = similarity[shared], kth[shared]
        better_row, better_column = np.nonzero(subset > kth)
        tied_row, tied_column = np.nonzero(tied[shared])
        share = kept[shared].sum(axis=1) / tied[shared].sum(axis=1)          # places left / people tied
        rows += [shared[better_row], shared[tied_row]]
        columns += [better_column, tied_column]
        values += [subset[better_row, better_column].astype(np.float64), kth[tied_row, 0] * share[tied_row]]
    return np.concatenate(rows), np.concatenate(columns), np.concatenate(values)


@register
class ProfileKNNRecommender(Recommender):
    """User-kNN where neighbours are found by profile (and taste profile), not by co-ratings.

    Parameters
    ----------
    k : int, default 50
        Number of neighbours.
    behaviour_weight : float, default 1.0
        Weight of the category-share cosine next to the static-profile cosine (0: static only).
        Used for people who have a history.
    popularity_weight : float, default 0.001
        Global popularity (scaled to 0..1) added to break ties between items no neighbour picked.
    """

    name = "profile_knn"
    uses_profile = True

    def __init__(self, k: int = 50, behaviour_weight: float = 1.0, popularity_weight: float = 0.001) -> None:
        self.k = k
        self.behaviour_weight = behaviour_weight
        self.popularity_weight = popularity_weight

    def _fit(self, dataset: Dataset, callback: Callback | None) -> None:
        if int(self.k) < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if self.behaviour_weight < 0 or self.popularity_weight < 0:
            raise ValueError("behaviour_weight and popularity_weight must not be negative")
        counts = np.bincount(dataset.item_index, minlength=dataset.n_items).astype(np.float32)
        self._popularity = counts / max(float(counts.max(initial=0.0)), 1.0)
        self._prepare(dataset)
        if dataset.user_features.shape[1] == 0:
            logger.warning("profile kNN: the data has no profile columns; neighbours come from category shares "
                           "only (popularity where there are none)")
        if callback is not None:
            callback(0, {}, {})

    def _prepare(self, dataset: Dataset) -> None:
        """Neighbour pool (users with a history) and their unit feature vectors."""
        binary = dataset.matrix.copy()
        binary.data = np.ones_like(binary.data, dtype=np.float32)
        self._pool = np.flatnonzero(np.diff(binary.indptr) > 0).astype(np.int32)
        self._pool_items = binary[self._pool]
        self._shares = _share_columns(dataset)
        self._static = _unit_rows(dataset.user_features)
        self._taste = _unit_rows(dataset.behaviour_features[:, self._shares])
        # Pool vectors as columns, so one product gives static + weighted taste similarity.
        self._pool_columns = np.ascontiguousarray(
            np.hstack([self._static[self._pool], self._taste[self._pool]]).T, dtype=np.float32)

    # ------------------------------------------------------------------ scoring
    def _neighbour_scores(self, static: np.ndarray, taste: np.ndarray, has_history: np.ndarray,
                          self_index: np.ndarray | None) -> np.ndarray:
        """Scores from the ``k`` most similar pool users (plus a little popularity).

        Parameters
        ----------
        static : ndarray of float32, shape (n, P)
            Unit static profile rows.
        taste : ndarray of float32, shape (n, C)
            Unit category-share rows.
        has_history : ndarray of bool, shape (n,)
        self_index : ndarray of int, shape (n,), optional
            Training index of each query, so a user is never their own neighbour.
        """
        n_rows = static.shape[0]
        scores = np.tile(self.popularity_weight * self._popularity, (n_rows, 1)).astype(np.float32)
        if len(self._pool) == 0 or n_rows == 0:
            return scores
        weight = np.where(has_history, np.float32(self.behaviour_weight), np.float32(0.0)).astype(np.float32)
        queries = np.hstack([static, weight[:, None] * taste]).astype(np.float32)
        scores += neighbour_scores(queries, self._pool_columns, self._pool, self._pool_items, int(self.k),
                                   exclude=self_index)
        return scores

    def score_users(self, user_index: np.ndarray) -> np.ndarray:
        user_index = np.asarray(user_index, dtype=np.int64)
        has_history = np.diff(self.dataset.matrix.indptr)[user_index] > 0
        return self._neighbour_scores(self._static[user_index], self._taste[user_index], has_history, user_index)

    def score_new_users(self, static: np.ndarray, behaviour: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        has_history = np.diff(history.indptr) > 0
        return self._neighbour_scores(_unit_rows(static), _unit_rows(behaviour[:, self._shares]), has_history, None)

    def item_similarity(self, item_index: np.ndarray) -> np.ndarray:
        raise NotImplementedError("profile kNN compares people, not items")

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {}, {"popularity": self._popularity}

    def _set_state(self, config: dict, arrays: Mapping[str, np.ndarray]) -> None:
        popularity = np.asarray(arrays["popularity"], dtype=np.float32)
        if popularity.shape != (self.dataset.n_items,):
            raise ValueError(f"popularity has shape {popularity.shape}, expected ({self.dataset.n_items},)")
        self._popularity = popularity
        self._prepare(self.dataset)
