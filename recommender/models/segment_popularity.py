"""Popularity among people with the same profile, backing off to coarser groups.

The people are grouped on their categorical profile values (age as a band). Groups are
nested: level 1 groups on the single most telling column, level 2 on the first two, and so
on. Each level's item shares are shrunk towards its parent's::

    score_L(g, i) = (n_L(g, i) + m * score_(L-1)(parent(g), i)) / (n_L(g) + m)

where ``n_L(g, i)`` counts the users of group ``g`` who interacted with item ``i``,
``n_L(g)`` all interactions of the group and ``m`` is the level's shrinkage (in
interactions). Level 0 is global popularity (Laplace-smoothed). A small group therefore
mostly repeats its parent's ranking, and a profile combination never seen in training uses
the deepest level it matches.

The column order and each level's shrinkage are chosen greedily on a leave-one-out
likelihood of the training interactions (each interaction predicted from its group's counts
without itself): at each level the column that best predicts what people pick is added, and
columns that do not help are left out. Estimating a share for every item needs many
interactions per group, so the shrinkage grid scales with the catalogue size.

Scoring is a weighted sum of one sparse count row per level, so memory stays at one dense
row per scored user however many groups there are.
"""
from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from ..dataset import Dataset
from ..features import AGE_BAND_NAMES, UNKNOWN, AgeEncoder, CategoricalEncoder, TableEncoder, age_band
from .base import Callback, Recommender, register

logger = logging.getLogger(__name__)

#: At most this many interactions are used to choose the column order (a random user sample).
_SELECTION_INTERACTIONS = 500_000
#: Candidate shrinkages, in multiples of the number of items.
_SHRINKAGE_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def profile_codes(encoder: TableEncoder, static: np.ndarray, columns: Sequence[str]) -> np.ndarray:
    """Bucket codes of categorical and age columns, decoded from encoded profiles.

    Decoding the encoded matrix (rather than the raw table) means training users and new
    people typed into a form are bucketed by exactly the same rules: unseen or missing values
    land in the "(unknown)" bucket, rare ones in "(other)".

    Parameters
    ----------
    encoder : TableEncoder
        The dataset's fitted profile encoder.
    static : ndarray of float32, shape (n, encoder.n_features)
    columns : sequence of str
        Categorical or age columns of ``encoder``.

    Returns
    -------
    ndarray of int64, shape (n, len(columns))
        Per column, an index into :func:`bucket_labels`.
    """
    slices = encoder.column_slices()
    codes = np.zeros((static.shape[0], len(columns)), dtype=np.int64)
    for position, column in enumerate(columns):
        block = static[:, slices[column]]
        column_encoder = encoder.encoders[column]
        if isinstance(column_encoder, CategoricalEncoder):
            codes[:, position] = np.argmax(block, axis=1)
        else:
            codes[:, position] = _age_codes(column_encoder, block)
    return codes


def _age_codes(encoder: AgeEncoder, block: np.ndarray) -> np.ndarray:
    unknown = len(AGE_BAND_NAMES)
    if encoder.bucket:
        bands = block[:, 2:]
        return np.where(bands.max(axis=1) > 0, np.argmax(bands, axis=1), unknown)
    # No band columns: undo the standardisation (rounded, so 35 does not come back as 34.99998).
    numeric = encoder.numeric
    ages = np.round(block[:, 0].astype(np.float64) * numeric.std + numeric.mean, 3)
    ages[block[:, 1] > 0] = np.nan
    bands = age_band(ages).fillna("\x00").to_numpy(dtype=object)
    found = np.asarray([AGE_BAND_NAMES.index(b) if b in AGE_BAND_NAMES else unknown for b in bands])
    return found.astype(np.int64)


def bucket_labels(encoder: TableEncoder, column: str) -> list[str]:
    """Display labels of the codes :func:`profile_codes` returns for ``column``."""
    column_encoder = encoder.encoders[column]
    if isinstance(column_encoder, CategoricalEncoder):
        return [name.split("=", 1)[1] for name in column_encoder.names]
    return list(AGE_BAND_NAMES) + [UNKNOWN]


