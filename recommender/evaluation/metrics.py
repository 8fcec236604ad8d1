"""Ranking and beyond-accuracy metrics, vectorised over users.

Every ranking metric takes

* ``top_items``: ndarray of int, shape (n_users, K): each user's recommended item indices,
  best first; ``-1`` marks an empty slot (fewer candidates than K);
* ``relevant``: scipy.sparse CSR, shape (n_users, n_items): non-zero where an item is
  relevant for the user of that row (binary relevance);

and returns one float64 value per user, so a breakdown can group them. ``k`` (optional)
uses only the first ``k`` columns; by default the list length ``K`` is ``k``.

Definitions (binary relevance, ``hits_j`` = 1 when the item at rank ``j`` is relevant,
``R`` = number of relevant items of the user):

* precision@K = hits / K (K = list length, after clipping to the catalogue);
* recall@K = hits / R (the standard definition: it cannot reach 1 when R > K);
* NDCG@K = sum_j hits_j / log2(j + 1) divided by the same sum for an ideal list with
  min(R, K) hits at the top (j = 1..K);
* MAP@K (average precision) = sum_j precision@j * hits_j / min(R, K);
* hit rate@K = 1 if any hit; MRR@K = 1 / rank of the first hit (0 without a hit).

Recall, NDCG and MAP are NaN for a user with no relevant item (undefined, and such users
are not evaluated); precision, hit rate and MRR are 0.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = [
    "hits", "n_relevant", "precision_at_k", "recall_at_k", "ndcg_at_k", "average_precision_at_k",
    "hit_rate_at_k", "reciprocal_rank_at_k", "ranking_metrics", "RANKING_METRICS", "recommendation_counts",
    "catalogue_coverage", "gini_index", "popularity_share", "novelty", "mean_popularity", "unit_rows",
    "intra_list_diversity",
]


def _top(top_items: np.ndarray, k: int | None) -> np.ndarray:
    top_items = np.asarray(top_items)
    if top_items.ndim != 2:
        raise ValueError(f"top_items must be a 2-d array (n_users, K), not shape {top_items.shape}")
    if k is None:
        return top_items
    if int(k) < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    return top_items[:, :int(k)]


def _relevant_csr(relevant: sp.spmatrix, n_users: int) -> sp.csr_matrix:
    matrix = sp.csr_matrix(relevant, copy=True)
    if matrix.shape[0] != n_users:
        raise ValueError(f"relevant has {matrix.shape[0]} rows but top_items has {n_users}")
    matrix.eliminate_zeros()
    matrix.sum_duplicates()  # also sorts the indices
    return matrix


def n_relevant(relevant: sp.spmatrix) -> np.ndarray:
    """Number of relevant items per user: int64, shape (n_users,)."""
    matrix = sp.csr_matrix(relevant, copy=True)
    matrix.eliminate_zeros()
    matrix.sum_duplicates()
    return np.diff(matrix.indptr).astype(np.int64)


def hits(top_items: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> np.ndarray:
    """Whether each recommended item is relevant: bool, shape (n_users, K).

    Vectorised through one ``searchsorted`` of (user, item) keys; memory O(n_users * K + nnz).
    """
    top = _top(top_items, k)
    n_users = top.shape[0]
    matrix = _relevant_csr(relevant, n_users)
    n_items = max(matrix.shape[1], 1)
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(matrix.indptr))
    keys = rows * n_items + matrix.indices  # globally sorted: rows ascending, indices sorted per row
    valid = (top >= 0) & (top < n_items)
    query = np.arange(n_users, dtype=np.int64)[:, None] * n_items + np.where(valid, top, 0)
    if len(keys) == 0:
        return np.zeros(top.shape, dtype=bool)
    position = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return valid & (keys[position] == query)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _discounts(length: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, length + 2, dtype=np.float64))


# Each metric from the hit matrix (n_users, K) and the number of relevant items per user.
def _precision(hit: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    if hit.shape[1] == 0:
        return np.zeros(hit.shape[0])
    return hit.sum(axis=1) / hit.shape[1]


def _recall(hit: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    return _safe_divide(hit.sum(axis=1), n_rel)


def _ndcg(hit: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    discounts = _discounts(hit.shape[1])
    ideal = np.concatenate(([0.0], np.cumsum(discounts)))[np.minimum(n_rel, hit.shape[1])]
    return _safe_divide(hit @ discounts, ideal)


def _average_precision(hit: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    precision_at_rank = np.cumsum(hit, axis=1) / np.arange(1, hit.shape[1] + 1)
    return _safe_divide((precision_at_rank * hit).sum(axis=1), np.minimum(n_rel, hit.shape[1]))


def _hit_rate(hit: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    return hit.any(axis=1).astype(np.float64)


def _reciprocal_rank(hit: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    if hit.shape[1] == 0:
        return np.zeros(hit.shape[0])
    return np.where(hit.any(axis=1), 1.0 / (hit.argmax(axis=1) + 1.0), 0.0)


_FROM_HITS = {"precision": _precision, "recall": _recall, "ndcg": _ndcg, "map": _average_precision,
              "hit_rate": _hit_rate, "mrr": _reciprocal_rank}


def _metric(name: str, top_items: np.ndarray, relevant: sp.spmatrix, k: int | None) -> np.ndarray:
    return _FROM_HITS[name](hits(top_items, relevant, k), n_relevant(relevant))


def precision_at_k(top_items: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> np.ndarray:
    """hits / K per user: float64, shape (n_users,)."""
    return _metric("precision", top_items, relevant, k)


def recall_at_k(top_items: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> np.ndarray:
    """hits / number of relevant items per user (NaN without relevant items): float64, shape (n_users,)."""
    return _metric("recall", top_items, relevant, k)


def ndcg_at_k(top_items: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> np.ndarray:
    """Normalised discounted cumulative gain (binary gains, log2 discount): float64, shape (n_users,)."""
    return _metric("ndcg", top_items, relevant, k)


def average_precision_at_k(top_items: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> np.ndarray:
    """Average precision at K (MAP@K is its mean): float64, shape (n_users,)."""
    return _metric("map", top_items, relevant, k)


def hit_rate_at_k(top_items: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> np.ndarray:
    """1.0 when at least one recommended item is relevant, else 0.0: float64, shape (n_users,)."""
    return _metric("hit_rate", top_items, relevant, k)


def reciprocal_rank_at_k(top_items: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> np.ndarray:
    """1 / rank of the first relevant item (0 without one); MRR@K is its mean. float64, shape (n_users,)."""
    return _metric("mrr", top_items, relevant, k)


#: Per-user ranking metrics by the name used in tables (``"ndcg"`` is shown as ``ndcg@10``).
RANKING_METRICS = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "map": average_precision_at_k,
    "hit_rate": hit_rate_at_k,
    "mrr": reciprocal_rank_at_k,
}


def ranking_metrics(top_items: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> dict[str, np.ndarray]:
    """Every metric of :data:`RANKING_METRICS` at once (the hit matrix is computed once).

    Returns
    -------
    dict
        Name -> ndarray of float64, shape (n_users,).
    """
    hit = hits(top_items, relevant, k)
    n_rel = n_relevant(relevant)
    return {name: function(hit, n_rel) for name, function in _FROM_HITS.items()}


# ---------------------------------------------------------------------- beyond accuracy
def recommendation_counts(top_items: np.ndarray, n_items: int) -> np.ndarray:
    """How many lists each item appears in: int64, shape (n_items,) (empty slots ignored)."""
    top = np.asarray(top_items).ravel()
    return np.bincount(top[(top >= 0) & (top < n_items)], minlength=n_items).astype(np.int64)


def catalogue_coverage(top_items: np.ndarray, n_items: int) -> float:
    """Share of the ``n_items`` candidate items recommended to at least one user (0..1)."""
    if n_items <= 0:
        return float("nan")
    return float((recommendation_counts(top_items, n_items) > 0).sum() / n_items)


def gini_index(values: np.ndarray) -> float:
    """Gini index of non-negative amounts (0: all equal, towards 1: all on one item).

    Used on :func:`recommendation_counts` over all candidate items (items never
    recommended count as 0) to measure how concentrated recommendations are.
    """
    values = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if (values < 0).any():
        raise ValueError("the Gini index needs non-negative values")
    n = len(values)
    total = values.sum()
    if n == 0 or total <= 0:
        return 0.0
    position = np.arange(1, n + 1)
    return float(((2 * position - n - 1) * values).sum() / (n * total))


def popularity_share(item_counts: np.ndarray, n_users: int) -> np.ndarray:
    """Smoothed share of users who interacted with each item: float64 in (0, 1], shape (n_items,).

    ``(count + 1) / (n_users + 1)``, so never-seen items get a finite self-information.
    """
    counts = np.asarray(item_counts, dtype=np.float64)
    return (counts + 1.0) / (max(int(n_users), 0) + 1.0)


def _mean_over_list(top_items: np.ndarray, per_item: np.ndarray) -> np.ndarray:
    top = np.asarray(top_items)
    valid = (top >= 0) & (top < len(per_item))
    values = np.where(valid, np.asarray(per_item, dtype=np.float64)[np.where(valid, top, 0)], 0.0)
    return _safe_divide(values.sum(axis=1), valid.sum(axis=1))


def novelty(top_items: np.ndarray, share: np.ndarray) -> np.ndarray:
    """Mean self-information ``-log2(popularity share)`` of each list (bits; higher = less popular items).

    Parameters
    ----------
    top_items : ndarray of int, shape (n_users, K)
    share : ndarray of float, shape (n_items,)
        Popularity share in (0, 1], e.g. from :func:`popularity_share`.

    Returns
    -------
    ndarray of float64, shape (n_users,); NaN for an empty list.
    """
    share = np.asarray(share, dtype=np.float64)
    if (share <= 0).any() or (share > 1).any():
        raise ValueError("popularity shares must be in (0, 1]; smooth them with popularity_share()")
    return _mean_over_list(top_items, -np.log2(share))


def mean_popularity(top_items: np.ndarray, item_popularity: np.ndarray) -> np.ndarray:
    """Mean popularity (any per-item measure) of each list: float64, shape (n_users,)."""
    return _mean_over_list(top_items, item_popularity)


def unit_rows(item_features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero): float32, same shape."""
    features = np.asarray(item_features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return np.divide(features, norms, out=np.zeros_like(features), where=norms > 0)


#: Elements (users x K x features) gathered at once by :func:`intra_list_diversity`.
_DIVERSITY_CHUNK = 2_000_000


def intra_list_diversity(top_items: np.ndarray, item_features: np.ndarray, normalised: bool = False) -> np.ndarray:
    """Mean pairwise ``1 - cosine similarity`` of the item features within each list.

    Computed without forming K x K matrices: the sum of pairwise cosines of a list is
    ``(|sum of unit vectors|^2 - sum of squared norms) / 2``. Items whose feature vector
    is all zeros count as dissimilar to everything (cosine 0). Users are processed in
    chunks, so memory stays near ``_DIVERSITY_CHUNK`` floats.

    Parameters
    ----------
    top_items : ndarray of int, shape (n_users, K)
    item_features : ndarray of float, shape (n_items, n_features)
    normalised : bool
        The rows are already unit length (:func:`unit_rows`): skips normalising again.

    Returns
    -------
    ndarray of float64, shape (n_users,); NaN for lists with fewer than 2 items or
    when there are no item features.
    """
    top = np.asarray(top_items)
    features = np.asarray(item_features)
    if features.ndim != 2 or features.shape[1] == 0:
        return np.full(top.shape[0], np.nan)
    unit = features if normalised else unit_rows(features)
    valid = (top >= 0) & (top < len(unit))
    size = valid.sum(axis=1).astype(np.float64)
    pair_similarity = np.zeros(top.shape[0])
    chunk = max(1, _DIVERSITY_CHUNK // max(top.shape[1] * unit.shape[1], 1))
    for start in range(0, top.shape[0], chunk):
        rows = slice(start, start + chunk)
        vectors = unit[np.where(valid[rows], top[rows], 0)].astype(np.float64) * valid[rows][..., None]
        summed = vectors.sum(axis=1)
        self_similarity = (vectors ** 2).sum(axis=(1, 2))
        pair_similarity[rows] = ((summed ** 2).sum(axis=1) - self_similarity) / 2.0
    pairs = size * (size - 1) / 2.0
    return 1.0 - _safe_divide(pair_similarity, pairs)
