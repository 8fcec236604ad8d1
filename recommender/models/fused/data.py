"""The fused model's training data: practice batches, validation people and the similar-people pool."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import scipy.sparse as sp
import torch

from ...dataset import Dataset
from ..base import top_k
from ..content_knn import _unit_rows, top_k_similarity
from ..profile_knn import neighbour_scores

#: Training users kept as the neighbour pool of the ``similar_people`` source (a random subset above this).
NEIGHBOUR_POOL = 5_000

#: Entries of one (people x pool) similarity block (smaller than profile kNN's: it runs every training step).
_BLOCK_FLOATS = 8_000_000

#: Ranking cut-off of the validation metric.
VALIDATION_K = 10

#: Validation holds out at least this many new people (no more than ``NEW_VALIDATION_CAP`` of the
#: users with something relevant), on data where half the validation share would be fewer. The
#: new-person and short-history gate offsets are chosen on them, and on about 47 people (MovieLens-100K,
#: 943 users) that choice followed noise: few-shot 0.3272 NDCG@10 against 0.3420 with 100, warm 0.3764
#: against 0.3779, new users 0.3738 against 0.3724 (three splits); 150 (at most 20 %) lost warm and new
#: users (0.3697, 0.3659). With the default share, data with 2,000 such users or more is unchanged.
MIN_NEW_VALIDATION_PEOPLE = 100
NEW_VALIDATION_CAP = 0.12

#: Share of the few-shot practice in training that shows a user's *first* items by time (data with
#: timestamps), as a new person arrives with them; the rest shows random items of the history. First
#: items can differ from the rest: on MovieLens-100K, whose users rated their first films at sign-up,
#: few-shot NDCG@10 went 0.3420 -> 0.3786 over three splits (0.3726 with first items only); on the
#: synthetic data, whose order within a user is random, it moved within a fit's noise (weak few-shot,
#: three training seeds: 0.2697 against 0.2712). See benchmarks/RESULTS.md.
FIRST_ITEMS_SHARE = 0.5

#: Share of the warm practice that shows a user's *earliest* 50-80 % of items and hides the latest
#: (data with timestamps), as the model is used: to say what comes next; the rest hides random items.
#: MovieLens-100K, three splits: temporal (latest ratings held out) 0.1733 -> 0.1806 NDCG@10 (EASE
#: 0.1717), warm 0.3769 -> 0.3764; a share of 0.5 gave temporal 0.1794 but warm 0.3697. On the
#: synthetic data, whose order within a user is random, warm and temporal moved within a fit's noise.
PAST_ITEMS_SHARE = 0.25


# ---------------------------------------------------------------------- small helpers
def positive_threshold(dataset: Dataset) -> float | None:
    """Rating from which an interaction is a full positive (None: every interaction is).

    Same rule as :func:`recommender.evaluation.protocols.relevance_threshold` with ``"auto"``:
    explicit star ratings (more than two distinct values, all within 0..10) use
    ``0.7 * max rating``; implicit data and counts have no threshold.
    """
    if not dataset.has_ratings or dataset.n_interactions == 0:
        return None
    values = np.unique(dataset.weights)
    if len(values) <= 2 or values.min() < 0 or values.max() > 10:
        return None
    return float(0.7 * values.max())


def _binary(matrix: sp.spmatrix) -> sp.csr_matrix:
    """Presence (1.0) of every stored non-zero entry: CSR float32, duplicates summed, indices sorted."""
    result = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    result.eliminate_zeros()
    result.sum_duplicates()
    result.data[:] = 1.0
    return result


def _gather_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Entries of some CSR rows, vectorised.

    Returns
    -------
    row_of : ndarray of int64, shape (nnz,)
        Position in ``rows`` of each entry (sorted ascending).
    columns : ndarray of int64, shape (nnz,)
    values : ndarray of float32, shape (nnz,)
    counts : ndarray of int64, shape (len(rows),)
    """
    starts = matrix.indptr[rows].astype(np.int64)
    counts = matrix.indptr[rows + 1].astype(np.int64) - starts
    row_of = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    source = starts[row_of] + (np.arange(len(row_of), dtype=np.int64) - first[row_of])
    return row_of, matrix.indices[source].astype(np.int64), matrix.data[source].astype(np.float32), counts


