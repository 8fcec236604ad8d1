"""EASE: a closed-form linear item-item model (Steck, "Embarrassingly Shallow Autoencoders", 2019).

With the binary users x items matrix ``X``::

    P = (X^T X + lambda I)^-1
    B = I - P / diag(P)      (column j divided by P_jj), so diag(B) = 0

and a user's scores are ``x_u @ B``. The inverse costs O(n_items^3) time and two dense
n_items x n_items float32 matrices of memory, so only the :attr:`EASERecommender.max_items`
most popular items (default 20,000: about 1.6 GB per matrix) are modelled; the rest are
ranked after them by popularity. EASE cannot use profiles: a new person without a history
gets the most popular items.
"""
from __future__ import annotations

import logging
from typing import Mapping

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from ..dataset import Dataset
from .base import Callback, HistoryRecommender, register

logger = logging.getLogger(__name__)


def ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """The EASE item-item matrix from the Gram matrix ``X^T X`` (overwritten).

    Parameters
    ----------
    gram : ndarray of float32, shape (n, n)
        ``X^T X``; used as work space.
    l2 : float
        The ridge penalty ``lambda``.

    Returns
    -------
    ndarray of float32, shape (n, n)
        ``B`` with a zero diagonal.
    """
    n = gram.shape[0]
    gram[np.diag_indices(n)] += np.float32(l2)
    try:
        factor = scipy.linalg.cho_factor(gram, lower=False, overwrite_a=True, check_finite=False)
        precision = scipy.linalg.cho_solve(factor, np.eye(n, dtype=gram.dtype), overwrite_b=True,
                                           check_finite=False)
    except np.linalg.LinAlgError:
        # Not numerically positive definite in float32 (tiny l2): fall back to a general inverse.
        precision = np.linalg.inv(gram)
    precision = precision.astype(np.float32, copy=False)
    precision /= -np.diag(precision).copy()[None, :]
    precision[np.diag_indices(n)] = 0.0
    return precision


@register
class EASERecommender(HistoryRecommender):
    """Item-item linear model with a closed-form solution.

    Parameters
    ----------
    l2 : float, default 500
        Ridge penalty. Larger values favour popular items and generalise more; values from
        100 to 1,000 suit most data sets of thousands of users.
    max_items : int, default 20000
        Only this many of the most popular items are modelled (the inverse is O(n^3)); the
        others are ranked below them by popularity.
    """

    name = "ease"

    def __init__(self, l2: float = 500.0, max_items: int = 20_000) -> None:
        self.l2 = l2
        self.max_items = max_items

    def _fit(self, dataset: Dataset, callback: Callback | None) -> None:
        if not self.l2 > 0:
            raise ValueError(f"l2 must be positive, got {self.l2}")
        if int(self.max_items) < 1:
            raise ValueError(f"max_items must be at least 1, got {self.max_items}")
        counts = np.bincount(dataset.item_index, minlength=dataset.n_items).astype(np.float32)
        self._popularity = counts / max(float(counts.max(initial=0.0)), 1.0)
        n_model = min(dataset.n_items, int(self.max_items))
        if n_model < dataset.n_items:
            logger.warning("EASE models the %d most popular of %d items (its inverse grows with the cube "
                           "of the catalogue); the rest are ranked by popularity.", n_model, dataset.n_items)
            order = np.lexsort((np.arange(dataset.n_items), -counts))
            modelled = np.sort(order[:n_model])
        else:
            modelled = np.arange(dataset.n_items)
        self._modelled = modelled.astype(np.int64)
        binary = self._binary_columns(dataset.matrix)
        gram = np.asarray((binary.T @ binary).toarray(), dtype=np.float32)
        self._weights = ease_weights(gram, float(self.l2))
        if callback is not None:
            callback(0, {}, {})

    def _binary_columns(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        """The modelled columns of ``matrix`` as 0/1, float32."""
        binary = matrix[:, self._modelled] if len(self._modelled) < matrix.shape[1] else matrix.copy()
        binary = sp.csr_matrix(binary, dtype=np.float32)
        binary.data = np.ones_like(binary.data)
        return binary

    # ------------------------------------------------------------------ scoring
    def _scores(self, history: sp.csr_matrix) -> np.ndarray:
        """``history @ B`` on the modelled items; popularity for empty histories and other items."""
        n_rows, n_items = history.shape[0], len(self._popularity)
        binary = self._binary_columns(history)
        modelled_scores = np.asarray(binary @ self._weights, dtype=np.float32)
        if len(self._modelled) == n_items:
            scores = modelled_scores
        else:
            # Items outside the model rank below every modelled item, in popularity order.
            floor = modelled_scores.min(axis=1, keepdims=True) - 1.0 if modelled_scores.shape[1] else 0.0
            scores = np.broadcast_to(floor + 0.5 * self._popularity[None, :], (n_rows, n_items)).copy()
            scores[:, self._modelled] = modelled_scores
        empty = np.diff(binary.indptr) == 0
        scores[empty] = self._popularity
        return scores

    def item_similarity(self, item_index: np.ndarray) -> np.ndarray:
        """Row ``i`` of ``B``: how strongly item ``i`` points to each item (0 outside the model)."""
        item_index = np.asarray(item_index)
        out = np.zeros((len(item_index), len(self._popularity)), dtype=np.float32)
        position = np.searchsorted(self._modelled, item_index)
        position = np.minimum(position, len(self._modelled) - 1)
        inside = self._modelled[position] == item_index
        rows = np.flatnonzero(inside)
        out[rows[:, None], self._modelled[None, :]] = self._weights[position[inside]]
        return out

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {}, {"weights": self._weights, "modelled": self._modelled, "popularity": self._popularity}

    def _set_state(self, config: dict, arrays: Mapping[str, np.ndarray]) -> None:
        n_items = self.dataset.n_items
        popularity = np.asarray(arrays["popularity"], dtype=np.float32)
        modelled = np.asarray(arrays["modelled"], dtype=np.int64)
        weights = np.asarray(arrays["weights"], dtype=np.float32)
        if popularity.shape != (n_items,):
            raise ValueError(f"popularity has shape {popularity.shape}, expected ({n_items},)")
        if (modelled.ndim != 1 or len(modelled) == 0 or len(modelled) > n_items or modelled.min() < 0
                or modelled.max() >= n_items or np.any(np.diff(modelled) <= 0)):
            raise ValueError(f"the modelled item list does not fit {n_items} items")
        if weights.shape != (len(modelled), len(modelled)):
            raise ValueError(f"weights have shape {weights.shape}, expected ({len(modelled)}, {len(modelled)})")
        self._popularity, self._modelled, self._weights = popularity, modelled, weights
