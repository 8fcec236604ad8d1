"""Train/test splits that say which question an evaluation answers.

Five protocols, each a function returning a :class:`Split`:

``warm`` (:func:`warm_split`)
    Known users, known items: a random share of each user's interactions is held out.
``temporal`` (:func:`temporal_split`)
    Like ``warm``, but each user's *latest* interactions are held out ("leave the latest
    out" per user, not one global cut-off date: a global cut leaves most users with
    nothing to test or nothing to train on). Needs timestamps.
``cold_user`` (:func:`cold_user_split`)
    New people: a random share of users loses *all* its interactions; they are scored from
    their profile only, through :meth:`Recommender.score_new_users`.
``few_shot`` (:func:`few_shot_split`)
    New people who already did a little: like ``cold_user``, but each held-out user's first
    ``n_revealed`` interactions (by time where known) are revealed as their history.
``cold_item`` (:func:`cold_item_split`)
    New items: a random share of items loses all its interactions; models must rank them
    from content. Each test user's list is ranked among the held-out items only (the
    usual cold-start item protocol): ranking them against the whole catalogue would
    mostly measure how strongly a model prefers items it has seen.

Relevance. Implicit data: every held-out interaction is relevant. Explicit ratings
(:func:`relevance_threshold`): a held-out rating is relevant when it is at least
``0.7 * max rating`` (4 and 5 on a 1-5 scale, 3.5 and up on a 0.5-5 scale, 7 and up on
1-10). Held-out interactions below the threshold leave the training data all the same
(they happened after, or instead of, what the model sees) but do not count as hits;
users left with no relevant held-out item are not evaluated.

Everything is seeded (``np.random.default_rng(seed)``) and vectorised: per-user
selections are made by sorting interactions by (user, key) and ranking within groups.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp

from ..dataset import Dataset
from ..errors import DataError, Problem

logger = logging.getLogger(__name__)

#: Protocol names accepted by :func:`make_split`, in the order the pages list them.
PROTOCOLS = ("warm", "temporal", "cold_user", "few_shot", "cold_item")

#: Short plain-language description of each protocol (for tables, summaries and the CLI).
PROTOCOL_DESCRIPTIONS = {
    "warm": "known users, a random 20% of their interactions hidden",
    "temporal": "known users, their latest interactions hidden",
    "cold_user": "new users scored from their profile only",
    "few_shot": "new users with their first few interactions revealed",
    "cold_item": "new items ranked from their content",
}

#: Share of the maximum rating from which an explicit rating counts as relevant.
RELEVANT_SHARE_OF_MAX = 0.7


@dataclass
class Split:
    """A training set plus held-out relevant items for some test users.

    Attributes
    ----------
    kind : {"warm", "temporal", "cold_user", "few_shot", "cold_item"}
    dataset : Dataset
        The full data the split was made from.
    train : Dataset
        Same users, items, id maps and encoders as ``dataset``, with the held-out
        interactions removed (``dataset.with_interactions``). Fit models on this.
    test_users : ndarray of int32, shape (n_test_users,)
        Sorted user indices that are evaluated (each has at least one relevant item).
    test : scipy.sparse.csr_matrix of float32, shape (n_test_users, n_items)
        1.0 where a held-out item is relevant for the test user of that row.
    revealed : scipy.sparse.csr_matrix of float32, shape (n_test_users, n_items), or None
        For ``cold_user`` (empty) and ``few_shot``: the history each new user is scored
        with (1.0 per revealed item). None for the protocols with known users.
    candidate_items : ndarray of int32, or None
        For ``cold_item``: the held-out items, the only ones ranked. None otherwise.
    relevance_threshold : float or None
        Ratings at or above it were relevant; None when every held-out item was.
    seed : int
    options : dict
        The protocol's parameters (fractions, minimum counts), for reports.
    """

    kind: str
    dataset: Dataset
    train: Dataset
    test_users: np.ndarray
    test: sp.csr_matrix
    revealed: sp.csr_matrix | None = None
    candidate_items: np.ndarray | None = None
    relevance_threshold: float | None = None
    seed: int = 0
    options: dict = field(default_factory=dict)

    @property
    def n_test_users(self) -> int:
        return len(self.test_users)

    @property
    def new_users(self) -> bool:
        """Whether test users are scored as people not in the training data."""
        return self.kind in ("cold_user", "few_shot")

    @property
    def description(self) -> str:
        """What the split tests, in plain words with its parameters."""
        options = self.options
        if self.kind == "warm":
            return f"known users, a random {options['test_fraction']:.0%} of their interactions hidden"
        if self.kind == "temporal":
            return f"known users, their latest {options['test_fraction']:.0%} of interactions hidden"
        if self.kind == "cold_user":
            return f"new users scored from their profile only, {options['user_fraction']:.0%} of users held out"
        if self.kind == "few_shot":
            return (f"new users with their first {options['n_revealed']} interactions revealed, "
                    f"{options['user_fraction']:.0%} of users held out")
        return f"new items ranked from their content among the {len(self.candidate_items):,} held-out items"

    def history_counts(self) -> np.ndarray:
        """Interactions each test user brings to the model: int64, shape (n_test_users,).

        Training interactions for known users; revealed interactions for new users.
        """
        if self.revealed is not None:
            return np.diff(self.revealed.indptr).astype(np.int64)
        counts = np.bincount(self.train.user_index, minlength=self.train.n_users)
        return counts[self.test_users].astype(np.int64)

    def new_user_inputs(self, rows: np.ndarray | slice | None = None,
                        ) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
        """Encoded inputs for :meth:`Recommender.score_new_users` (``cold_user``/``few_shot``).

        Encoded exactly as :meth:`Dataset.encode_new_users` encodes a new person: the static
        profile of the held-out user, and behaviour features computed from the revealed
        history only (whose recency counts as "now", the training data's reference time).

        Parameters
        ----------
        rows : ndarray of int or slice, optional
            Rows of ``test_users`` to encode (all by default).

        Returns
        -------
        static : ndarray of float32, shape (n, profile features)
        behaviour : ndarray of float32, shape (n, behaviour features)
        history : scipy.sparse.csr_matrix of float32, shape (n, n_items)
        """
        if self.revealed is None:
            raise ValueError(f"a '{self.kind}' split has known users: score them with score_users.")
        rows = slice(None) if rows is None else rows
        history = self.revealed[rows]
        static = self.train.user_features[self.test_users[rows]]
        encoder = self.train.behaviour_encoder
        last_time = None
        if encoder.has_recency:
            last_time = np.where(np.diff(history.indptr) > 0, encoder.reference_time, np.nan)
        behaviour = encoder.transform(history, last_time, self.train.item_categories)
        return static, behaviour, history

    def __repr__(self) -> str:
        return (f"Split({self.kind!r}: train {self.train.n_interactions:,} interactions, "
                f"{self.n_test_users:,} test users, {self.test.nnz:,} relevant held-out items)")


# ---------------------------------------------------------------------- relevance
def relevance_threshold(dataset: Dataset, threshold: float | str | None = "auto") -> float | None:
    """The rating from which a held-out interaction counts as relevant.

    Parameters
    ----------
    threshold : float, "auto" or None
        A number is used as given; None means every held-out interaction is relevant.
        ``"auto"``: for explicit ratings ``0.7 * max rating``, else None. Ratings are
        taken as explicit when the data has a rating column with more than two distinct
        values, all between 0 and 10 (a star scale); larger values are counts (plays,
        clicks), for which every interaction is relevant.
    """
    if threshold is None:
        return None
    if not isinstance(threshold, str):
        return float(threshold)
    if threshold != "auto":
        raise ValueError(f"relevance threshold must be a number, 'auto' or None, not {threshold!r}")
    if not dataset.has_ratings or dataset.n_interactions == 0:
        return None
    values = np.unique(dataset.weights)
    if len(values) <= 2 or values.min() < 0 or values.max() > 10:
        return None
    return float(RELEVANT_SHARE_OF_MAX * values.max())


def _relevant(dataset: Dataset, threshold: float | None) -> np.ndarray:
    if threshold is None:
        return np.ones(dataset.n_interactions, dtype=bool)
    return dataset.weights >= threshold - 1e-6


# ---------------------------------------------------------------------- helpers
def _check_fraction(value: float, name: str) -> float:
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be between 0 and 1 (exclusive), not {value}")
    return value


def _rank_within_user(user_index: np.ndarray, n_users: int, key: np.ndarray, tiebreak: np.ndarray,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Position (0-based) of each interaction within its user when sorted by ``key``, then ``tiebreak``.

    Returns
    -------
    rank : ndarray of int64, shape (n_interactions,)
    counts : ndarray of int64, shape (n_users,)
    """
    order = np.lexsort((tiebreak, key, user_index))
    counts = np.bincount(user_index, minlength=n_users)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(len(user_index), dtype=np.int64)
    rank[order] = np.arange(len(user_index)) - starts[user_index[order]]
    return rank, counts


def _user_matrix(rows_of_users: np.ndarray, user_index: np.ndarray, item_index: np.ndarray,
                 n_rows: int, n_items: int) -> sp.csr_matrix:
    """Binary CSR (n_rows, n_items) with a 1 for each (row of user, item) pair."""
    rows = rows_of_users[user_index]
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, item_index)),
                           shape=(n_rows, n_items), dtype=np.float32)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    matrix.indices = matrix.indices.astype(np.int32, copy=False)
    return matrix