def _rank_in_rows(row_of: np.ndarray, keys: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Rank (0-based) of each entry within its row when sorted by ``keys``; ``counts`` = entries per row."""
    order = np.lexsort((keys, row_of))
    first = np.cumsum(counts) - counts
    rank = np.empty(len(row_of), dtype=np.int64)
    rank[order] = np.arange(len(row_of)) - first[row_of[order]]
    return rank


def _ndcg(scores: np.ndarray, exclude: sp.csr_matrix, relevant: sp.csr_matrix, k: int = VALIDATION_K) -> np.ndarray:
    """NDCG@k per row (binary relevance), float64, shape (n_rows,); modifies ``scores``."""
    items, _ = top_k(scores, k, exclude)
    dense = relevant.toarray() > 0
    hits = np.take_along_axis(dense, np.maximum(items, 0), axis=1) & (items >= 0)
    return _ndcg_of_hits(hits, dense.sum(axis=1))


def _ndcg_of_hits(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """NDCG per row: ``hits`` (bool, (n_rows, k)) marks each top k's relevant items; ``n_relevant`` counts all."""
    discount = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    ideal = np.concatenate(([0.0], np.cumsum(discount)))[np.minimum(n_relevant, hits.shape[1])]
    return (hits * discount).sum(axis=1) / np.where(ideal > 0, ideal, 1.0)


def _popularity_from_content(features: np.ndarray, log_popularity: np.ndarray, known: np.ndarray,
                             penalty: float = 1.0) -> tuple[np.ndarray, float]:
    """Ridge regression of the log popularity of known items on their content features.

    Returns the weights (float32, shape (n_features,)) and the intercept.
    """
    if not known.any():
        return np.zeros(features.shape[1], dtype=np.float32), 0.0
    x = features[known].astype(np.float64)
    y = log_popularity[known].astype(np.float64)
    x_mean, y_mean = x.mean(axis=0), y.mean()
    centred = x - x_mean
    gram = centred.T @ centred + penalty * np.eye(x.shape[1])
    weight = np.linalg.solve(gram, centred.T @ (y - y_mean))
    return weight.astype(np.float32), float(y_mean - x_mean @ weight)


def _content_neighbours(features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each item's ``k`` most similar items by content (cosine), most similar first.

    Returns the neighbours (int64, shape (n_items, k')) and their similarities (float32, same
    shape; 0 pads rows with fewer than ``k'`` positive similarities), ``k' = min(k, n_items - 1)``
    (0 without item features).
    """
    n_items = features.shape[0]
    k = min(int(k), max(n_items - 1, 0))
    if k <= 0 or features.shape[1] == 0:
        return np.zeros((n_items, 0), dtype=np.int64), np.zeros((n_items, 0), dtype=np.float32)
    matrix = top_k_similarity(_unit_rows(features), k)          # CSR, indices sorted
    counts = np.diff(matrix.indptr)
    row_of = np.repeat(np.arange(n_items), counts)
    rank = _rank_in_rows(row_of, -matrix.data.astype(np.float64), counts)
    neighbours = np.tile(np.arange(n_items, dtype=np.int64)[:, None], (1, k))  # padding: the item itself, weight 0
    similarity = np.zeros((n_items, k), dtype=np.float32)
    neighbours[row_of, rank] = matrix.indices
    similarity[row_of, rank] = matrix.data
    return neighbours, similarity


class _NeighbourPool:
    """The ``similar_people`` source: what people like this person picked (profile kNN).

    Similarity of a person to a pool user is the cosine of their static profiles plus, when
    the person has a history, the cosine of their category shares (like
    :class:`~recommender.models.profile_knn.ProfileKNNRecommender`); a person's raw score for
    an item is the similarity-weighted share of their ``k`` nearest pool users who picked it.
    Computed with numpy/scipy outside the network (it has no weights to learn).

    Parameters
    ----------
    columns : ndarray of float32, shape (n_static + n_shares, n_pool)
        Unit static profile and unit category shares of the pool users, as columns.
    users : ndarray of int64, shape (n_pool,)
        Training index of each pool user (sorted), so training never uses a person as their own neighbour.
    items : scipy.sparse.csr_matrix, shape (n_pool, n_items)
        Binary training interactions of the pool users.
    share_columns : ndarray of int64
        Positions of the category shares among the behaviour features.
    k : int
    """

    def __init__(self, columns: np.ndarray, users: np.ndarray, items: sp.csr_matrix, share_columns: np.ndarray,
                 k: int):
        self.columns = np.ascontiguousarray(columns, dtype=np.float32)
        self.users = np.asarray(users, dtype=np.int64)
        self.items = sp.csr_matrix(items, dtype=np.float32)
        self.share_columns = np.asarray(share_columns, dtype=np.int64)
        self.k = int(k)

    @classmethod
    def build(cls, prepared: "_Prepared", share_columns: np.ndarray, k: int, rng: np.random.Generator
              ) -> "_NeighbourPool | None":
        users = prepared.train_users
        if k < 1 or len(users) == 0:
            return None
        if len(users) > NEIGHBOUR_POOL:
            users = np.sort(rng.choice(users, size=NEIGHBOUR_POOL, replace=False))
        items = prepared.train_binary[users]
        last = None if prepared.last_time is None else prepared.last_time[users]
        behaviour = prepared.encoder.transform(items, last, prepared.item_categories)
        columns = np.hstack([_unit_rows(prepared.static[users]), _unit_rows(behaviour[:, share_columns])]).T
        return cls(columns, users, items, share_columns, k)

    def scores(self, static: np.ndarray, behaviour: np.ndarray, has_history: np.ndarray,
               exclude: np.ndarray | None = None, columns: np.ndarray | None = None) -> np.ndarray:
        """Raw scores, float32 (n, n_items), or (n, len(columns)) for the items ``columns`` only.

        ``exclude``: training index of each person (never their own neighbour).
        """
        weight = np.asarray(has_history, dtype=np.float32)[:, None]
        queries = np.hstack([_unit_rows(static), weight * _unit_rows(behaviour[:, self.share_columns])])
        return neighbour_scores(queries, self.columns, self.users, self.items, self.k, exclude=exclude,
                                columns=columns, block_floats=_BLOCK_FLOATS)

    def state(self) -> dict[str, np.ndarray]:
        return {"pool_columns": self.columns, "pool_users": self.users,
                "pool_indptr": self.items.indptr.astype(np.int64), "pool_indices": self.items.indices.astype(np.int32),
                "pool_share_columns": self.share_columns}

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], n_items: int, n_static: int, n_behaviour: int,
                   k: int) -> "_NeighbourPool":
        columns = np.asarray(arrays["pool_columns"], dtype=np.float32)
        users = np.asarray(arrays["pool_users"], dtype=np.int64)
        indptr = np.asarray(arrays["pool_indptr"], dtype=np.int64)
        indices = np.asarray(arrays["pool_indices"], dtype=np.int32)
        share_columns = np.asarray(arrays["pool_share_columns"], dtype=np.int64)
        n_pool = len(users)
        if (columns.ndim != 2 or columns.shape != (n_static + len(share_columns), n_pool)
                or (len(share_columns) and (share_columns.min() < 0 or share_columns.max() >= n_behaviour))
                or indptr.shape != (n_pool + 1,) or indptr[0] != 0
                or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0)
                or (len(indices) and (indices.min() < 0 or indices.max() >= n_items))):
            raise ValueError("the neighbour pool of the bundle does not fit the data")
        items = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(n_pool, n_items))
        return cls(columns, users, items, share_columns, k)


# ---------------------------------------------------------------------- training data
@dataclass
class _Validation:
    """Held-out inputs and targets scored like one protocol (``warm``, ``few_shot`` or ``cold_user``)."""

    users: np.ndarray          # int64 (n,)
    history: sp.csr_matrix     # binary (n, n_items): what the model is shown
    behaviour: np.ndarray      # float32 (n, B)
    relevant: sp.csr_matrix    # binary (n, n_items): what it should find


def _ease(binary: sp.csr_matrix, items: np.ndarray, regularisation: float, device: torch.device) -> torch.Tensor:
    """EASE weights (Steck 2019) restricted to ``items``: float32 (len(items), len(items)), zero diagonal."""
    sub = binary[:, items].tocsc()
    gram = torch.from_numpy((sub.T @ sub).toarray().astype(np.float32)).to(device)
    gram.diagonal().add_(float(regularisation))
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(gram))
    weights = -inverse / inverse.diagonal()[None, :]
    weights.diagonal().zero_()
    return weights


@dataclass
class _Batch:
    """One training step's inputs (corrupted histories) and targets (the hidden items)."""

    users: np.ndarray           # int64 (n,)
    items: np.ndarray           # int64 (nnz,) shown items, grouped by user
    offsets: np.ndarray         # int64 (n,)
    n_history: np.ndarray       # float32 (n,)
    profile: np.ndarray         # float32 (n, n_static + n_behaviour)
    target_rows: np.ndarray     # int64 (n_targets,)
    target_items: np.ndarray    # int64 (n_targets,)
    target_weights: np.ndarray  # float32 (n_targets,)
    user_weight: np.ndarray     # float32 (n,) total target weight per user
    n_learning: int             # users with a positive target weight


@dataclass
class _Prepared:
    """Training matrices, validation sets and the batch factory of one fit."""

    n_items: int
    train_binary: sp.csr_matrix      # (n_users, n_items) 1.0 per training interaction
    train_targets: sp.csr_matrix     # same pattern, target weight per interaction
    train_users: np.ndarray          # int64: users with at least one training interaction
    item_counts: np.ndarray          # int64 (n_items,) training interactions per item
    static: np.ndarray               # float32 (n_users, n_static)
    encoder: object                  # the dataset's BehaviourEncoder
    item_categories: sp.csr_matrix
    last_time: np.ndarray | None     # float64 (n_users,) latest training interaction
    validation: dict
    n_validation_users: int
    # Each validation set's fixed-source scores per scoring chunk, kept from the first epoch's
    # validation for the next ones (see FusedRecommender._validate).
    validation_fixed: dict = field(default_factory=dict)
    # Same pattern as train_targets: 1 + each interaction's rank in its user's history by time (None
    # without timestamps), for practice that shows a user's first or earliest items (see make_batch).
    train_order: sp.csr_matrix | None = None

    @classmethod
    def build(cls, dataset: Dataset, threshold: float | None, low_rating_weight: float, share: float,
              max_users: int, rng: np.random.Generator) -> "_Prepared":
        n_users, n_items = dataset.n_users, dataset.n_items
        user = dataset.user_index.astype(np.int64)
        item = dataset.item_index.astype(np.int64)
        positive = (np.ones(len(user), dtype=bool) if threshold is None
                    else dataset.weights >= threshold - 1e-6)
        target_weight = np.where(positive, 1.0, float(low_rating_weight)).astype(np.float32)
        counts = np.bincount(user, minlength=n_users)
        relevant_counts = np.bincount(user[positive], minlength=n_users)
        # Each interaction's rank in its user's history by time: the validation's few-shot people
        # are shown their first items, and so is part of the training practice (see make_batch).
        by_time = None if dataset.timestamps is None else _rank_in_rows(user, dataset.timestamps, counts)
        encoder, categories = dataset.behaviour_encoder, dataset.item_categories
        times = dataset.timestamps if encoder.has_recency else None

        def matrix(mask: np.ndarray, rows: np.ndarray, n_rows: int, values: np.ndarray | None = None):
            data = np.ones(int(mask.sum()), dtype=np.float32) if values is None else values[mask]
            result = sp.csr_matrix((data, (rows[user[mask]], item[mask])), shape=(n_rows, n_items), dtype=np.float32)
            result.sum_duplicates()
            return result

        def latest(mask: np.ndarray) -> np.ndarray | None:
            if times is None:
                return None
            last = np.full(n_users, -np.inf)
            np.maximum.at(last, user[mask], times[mask])
            return np.where(np.isfinite(last), last, np.nan)

        train = np.ones(len(user), dtype=bool)
        validation: dict[str, _Validation] = {}
        n_active = int((relevant_counts > 0).sum())
        n_validation = int(min(max_users, round(share * n_active))) if share > 0 else 0
        if n_validation >= 20:
            order = rng.permutation(np.flatnonzero(relevant_counts > 0))
            n_warm = n_validation - n_validation // 2
            n_new = max(n_validation // 2, int(min(MIN_NEW_VALIDATION_PEOPLE, NEW_VALIDATION_CAP * n_active,
                                                   max_users - n_warm)))
            new_users = np.sort(order[:n_new])
            rest = order[n_new:]
            warm_users = np.sort(rest[counts[rest] >= 3][:n_warm])
            is_new = np.zeros(n_users, dtype=bool)
            is_new[new_users] = True
            is_warm = np.zeros(n_users, dtype=bool)
            is_warm[warm_users] = True
            random_rank = _rank_in_rows(user, rng.random(len(user)), counts)
            n_test = np.clip(np.floor(0.2 * counts + 0.5), 1, np.maximum(counts - 1, 1))
            held_out = is_warm[user] & (random_rank < n_test[user])
            train = ~is_new[user] & ~held_out
            last_train = latest(train)
            row = np.full(n_users, -1, dtype=np.int64)
            # Warm: known users, a random 20 % of their interactions hidden.
            row[warm_users] = np.arange(len(warm_users))
            history = matrix(train & is_warm[user], row, len(warm_users))
            behaviour = encoder.transform(history, None if last_train is None else last_train[warm_users],
                                          categories)
            validation["warm"] = _Validation(warm_users, _binary(history), behaviour,
                                              _binary(matrix(held_out & positive, row, len(warm_users))))
            # New people: none (cold_user) or their first three interactions (few_shot) revealed.
            row[:] = -1
            row[new_users] = np.arange(len(new_users))
            first_rank = by_time if by_time is not None else _rank_in_rows(user, rng.random(len(user)), counts)
            revealed = is_new[user] & (first_rank < 3)
            empty = sp.csr_matrix((len(new_users), n_items), dtype=np.float32)
            now = None if times is None else np.full(len(new_users), np.nan)
            validation["cold_user"] = _Validation(new_users, empty, encoder.transform(empty, now, categories),
                                                  _binary(matrix(is_new[user] & positive, row, len(new_users))))
            shown = _binary(matrix(revealed, row, len(new_users)))
            if now is not None:
                now = np.where(np.diff(shown.indptr) > 0, encoder.reference_time, np.nan)
            validation["few_shot"] = _Validation(new_users, shown, encoder.transform(shown, now, categories),
                                                 _binary(matrix(is_new[user] & positive & ~revealed, row,
                                                                len(new_users))))
            for kind in list(validation):  # keep only people with something to find
                entry = validation[kind]
                has = np.diff(entry.relevant.indptr) > 0
                if has.sum() < 5:
                    del validation[kind]
                    continue
                validation[kind] = _Validation(entry.users[has], entry.history[has], entry.behaviour[has],
                                               entry.relevant[has])
            n_validation = len(new_users) + len(warm_users)
        else:
            n_validation = 0
        identity = np.arange(n_users, dtype=np.int64)
        train_order = None if by_time is None else matrix(train, identity, n_users, (by_time + 1).astype(np.float32))
        train_binary = matrix(train, identity, n_users)
        train_binary.data[:] = 1.0
        train_targets = matrix(train, identity, n_users, target_weight)
        return cls(n_items=n_items, train_binary=train_binary, train_targets=train_targets,
                   train_users=np.flatnonzero(np.diff(train_binary.indptr) > 0).astype(np.int64),
                   item_counts=np.bincount(item[train], minlength=n_items).astype(np.int64),
                   static=np.asarray(dataset.user_features, dtype=np.float32), encoder=encoder,
                   item_categories=categories, last_time=latest(train), validation=validation,
                   n_validation_users=n_validation, train_order=train_order)

    def make_batch(self, users: np.ndarray, cold_rate: float, few_shot_rate: float,
                   rng: np.random.Generator) -> _Batch | None:
        """Corrupt the histories of ``users``: none, 1-5 or 50-80 % of their items shown, the rest to predict.

        With timestamps, few-shot practice (1-5 items) shows a user's first items by time in a
        share :data:`FIRST_ITEMS_SHARE` of cases, and warm practice the earliest items (the latest
        to predict) in a share :data:`PAST_ITEMS_SHARE`; random items otherwise.
        """
        row_of, items, weights, counts = _gather_rows(self.train_targets, users)
        n = len(users)
        draw = rng.random(n)
        cold = (draw < cold_rate) | (counts < 2)
        few = ~cold & (draw < cold_rate + few_shot_rate)
        few_count = rng.integers(1, 6, size=n)
        warm_count = np.clip(np.floor(rng.uniform(0.5, 0.8, size=n) * counts + 0.5), 1, np.maximum(counts - 1, 1))
        keep = np.where(cold, 0, np.where(few, np.minimum(few_count, counts - 1), warm_count)).astype(np.int64)
        key = rng.random(len(row_of))
        if self.train_order is not None:
            _, _, by_time, _ = _gather_rows(self.train_order, users)
            first = few & (rng.random(n) < FIRST_ITEMS_SHARE)
            past = ~few & ~cold & (rng.random(n) < PAST_ITEMS_SHARE)
            key = np.where((first | past)[row_of], by_time, key)
        rank = _rank_in_rows(row_of, key, counts)
        kept = rank < keep[row_of]
        shown_rows, shown_items = row_of[kept], items[kept]
        n_history = np.bincount(shown_rows, minlength=n).astype(np.int64)
        indptr = np.concatenate(([0], np.cumsum(n_history)))
        shown = sp.csr_matrix((np.ones(len(shown_items), dtype=np.float32), shown_items, indptr),
                              shape=(n, self.n_items))
        now_like = rng.random(n) < 0.5
        last = None
        if self.last_time is not None:
            # New people's recency counts as "now"; few-shot practice sees both.
            last = np.where(few & now_like, self.encoder.reference_time, self.last_time[users])
            last = np.where(n_history > 0, last, np.nan)
        behaviour = self.encoder.transform(shown, last, self.item_categories)
        target = ~kept
        target_rows, target_weights = row_of[target], weights[target]
        user_weight = np.bincount(target_rows, weights=target_weights, minlength=n).astype(np.float32)
        n_learning = int((user_weight > 0).sum())
        if n_learning == 0:
            return None
        return _Batch(users=users, items=shown_items, offsets=indptr[:-1].astype(np.int64),
                      n_history=n_history.astype(np.float32),
                      profile=np.hstack([self.static[users], behaviour]).astype(np.float32),
                      target_rows=target_rows, target_items=items[target], target_weights=target_weights,
                      user_weight=user_weight, n_learning=n_learning)

    def sample_candidates(self, batch: _Batch, n_sampled: int, batch_size: int, rng: np.random.Generator
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidate items of a sampled softmax: the batch's targets plus uniformly drawn items.

        Returns the sorted candidates (int64), the log-Q correction subtracted from their logits
        (float32: log of each candidate's probability of being in the set), the targets'
        columns in the candidate list and the columns of the uniformly drawn items (the
        reference that standardises scores like the whole catalogue would).
        """
        n_items = self.n_items
        n_sampled = min(n_sampled, n_items)
        drawn = rng.choice(n_items, size=n_sampled, replace=False)
        candidates = np.union1d(np.unique(batch.target_items), drawn).astype(np.int64)
        # P(item in the batch's targets) from its frequency; P(drawn) = n_sampled / n_items.
        rate = self.item_counts[candidates] / max(len(self.train_users), 1)
        in_batch = 1.0 - np.exp(-batch_size * rate * 0.6)
        inclusion = 1.0 - (1.0 - n_sampled / n_items) * (1.0 - in_batch)
        correction = np.log(np.clip(inclusion, 1e-12, 1.0)).astype(np.float32)
        return (candidates, correction, np.searchsorted(candidates, batch.target_items),
                np.searchsorted(candidates, np.sort(drawn)))


@dataclass
class _StepInput:
    """Everything the batch thread prepares for one training step (see :meth:`FusedRecommender._step_inputs`).

    Tensors on the training device; ``c`` is the number of items scored (the catalogue, or the
    candidates of a sampled softmax).
    """

    users: np.ndarray                 # (n,) training index of each person
    n_learning: int                   # people with a positive target weight
    profile: torch.Tensor             # (n, n_static + n_behaviour)
    items: torch.Tensor               # (nnz,) shown history items, grouped by person
    offsets: torch.Tensor             # (n,)
    n_history: torch.Tensor           # (n,) float
    target_rows: torch.Tensor         # (n_targets,)
    target_columns: torch.Tensor      # (n_targets,) columns among the scored items
    target_weights: torch.Tensor      # (n_targets,)
    user_weight: torch.Tensor         # (n,) total target weight per person
    id_mask: torch.Tensor             # (c,) 0 for items without interactions and this step's id-dropped ones
    content: torch.Tensor | None      # (c, n_content) features of the scored items
    fixed: dict[str, torch.Tensor]    # standardised scores of the sources without weights, (n, c) each
    index: torch.Tensor | None = None       # sampled softmax: the candidate items (c,)
    reference: torch.Tensor | None = None   # sampled softmax: the uniformly drawn candidates' columns
    shift: torch.Tensor | None = None       # sampled softmax: the log-Q correction (c,)