def _group_columns(encoder: TableEncoder) -> list[str]:
    return [c for c, e in encoder.encoders.items() if isinstance(e, (CategoricalEncoder, AgeEncoder))]


def _nest(parent_groups: np.ndarray, codes: np.ndarray, radix: int) -> np.ndarray:
    """Keys of the child groups: one int64 per row, unique per (parent group, code)."""
    return parent_groups.astype(np.int64) * radix + codes


def _indicator(groups: np.ndarray, n_groups: int) -> sp.csr_matrix:
    """Groups x rows 0/1 matrix (rows with group -1 belong to none)."""
    rows = np.flatnonzero(groups >= 0)
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (groups[rows], rows)),
                         shape=(n_groups, len(groups)))


@register
class SegmentPopularityRecommender(Recommender):
    """Most popular items among people with the same profile values, with back-off.

    Parameters
    ----------
    shrinkage : float, optional
        ``m``: how many interactions a group needs before its own taste counts as much as its
        parent group's (larger values stay closer to global popularity). By default it is
        chosen per level by leave-one-out likelihood, from 0.1 to 30 times the number of items.
    max_levels : int, optional
        Use at most this many profile columns.
    columns : list of str, optional
        Fixed column order (coarsest first) instead of the greedy choice; every column is used.
    seed : int, default 0
        Seed of the user sample used to choose the column order on large data.
    """

    name = "segment_popularity"
    uses_profile = True

    def __init__(self, shrinkage: float | None = None, max_levels: int | None = None,
                 columns: list[str] | None = None, seed: int = 0) -> None:
        self.shrinkage = shrinkage
        self.max_levels = max_levels
        self.columns = columns
        self.seed = seed

    # ------------------------------------------------------------------ fitting
    def _fit(self, dataset: Dataset, callback: Callback | None) -> None:
        if self.shrinkage is not None and not self.shrinkage > 0:
            raise ValueError(f"shrinkage must be positive (or None to choose it), got {self.shrinkage}")
        binary = _binary(dataset.matrix)
        candidates = _group_columns(dataset.profile_encoder)
        if self.columns is not None:
            unknown = [c for c in self.columns if c not in candidates]
            if unknown:
                raise ValueError(f"column(s) {unknown} are not categorical or age profile columns "
                                 f"(available: {candidates})")
            candidates = list(self.columns)
        chain, shrinkages = self._choose_levels(dataset, binary, candidates, fixed_order=self.columns is not None)
        logger.info("segment popularity groups on %s (shrinkage %s)", chain or "nothing (global popularity)",
                    [round(m) for m in shrinkages])
        self._chain, self._shrinkages = chain, shrinkages
        self._radices = [len(bucket_labels(dataset.profile_encoder, c)) for c in chain]
        counts = np.asarray(binary.sum(axis=0)).ravel()
        self._global = ((counts + 1.0) / (counts.sum() + dataset.n_items)).astype(np.float32)
        codes = profile_codes(dataset.profile_encoder, dataset.user_features, chain)
        self._keys, self._counts, self._totals = [], [], []
        parent = np.zeros(dataset.n_users, dtype=np.int64)
        for level, radix in enumerate(self._radices):
            keys, groups = np.unique(_nest(parent, codes[:, level], radix), return_inverse=True)
            level_counts = (_indicator(groups, len(keys)) @ binary).tocsr().astype(np.float32)
            self._keys.append(keys)
            self._counts.append(level_counts)
            self._totals.append(np.asarray(level_counts.sum(axis=1), dtype=np.float32).ravel())
            parent = groups
        self._user_groups = self._groups_of(codes)
        if callback is not None:
            callback(0, {}, {"levels": float(len(chain))})

    def _choose_levels(self, dataset: Dataset, binary: sp.csr_matrix, candidates: list[str],
                       fixed_order: bool) -> tuple[list[str], list[float]]:
        """Column order and per-level shrinkage by leave-one-out log-likelihood of the interactions.

        Each interaction is predicted from its group's counts without itself; a column (and a
        shrinkage from a grid scaled to the catalogue size) is added while that improves the
        mean log-probability. With ``fixed_order`` every column is used in the given order and
        only the shrinkage is chosen.
        """
        max_levels = len(candidates) if self.max_levels is None else int(self.max_levels)
        if not candidates or binary.nnz < 2:
            # Nothing to learn an order or a shrinkage from.
            chain = list(candidates[:max_levels]) if fixed_order else []
            return chain, [self._fixed_or(dataset.n_items)] * len(chain)
        users = np.arange(dataset.n_users)
        if binary.nnz > _SELECTION_INTERACTIONS:
            rng = np.random.default_rng(self.seed)
            share = _SELECTION_INTERACTIONS / binary.nnz
            users = np.sort(rng.choice(dataset.n_users, size=max(1, int(dataset.n_users * share)), replace=False))
        sample = binary[users]
        codes = profile_codes(dataset.profile_encoder, dataset.user_features[users], candidates)
        radices = [len(bucket_labels(dataset.profile_encoder, c)) for c in candidates]
        coo = sample.tocoo()
        rows, items = coo.row, coo.col
        if self.shrinkage is None:
            grid = dataset.n_items * np.asarray(_SHRINKAGE_GRID)
        else:
            grid = np.asarray([float(self.shrinkage)])
        counts = np.asarray(sample.sum(axis=0)).ravel()
        # Level 0, leave-one-out: the Laplace-smoothed global share without the interaction itself.
        parent_loo = counts[items] / (counts.sum() - 1.0 + dataset.n_items)
        best_loglik = float(np.mean(np.log(parent_loo)))
        parent_groups = np.zeros(len(users), dtype=np.int64)
        chain: list[str] = []
        shrinkages: list[float] = []
        remaining = list(range(len(candidates)))
        while remaining and len(chain) < max_levels:
            best = None
            for candidate in remaining[:1] if fixed_order else remaining:
                _, groups = np.unique(_nest(parent_groups, codes[:, candidate], radices[candidate]),
                                      return_inverse=True)
                interaction_group = groups[rows]
                totals = np.bincount(interaction_group)[interaction_group]
                _, pair, pair_counts = np.unique(interaction_group * dataset.n_items + items,
                                                 return_inverse=True, return_counts=True)
                own = pair_counts[pair]
                for m in grid:
                    loo = (own - 1.0 + m * parent_loo) / (totals - 1.0 + m)
                    loglik = float(np.mean(np.log(loo)))
                    if best is None or loglik > best[0]:
                        best = (loglik, candidate, float(m), groups, loo)
            loglik, candidate, m, groups, loo = best
            if loglik <= best_loglik and not fixed_order:
                break
            logger.debug("segment popularity: %s (shrinkage %.0f) raises the LOO log-likelihood to %.4f",
                         candidates[candidate], m, loglik)
            chain.append(candidates[candidate])
            shrinkages.append(m)
            remaining.remove(candidate)
            best_loglik, parent_groups, parent_loo = loglik, groups, loo
        return chain, shrinkages

    def _fixed_or(self, n_items: int) -> float:
        return float(self.shrinkage) if self.shrinkage is not None else float(n_items)

    # ------------------------------------------------------------------ scoring
    def _groups_of(self, codes: np.ndarray) -> np.ndarray:
        """Group index per level (-1 where the combination was never seen), shape (n, levels)."""
        groups = np.full((codes.shape[0], len(self._chain)), -1, dtype=np.int64)
        parent = np.zeros(codes.shape[0], dtype=np.int64)
        known = np.ones(codes.shape[0], dtype=bool)
        for level, radix in enumerate(self._radices):
            keys = self._keys[level]
            wanted = _nest(np.maximum(parent, 0), codes[:, level], radix)
            if len(keys) == 0:
                known[:] = False
            else:
                position = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
                known &= keys[position] == wanted
            groups[:, level] = np.where(known, position, -1) if len(keys) else -1
            parent = groups[:, level]
        return groups

    def _score_groups(self, groups: np.ndarray) -> np.ndarray:
        """Unrolled recursion: a weighted sum of each level's sparse counts plus global popularity."""
        n_rows = groups.shape[0]
        # weight[l] = product of the shrink factors of the levels below l (deeper levels).
        carry = np.ones(n_rows, dtype=np.float32)
        scores = np.zeros((n_rows, len(self._global)), dtype=np.float32)
        for level in range(len(self._chain) - 1, -1, -1):
            group = groups[:, level]
            m = np.float32(self._shrinkages[level])
            member = group >= 0
            totals = np.where(member, self._totals[level][np.maximum(group, 0)], 0).astype(np.float32)
            if member.any():
                rows = np.flatnonzero(member)
                block = self._counts[level][group[rows]]
                scale = sp.diags(carry[rows] / (totals[rows] + m))
                scores[rows] += (scale @ block).toarray()
            carry *= m / (totals + m)
        scores += carry[:, None] * self._global[None, :]
        return scores

    def score_users(self, user_index: np.ndarray) -> np.ndarray:
        return self._score_groups(self._user_groups[np.asarray(user_index)])

    def score_new_users(self, static: np.ndarray, behaviour: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        codes = profile_codes(self.dataset.profile_encoder, static, self._chain)
        return self._score_groups(self._groups_of(codes))

    def item_similarity(self, item_index: np.ndarray) -> np.ndarray:
        raise NotImplementedError("segment popularity has no notion of item similarity")

    @property
    def chain(self) -> list[str]:
        """Profile columns used, coarsest level first."""
        return list(self._chain)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        arrays = {"global": self._global}
        for level in range(len(self._chain)):
            counts = self._counts[level]
            arrays.update({f"keys_{level}": self._keys[level], f"counts_data_{level}": counts.data,
                           f"counts_indices_{level}": counts.indices.astype(np.int32),
                           f"counts_indptr_{level}": counts.indptr.astype(np.int64)})
        return {"chain": self._chain, "radices": self._radices, "shrinkages": self._shrinkages}, arrays

    def _set_state(self, config: dict, arrays: Mapping[str, np.ndarray]) -> None:
        dataset = self.dataset
        chain = [str(c) for c in config["chain"]]
        radices = [int(r) for r in config["radices"]]
        shrinkages = [float(m) for m in config["shrinkages"]]
        available = _group_columns(dataset.profile_encoder)
        if (len(radices) != len(chain) or len(shrinkages) != len(chain) or any(c not in available for c in chain)
                or not all(m > 0 for m in shrinkages)):
            raise ValueError(f"profile columns {chain} do not match the dataset's {available}")
        expected = [len(bucket_labels(dataset.profile_encoder, c)) for c in chain]
        if expected != radices:
            raise ValueError(f"bucket counts {radices} do not match the dataset's {expected}")
        global_ = np.asarray(arrays["global"], dtype=np.float32)
        if global_.shape != (dataset.n_items,):
            raise ValueError(f"global popularity has shape {global_.shape}, expected ({dataset.n_items},)")
        keys, counts, totals = [], [], []
        for level in range(len(chain)):
            level_keys = np.asarray(arrays[f"keys_{level}"], dtype=np.int64)
            data = np.asarray(arrays[f"counts_data_{level}"], dtype=np.float32)
            indices = np.asarray(arrays[f"counts_indices_{level}"], dtype=np.int32)
            indptr = np.asarray(arrays[f"counts_indptr_{level}"], dtype=np.int64)
            n_groups = len(level_keys)
            if (indptr.shape != (n_groups + 1,) or len(data) != len(indices) or indptr[0] != 0
                    or indptr[-1] != len(data) or np.any(np.diff(indptr) < 0)
                    or (len(indices) and (indices.min() < 0 or indices.max() >= dataset.n_items))):
                raise ValueError(f"level {level} counts do not fit {n_groups} groups x {dataset.n_items} items")
            level_counts = sp.csr_matrix((data, indices, indptr), shape=(n_groups, dataset.n_items))
            keys.append(level_keys)
            counts.append(level_counts)
            totals.append(np.asarray(level_counts.sum(axis=1), dtype=np.float32).ravel())
        self._chain, self._radices, self._shrinkages, self._global = chain, radices, shrinkages, global_
        self._keys, self._counts, self._totals = keys, counts, totals
        self._user_groups = self._groups_of(profile_codes(dataset.profile_encoder, dataset.user_features, chain))


def _binary(matrix: sp.csr_matrix) -> sp.csr_matrix:
    binary = matrix.copy()
    binary.data = np.ones_like(binary.data, dtype=np.float32)
    return binary