def _no_test_users(kind: str, dataset: Dataset, threshold: float | None, why: str) -> DataError:
    fix = "Load more interactions, or choose a protocol that needs less data."
    if threshold is not None:
        fix = (f"Load more interactions, or lower the relevance threshold (ratings >= {threshold:g} "
               "currently count as relevant).")
    return DataError(Problem(f"the '{kind}' protocol found no user to evaluate: {why}.", file=dataset.name,
                             fix=fix))


def _finish(kind: str, dataset: Dataset, held_out: np.ndarray, relevant: np.ndarray, threshold, seed,
            options, revealed_mask: np.ndarray | None = None, candidate_items=None,
            new_users: np.ndarray | None = None) -> Split:
    """Build the split from a mask of held-out interactions (``revealed_mask`` ⊂ ``held_out``)."""
    test_mask = held_out & relevant
    if revealed_mask is not None:
        test_mask &= ~revealed_mask
    test_users = np.unique(dataset.user_index[test_mask]).astype(np.int32)
    if new_users is not None:
        test_users = np.intersect1d(test_users, new_users).astype(np.int32)
    if len(test_users) == 0:
        why = "no held-out interaction is relevant"
        if not held_out.any():
            why = (f"no user has the {options.get('min_interactions', 2)} interactions needed to hold some out"
                   if "min_interactions" in options else "nothing could be held out")
        raise _no_test_users(kind, dataset, threshold if held_out.any() else None, why)
    if held_out.all():
        raise DataError(Problem(f"the '{kind}' protocol would leave no training data.", file=dataset.name,
                                fix="Hold out a smaller share."))
    row_of_user = np.full(dataset.n_users, -1, dtype=np.int64)
    row_of_user[test_users] = np.arange(len(test_users))
    keep = test_mask & (row_of_user[dataset.user_index] >= 0)
    test = _user_matrix(row_of_user, dataset.user_index[keep], dataset.item_index[keep],
                        len(test_users), dataset.n_items)
    revealed = None
    if new_users is not None:
        shown = (revealed_mask if revealed_mask is not None else np.zeros_like(held_out)) & (
            row_of_user[dataset.user_index] >= 0)
        revealed = _user_matrix(row_of_user, dataset.user_index[shown], dataset.item_index[shown],
                                len(test_users), dataset.n_items)
    train = dataset.with_interactions(~held_out, name=f"{dataset.name} ({kind} train)")
    split = Split(kind=kind, dataset=dataset, train=train, test_users=test_users, test=test, revealed=revealed,
                  candidate_items=candidate_items, relevance_threshold=threshold, seed=seed, options=options)
    logger.info("%r", split)
    return split


# ---------------------------------------------------------------------- protocols
def _holdout_per_user(dataset: Dataset, key: np.ndarray, test_fraction: float, min_interactions: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Mask of the first ``round(test_fraction * count)`` interactions of each user by ``key``.

    At least one interaction is held out and one kept for users with ``min_interactions``
    or more; other users keep everything.
    """
    tiebreak = rng.random(dataset.n_interactions)
    rank, counts = _rank_within_user(dataset.user_index, dataset.n_users, key, tiebreak)
    n_test = np.clip(np.floor(test_fraction * counts + 0.5), 1, np.maximum(counts - 1, 1)).astype(np.int64)
    n_test[counts < max(int(min_interactions), 2)] = 0
    return rank < n_test[dataset.user_index]


def warm_split(dataset: Dataset, test_fraction: float = 0.2, min_interactions: int = 3, seed: int = 0,
               relevance: float | str | None = "auto") -> Split:
    """Hold out a random share of each user's interactions.

    Parameters
    ----------
    test_fraction : float
        Share of each eligible user's interactions held out (rounded, at least 1, leaving at least 1).
    min_interactions : int
        Users with fewer interactions are not evaluated (all theirs stay in training).
    seed : int
    relevance : float, "auto" or None
        See :func:`relevance_threshold`.
    """
    test_fraction = _check_fraction(test_fraction, "test_fraction")
    rng = np.random.default_rng(seed)
    threshold = relevance_threshold(dataset, relevance)
    held_out = _holdout_per_user(dataset, rng.random(dataset.n_interactions), test_fraction, min_interactions,
                                 rng)
    return _finish("warm", dataset, held_out, _relevant(dataset, threshold), threshold, seed,
                   {"test_fraction": test_fraction, "min_interactions": min_interactions})


def temporal_split(dataset: Dataset, test_fraction: float = 0.2, min_interactions: int = 3, seed: int = 0,
                   relevance: float | str | None = "auto") -> Split:
    """Hold out each user's latest interactions (ties in time broken at random, seeded).

    Every held-out interaction of a user is at least as recent as all of that user's
    training interactions. Parameters as in :func:`warm_split`.

    Raises
    ------
    DataError
        The data has no timestamps.
    """
    if dataset.timestamps is None:
        raise DataError(Problem("the 'temporal' protocol needs a timestamp for each interaction, and this "
                                "data has none.", file=dataset.name,
                                fix="Map a timestamp column when loading, or use the 'warm' protocol."))
    test_fraction = _check_fraction(test_fraction, "test_fraction")
    rng = np.random.default_rng(seed)
    threshold = relevance_threshold(dataset, relevance)
    held_out = _holdout_per_user(dataset, -dataset.timestamps, test_fraction, min_interactions, rng)
    return _finish("temporal", dataset, held_out, _relevant(dataset, threshold), threshold, seed,
                   {"test_fraction": test_fraction, "min_interactions": min_interactions})


def _pick(rng: np.random.Generator, candidates: np.ndarray, fraction: float) -> np.ndarray:
    n = int(np.clip(np.floor(fraction * len(candidates) + 0.5), 1, len(candidates)))
    return np.sort(rng.choice(candidates, size=n, replace=False)).astype(np.int32)


def cold_user_split(dataset: Dataset, user_fraction: float = 0.1, seed: int = 0,
                    relevance: float | str | None = "auto") -> Split:
    """Hold out a random share of users entirely (they become new, profile-only users).

    Users are drawn among those with at least one relevant interaction.
    """
    return few_shot_split(dataset, n_revealed=0, user_fraction=user_fraction, seed=seed, relevance=relevance,
                          _kind="cold_user")


def few_shot_split(dataset: Dataset, n_revealed: int = 3, user_fraction: float = 0.1, seed: int = 0,
                   relevance: float | str | None = "auto", *, _kind: str = "few_shot") -> Split:
    """Hold out a random share of users entirely, then reveal each one's first ``n_revealed`` interactions.

    "First" is by time where the data has timestamps, else a random (seeded) order. Users
    are drawn among those with a relevant interaction beyond the first ``n_revealed``.
    Their revealed interactions are in :attr:`Split.revealed`, never in training.
    """
    user_fraction = _check_fraction(user_fraction, "user_fraction")
    n_revealed = int(n_revealed)
    if n_revealed < 0:
        raise ValueError(f"n_revealed must be 0 or more, not {n_revealed}")
    rng = np.random.default_rng(seed)
    threshold = relevance_threshold(dataset, relevance)
    relevant = _relevant(dataset, threshold)
    key = dataset.timestamps if dataset.timestamps is not None else np.zeros(dataset.n_interactions)
    rank, counts = _rank_within_user(dataset.user_index, dataset.n_users, key, rng.random(dataset.n_interactions))
    revealed = rank < n_revealed
    testable = np.bincount(dataset.user_index[relevant & ~revealed], minlength=dataset.n_users) > 0
    candidates = np.flatnonzero(testable)
    if len(candidates) == 0:
        why = (f"no user has a relevant interaction beyond the first {n_revealed}" if n_revealed
               else "no user has a relevant interaction")
        raise _no_test_users(_kind, dataset, threshold, why)
    chosen = _pick(rng, candidates, user_fraction)
    is_chosen = np.zeros(dataset.n_users, dtype=bool)
    is_chosen[chosen] = True
    held_out = is_chosen[dataset.user_index]
    options = {"user_fraction": user_fraction}
    if _kind == "few_shot":
        options["n_revealed"] = n_revealed
    return _finish(_kind, dataset, held_out, relevant, threshold, seed, options,
                   revealed_mask=revealed & held_out, new_users=chosen)


def cold_item_split(dataset: Dataset, item_fraction: float = 0.1, seed: int = 0,
                    relevance: float | str | None = "auto") -> Split:
    """Hold out a random share of items entirely; test users rank those items only.

    Items are drawn among those with at least one relevant interaction. Test users are
    the users with a relevant interaction on a held-out item (scored with ``score_users``;
    their other interactions stay in training).
    """
    item_fraction = _check_fraction(item_fraction, "item_fraction")
    rng = np.random.default_rng(seed)
    threshold = relevance_threshold(dataset, relevance)
    relevant = _relevant(dataset, threshold)
    candidates = np.flatnonzero(np.bincount(dataset.item_index[relevant], minlength=dataset.n_items) > 0)
    if len(candidates) == 0:
        raise _no_test_users("cold_item", dataset, threshold, "no item has a relevant interaction")
    chosen = _pick(rng, candidates, item_fraction)
    is_chosen = np.zeros(dataset.n_items, dtype=bool)
    is_chosen[chosen] = True
    held_out = is_chosen[dataset.item_index]
    if len(chosen) < 2:
        logger.warning("cold_item: only %d held-out item; every ranking metric is trivial.", len(chosen))
    return _finish("cold_item", dataset, held_out, relevant, threshold, seed, {"item_fraction": item_fraction},
                   candidate_items=chosen)


_FUNCTIONS: dict[str, Callable[..., Split]] = {
    "warm": warm_split, "temporal": temporal_split, "cold_user": cold_user_split,
    "few_shot": few_shot_split, "cold_item": cold_item_split,
}


def make_split(dataset: Dataset, protocol: str = "warm", *, seed: int = 0, **options) -> Split:
    """Split ``dataset`` with the named protocol (see :data:`PROTOCOLS`).

    ``options`` go to the protocol's function (``test_fraction``, ``user_fraction``,
    ``n_revealed``, ``item_fraction``, ``min_interactions``, ``relevance``). Options of
    other protocols are ignored (a form can hold them all); unknown names are an error.

    Raises
    ------
    ValueError
        Unknown protocol or option.
    DataError
        The data cannot support the protocol (no timestamps, nobody left to test).
    """
    if protocol not in _FUNCTIONS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    accepted = {name: set(_public_parameters(function)) for name, function in _FUNCTIONS.items()}
    known = set().union(*accepted.values())
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown protocol option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    used = {key: value for key, value in options.items() if key in accepted[protocol]}
    if len(used) < len(options):
        logger.debug("options %s do not apply to the %s protocol", sorted(set(options) - set(used)), protocol)
    return _FUNCTIONS[protocol](dataset, seed=seed, **used)


def _public_parameters(function: Callable) -> list[str]:
    parameters = inspect.signature(function).parameters
    return [name for name in parameters if name not in ("dataset", "seed") and not name.startswith("_")]
