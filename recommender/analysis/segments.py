"""Customer segments: k-means on user representations, named and profiled in plain language.

:func:`segment_users` clusters users on a *representation* of each person:

* ``"scores"`` (the default for a model): what the model would recommend to each person. Each
  user's scores over the catalogue (at most the 5,000 most popular items) are standardised per
  user (only the ranking matters, not the scale) and compressed by a seeded PCA fitted on at
  most 5,000 users. Every source the model uses (for the fused model: profile, liked items,
  item-to-item, similar content, similar people, popularity) shapes it, so it describes taste
  as the model acts on it;
* ``"embeddings"``: the model's user vectors (``model.user_embeddings()``; for the fused model
  the gated profile + history vector), or an embedding array passed directly;
* ``"interactions"`` (the fallback without a model, or for a model that scores everyone the
  same, such as popularity): what each user interacted with, compressed by a seeded truncated
  SVD of the L2-normalised rows of the user x item matrix;
* optionally concatenated with the standardised static profile (``include_profile=True``),
  scaled so that the profile block carries ``profile_weight`` times the total variance of the
  representation block.

Each user vector is first scaled to unit length (its direction is taste; its length mostly says
how active the person is). Embedding columns are then standardised (mean 0, sd 1 over the users
used for fitting), so no single dimension dominates the distances; PCA and SVD coordinates are
ordered by importance and share one common scale instead (standardising each would let the
trailing, noisy components count as much as the leading ones).

**Defaults, as measured** (``FusedRecommender(seed=0)``; adjusted Rand index (ARI) of the active
users' segments against the 6 planted segments of :mod:`recommender.synthetic`, on the sample
and on a weak-profile set, ``generate(profile_strength=0.1, seed=11)``):

* an earlier fused model (profile, history and item-item sources only): its user vectors gave
  k=5, ARI 0.59 (sample) and 0.52 (weak). The current one (adding the similar-content and
  similar-people sources): the same vectors gave k=3, ARI 0.01 and k=4, ARI 0.38. The
  vectors no longer carry what the model knows;
* the model's scores (the default) with the current model: k=5, ARI 0.61 (sample) and k=5,
  ARI 0.52 (weak), for any PCA size from 8 to 24; standardising each PCA component instead made
  k and ARI depend on the PCA size (ARI 0.45 to 0.66);
* the interaction SVD: k=8, ARI 0.46 and k=11, ARI 0.36;
* adding the profile lowered the agreement with the earlier model's vectors (equal weight: 0.38 and
  0.38; half weight: 0.55 and 0.38) and changed nothing measurable with the scores (0.61 and
  0.52 at half or equal weight), so it is off by default and carries half the representation's
  variance when switched on;
* the search starts at k=3: with unit-length vectors k=2 never won on these sets, but it did on
  raw vectors (ARI 0.04), and two segments tell a product manager little.

**Users without interactions** (``cold_users``): an embedding of a person the model never saw
act is not evidence of taste, so by default (``"profile"``) they are *not* clustered; each is
assigned to the segment whose members' average (standardised) profile is nearest to theirs.
``"exclude"`` leaves them unassigned (label ``-1``); ``"embedding"`` treats them like everyone
else (sensible for the fused model, whose vectors for such people come from the profile).

**Choosing k**: for each k in ``k_range`` (inclusive, 3 to 12 by default) k-means is fitted on a
seeded sample of at most 5,000 users and scored by the silhouette on a seeded sub-sample of at
most 3,000; the best k wins (ties: the smaller k) and the whole curve is kept for display. A
given ``k`` (any k from 1) skips the search. The final model is fitted on at most
``max_fit_users`` users and predicts everyone, so 100k users cost one prediction pass. Segments
are numbered by size (0 = largest); the same seed gives the same labels.

**Privacy**: segments of fewer than ``k_min`` people keep their number but get no descriptive
name, their rows in :meth:`SegmentResult.profiles` are masked and their members are left out
of :func:`segment_assignments` (see :mod:`recommender.analysis.privacy`).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..dataset import Dataset
from ..errors import DataError
from ..features import (OTHER, UNKNOWN, AgeEncoder, CategoricalEncoder, MultiLabelEncoder, NumericEncoder,
                        age_band, to_float)
from .privacy import K_MIN_DEFAULT, check_k_min, small_group_mask, suppress_small, suppressed_label

logger = logging.getLogger(__name__)

#: k-means for choosing k is fitted on at most this many users.
SELECTION_USERS = 5000
#: The silhouette is computed on at most this many users (it is quadratic in their number).
SILHOUETTE_USERS = 3000
#: Components of the interaction-profile representation (models without embeddings).
SVD_COMPONENTS = 32
#: Components of the model-score representation.
SCORE_COMPONENTS = 16
#: A person is described by their scores for at most this many items (the most popular ones).
SCORE_ITEMS = 5000
#: Users scored at once (bounds memory: SCORE_BATCH x SCORE_ITEMS floats).
SCORE_BATCH = 2048
REPRESENTATIONS = ("auto", "scores", "embeddings", "interactions")
#: Numbers of segments tried by default (inclusive); see the module docstring for the measurements.
DEFAULT_K_RANGE = (3, 12)
#: Total variance of the profile block relative to the embedding block when the profile is included.
DEFAULT_PROFILE_WEIGHT = 0.5
COLD_USER_POLICIES = ("profile", "exclude", "embedding")


# ---------------------------------------------------------------------- profile attributes as groups
def _numeric_bins(values: pd.Series) -> np.ndarray:
    """Quartile labels ("12.5-30") of a numeric column; missing -> "(unknown)"."""
    numbers = pd.Series(to_float(values))
    labels = np.full(len(numbers), UNKNOWN, dtype=object)
    finite = numbers.notna().to_numpy()
    if finite.sum() == 0:
        return labels
    try:
        bins = pd.qcut(numbers[finite], 4, duplicates="drop")
        text = [f"{interval.left:.4g}-{interval.right:.4g}" for interval in bins.cat.categories]
        labels[finite] = np.asarray(text, dtype=object)[bins.cat.codes.to_numpy()]
    except (ValueError, IndexError):  # too few distinct values to cut
        labels[finite] = numbers[finite].map(lambda v: f"{v:.4g}").to_numpy(dtype=object)
    return labels


def profile_groups(dataset: Dataset, column: str) -> np.ndarray:
    """The group label of every user on one profile column (for breakdowns and heatmaps).

    Categorical values as the encoder buckets them (rare values -> "(other)", missing and
    unseen -> "(unknown)"); ages as the standard bands ("25-34"); other numbers as quartile
    ranges.

    Parameters
    ----------
    dataset : Dataset
    column : str
        A profile column used as a feature (``dataset.profile_encoder.columns``).

    Returns
    -------
    ndarray of object, shape (n_users,)

    Raises
    ------
    KeyError
        ``column`` is not a profile feature column.
    ValueError
        ``column`` is multi-label or free text (a person would be in several groups).
    """
    encoders = dataset.profile_encoder.encoders
    if column not in encoders:
        raise KeyError(f"'{column}' is not a profile column used by the models "
                       f"(available: {', '.join(encoders) or 'none'}).")
    encoder = encoders[column]
    values = dataset.users[column].reset_index(drop=True)
    if isinstance(encoder, CategoricalEncoder):
        return encoder.labels(values).fillna(UNKNOWN).to_numpy(dtype=object)
    if isinstance(encoder, AgeEncoder):
        return age_band(values).fillna(UNKNOWN).to_numpy(dtype=object)
    if isinstance(encoder, NumericEncoder):
        return _numeric_bins(values)
    raise ValueError(f"'{column}' holds several values per person (or free text) and cannot split people "
                     "into groups; choose a categorical, age or numeric column.")


@dataclass
class _Attributes:
    """Users x (column, value) indicator matrix over the profile feature columns."""

    indicator: sp.csr_matrix          # float32 (n_users, n_values)
    columns: list[str]                # column of each value
    values: list[str]                 # value label


def _attributes(dataset: Dataset) -> _Attributes:
    blocks, columns, values = [], [], []
    n_users = dataset.n_users
    for column, encoder in dataset.profile_encoder.encoders.items():
        if isinstance(encoder, MultiLabelEncoder):
            block = sp.csr_matrix(encoder.transform(dataset.users[column].reset_index(drop=True)))
            names = [*encoder.labels_, UNKNOWN]
        elif isinstance(encoder, (CategoricalEncoder, AgeEncoder, NumericEncoder)):
            labels = profile_groups(dataset, column)
            names_index, codes = np.unique(labels.astype(str), return_inverse=True)
            names = [str(n) for n in names_index]
            block = sp.csr_matrix((np.ones(n_users, dtype=np.float32), (np.arange(n_users), codes)),
                                  shape=(n_users, len(names)))
        else:  # free text: no meaningful groups
            continue
        blocks.append(block)
        columns.extend([column] * len(names))
        values.extend(names)
    indicator = sp.hstack(blocks, format="csr", dtype=np.float32) if blocks else sp.csr_matrix((n_users, 0),
                                                                                              dtype=np.float32)
    return _Attributes(indicator, columns, values)


def _membership(labels: np.ndarray, n_groups: int) -> sp.csr_matrix:
    """Groups x users 0/1 matrix (label -1 belongs to no group)."""
    users = np.flatnonzero(labels >= 0)
    return sp.csr_matrix((np.ones(len(users), dtype=np.float32), (labels[users], users)),
                         shape=(n_groups, len(labels)))


def _binary(matrix: sp.csr_matrix) -> sp.csr_matrix:
    binary = matrix.copy()
    binary.data = np.ones_like(binary.data, dtype=np.float32)
    return binary


def _unit_rows(matrix):
    if sp.issparse(matrix):
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        return sp.diags(np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)) @ matrix
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def _display_value(column: str, value: str, role: str | None) -> str:
    """"25-34", "North", "gender F": values that read on their own stand alone."""
    if role == "age" or (len(value) >= 5 and re.fullmatch(r"[A-Za-z][A-Za-z &'/-]*", value)):
        return value
    return f"{column.replace('_', ' ')} {value}"


def _squared_distances(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    return ((points ** 2).sum(axis=1)[:, None] - 2.0 * points @ centers.T + (centers ** 2).sum(axis=1)[None, :])


# ---------------------------------------------------------------------- result
@dataclass
class SegmentResult:
    """Segments found by :func:`segment_users`.

    Attributes
    ----------
    labels : ndarray of int32, shape (n_users,)
        Segment of each user (0 = largest segment); ``-1``: not assigned (see ``cold_users``).
    k : int
        Number of segments.
    silhouette : dict of int -> float
        Silhouette score of each k tried (the curve to display); only the given k when ``k`` was fixed.
    centers : ndarray of float32, shape (k, d)
        Segment centres in the standardised representation space.
    names : list of str, length k
        Plain-language names ("25-34, North, Electronics-heavy"); segments below ``k_min``
        people are only numbered.
    sizes : ndarray of int64, shape (k,)
    representation : ndarray of float32, shape (n_users, d)
        What was clustered (standardised; with the profile block when ``include_profile``).
        Feed it to :func:`projection_2d` for a map of the segments.
    source : str
        Where the representation came from, in words.
    kind : {"scores", "embeddings", "interactions"}
        Which representation was clustered (given arrays count as embeddings).
    notice : str
        Sampling / fallback notes for the page ("" when none).
    """

    labels: np.ndarray = field(repr=False)
    k: int
    silhouette: dict[int, float]
    centers: np.ndarray = field(repr=False)
    names: list[str]
    sizes: np.ndarray
    representation: np.ndarray = field(repr=False)
    source: str
    dataset: Dataset = field(repr=False)
    include_profile: bool = False
    cold_users: str = "profile"
    k_min: int = K_MIN_DEFAULT
    notice: str = ""
    # how to place a new person (see assign)
    embedding_mean: np.ndarray | None = field(default=None, repr=False)
    embedding_scale: np.ndarray | None = field(default=None, repr=False)
    profile_mean: np.ndarray | None = field(default=None, repr=False)
    profile_scale: np.ndarray | None = field(default=None, repr=False)
    profile_weight_factor: float = 0.0
    profile_centers: np.ndarray | None = field(default=None, repr=False)
    svd_components: np.ndarray | None = field(default=None, repr=False)
    kind: str = "embeddings"
    #: Items whose scores describe a person, their PCA mean and components ("scores" only).
    score_items: np.ndarray | None = field(default=None, repr=False)
    score_mean: np.ndarray | None = field(default=None, repr=False)
    score_components: np.ndarray | None = field(default=None, repr=False)
    #: The model whose scores or embeddings were clustered (None: given arrays or the interaction profile).
    model: Any = field(default=None, repr=False)

    # ------------------------------------------------------------------ derived tables
    @cached_property
    def _attributes(self) -> _Attributes:
        return _attributes(self.dataset)

    @property
    def suppressed(self) -> np.ndarray:
        """Boolean, shape (k,): segments with fewer than ``k_min`` people."""
        return small_group_mask(self.sizes, self.k_min)

    @cached_property
    def _stats(self) -> dict[str, Any]:
        dataset = self.dataset
        membership = _membership(self.labels, self.k)
        binary = _binary(dataset.matrix)
        n_assigned = max(int((self.labels >= 0).sum()), 1)
        attributes = self._attributes
        attribute_counts = np.asarray((membership @ attributes.indicator).todense(), dtype=np.float64)
        attribute_overall = np.asarray(attributes.indicator.sum(axis=0), dtype=np.float64).ravel() / max(
            dataset.n_users, 1)
        sizes = np.maximum(self.sizes.astype(np.float64), 1.0)[:, None]
        attribute_share = attribute_counts / sizes
        attribute_lift = np.divide(attribute_share, attribute_overall[None, :],
                                   out=np.zeros_like(attribute_share), where=attribute_overall[None, :] > 0)
        item_counts = np.asarray((membership @ binary).todense(), dtype=np.float64)     # (k, n_items)
        categories = dataset.item_categories
        category_mass = item_counts @ categories.toarray() if categories.shape[1] else np.zeros((self.k, 0))
        overall_mass = np.asarray(binary.sum(axis=0), dtype=np.float64).ravel() @ categories.toarray() \
            if categories.shape[1] else np.zeros(0)
        category_share = np.divide(category_mass, category_mass.sum(axis=1, keepdims=True),
                                   out=np.zeros_like(category_mass), where=category_mass.sum(axis=1, keepdims=True) > 0)
        overall_share = overall_mass / max(overall_mass.sum(), 1e-12)
        category_lift = np.divide(category_share, overall_share[None, :], out=np.zeros_like(category_share),
                                  where=overall_share[None, :] > 0)
        activity = np.diff(dataset.matrix.indptr)
        median_activity = np.array([np.median(activity[self.labels == s]) if self.sizes[s] else np.nan
                                    for s in range(self.k)])
        return {"attribute_share": attribute_share, "attribute_lift": attribute_lift,
                "attribute_overall": attribute_overall, "item_counts": item_counts,
                "category_share": category_share, "category_lift": category_lift, "overall_share": overall_share,
                "median_activity": median_activity, "overall_median_activity": float(np.median(activity)),
                "n_assigned": n_assigned}

    def _defining_attributes(self, segment: int, n_top: int, min_share: float = 0.3,
                             min_lift: float = 1.25) -> list[tuple[str, str, float, float]]:
        """(column, value, share, lift) of the values over-represented in a segment, one per column."""
        stats = self._stats
        share = stats["attribute_share"][segment]
        lift = stats["attribute_lift"][segment]
        attributes = self._attributes
        order = np.argsort(-lift, kind="stable")
        chosen, used = [], set()
        for position in order:
            column, value = attributes.columns[position], attributes.values[position]
            if (column in used or value in (UNKNOWN, OTHER) or share[position] < min_share
                    or lift[position] < min_lift):
                continue
            chosen.append((column, value, float(share[position]), float(lift[position])))
            used.add(column)
            if len(chosen) == n_top:
                break
        return chosen

    def _name(self, segment: int) -> str:
        if self.suppressed[segment]:
            return f"Segment {segment} (fewer than {self.k_min} people)"
        roles = self.dataset.user_roles
        parts = [_display_value(column, value, roles.get(column))
                 for column, value, _, _ in self._defining_attributes(segment, 2)]
        stats = self._stats
        names = self.dataset.category_names
        if names:
            lift, share = stats["category_lift"][segment], stats["category_share"][segment]
            best = int(np.argmax(np.where(share >= 0.15, lift, 0.0)))
            if share[best] >= 0.15 and lift[best] >= 1.2:
                parts.append(f"{names[best]}-heavy")
        median, overall = stats["median_activity"][segment], stats["overall_median_activity"]
        if overall > 0 and median >= 2 * overall:
            parts.append("very active")
        elif median == 0 or (overall >= 2 and median <= 0.5 * overall):
            parts.append("light users")
        return ", ".join(parts) if parts else f"Segment {segment}"

    def _make_names(self) -> list[str]:
        names, seen = [], {}
        for segment in range(self.k):
            name = self._name(segment)
            if name in seen:
                seen[name] += 1
                name = f"{name} ({seen[name]})"
            else:
                seen[name] = 1
            names.append(name)
        return names

    def profiles(self, evaluation: pd.DataFrame | None = None, n_top: int = 3, k_min: int | None = None
                 ) -> pd.DataFrame:
        """One row per segment: who they are, what they like, how well the model serves them.

        Parameters
        ----------
        evaluation : pandas.DataFrame, optional
            Per-user model quality: a ``user_id`` (or ``user_index``) column and metric columns
            (e.g. :attr:`ModelEvaluation.per_user`); with a ``model`` column, one column per
            model and metric (``"fused: ndcg@10"``). The mean over each segment's evaluated users
            is reported (missing when fewer than ``k_min`` of them were evaluated).
        n_top : int
            Attributes, categories and items listed per segment.
        k_min : int, optional
            Suppression threshold (default: the result's).

        Returns
        -------
        pandas.DataFrame
            ``segment``, ``name``, ``size``, ``share`` (of assigned users), ``median_interactions``,
            ``top_attributes`` ("region North: 45% vs 18% overall (x2.5)"), ``top_categories``
            ("Electronics 31% (x2.1)"), ``top_items`` ("Title (22% of the segment)"), metric means,
            ``privacy``. Rows of segments below ``k_min`` people are masked.
        """
        k_min = check_k_min(self.k_min if k_min is None else k_min)
        stats = self._stats
        dataset = self.dataset
        rows = []
        for segment in range(self.k):
            attributes = "; ".join(
                f"{column} {value}: {share:.0%} vs {share / lift:.0%} overall (x{lift:.1f})"
                for column, value, share, lift in self._defining_attributes(segment, n_top, min_share=0.2,
                                                                            min_lift=1.1))
            categories = ""
            if dataset.category_names:
                share = stats["category_share"][segment]
                order = np.argsort(-share, kind="stable")[:n_top]
                categories = "; ".join(f"{dataset.category_names[c]} {share[c]:.0%} "
                                       f"(x{stats['category_lift'][segment][c]:.1f})" for c in order if share[c] > 0)
            counts = stats["item_counts"][segment]
            top = np.argsort(-counts, kind="stable")[:n_top]
            top = top[counts[top] > 0]
            titles = dataset.item_labels(top)
            items = "; ".join(f"{title} ({counts[i] / max(self.sizes[segment], 1):.0%} of the segment)"
                              for title, i in zip(titles, top))
            rows.append({"segment": segment, "name": self.names[segment], "size": int(self.sizes[segment]),
                         "share": self.sizes[segment] / stats["n_assigned"],
                         "median_interactions": float(stats["median_activity"][segment]),
                         "top_attributes": attributes, "top_categories": categories, "top_items": items})
        frame = pd.DataFrame(rows, columns=["segment", "name", "size", "share", "median_interactions",
                                            "top_attributes", "top_categories", "top_items"])
        if evaluation is not None:
            frame = frame.join(self._evaluation_means(evaluation, k_min), on="segment")
        frame, _ = suppress_small(frame, "size", k_min, keep=("segment",))
        return frame

    def _evaluation_means(self, evaluation: pd.DataFrame, k_min: int) -> pd.DataFrame:
        if "user_index" in evaluation.columns:
            index = pd.to_numeric(evaluation["user_index"], errors="coerce").fillna(-1).to_numpy(dtype=np.int64)
            index[(index < 0) | (index >= self.dataset.n_users)] = -1
        elif "user_id" in evaluation.columns:
            index = pd.Index(self.dataset.user_ids, dtype=object).get_indexer(
                evaluation["user_id"].astype(str).to_numpy(dtype=object))
        else:
            raise DataError("the evaluation table needs a user_id or user_index column.")
        known = index >= 0
        if not known.all():
            logger.warning("%d evaluated user(s) are not in the segmented data and were ignored", (~known).sum())
        ignore = {"user_index", "user_id", "n_history", "n_relevant", "model"}
        metrics = [c for c in evaluation.columns if c not in ignore
                   and pd.api.types.is_numeric_dtype(evaluation[c]) and not pd.api.types.is_bool_dtype(evaluation[c])]
        frame = evaluation.loc[known, metrics].copy()
        frame["segment"] = self.labels[index[known]]
        if "model" in evaluation.columns:
            frame["model"] = evaluation.loc[known, "model"].astype(str)
        frame = frame[frame["segment"] >= 0]
        if "model" in frame.columns:
            grouped = frame.groupby(["segment", "model"])
            means = grouped[metrics].mean().unstack("model")
            sizes = grouped.size().unstack("model")
            means.columns = [f"{model}: {metric}" for metric, model in means.columns]
            for column in means.columns:
                model = column.split(": ", 1)[0]
                means.loc[sizes[model].reindex(means.index).fillna(0) < k_min, column] = np.nan
        else:
            grouped = frame.groupby("segment")
            means = grouped[metrics].mean()
            means.loc[grouped.size() < k_min, :] = np.nan
        return means.reindex(range(self.k))

    # ------------------------------------------------------------------ new people
    def assign(self, static: np.ndarray | None = None, history: sp.spmatrix | None = None,
               embeddings: np.ndarray | None = None, scores: np.ndarray | None = None) -> np.ndarray:
        """Segment of people not in the data, by the rule used for training users.

        Parameters
        ----------
        static : ndarray of float32, shape (n, P), optional
            Encoded profiles (:meth:`Dataset.encode_new_users`).
        history : scipy.sparse matrix, shape (n, n_items), optional
            What they interacted with (used by the interaction-profile representation).
        embeddings : ndarray of float, shape (n, d), optional
            Their vectors in the model's embedding space (``kind == "embeddings"``).
        scores : ndarray of float, shape (n, n_items), optional
            The model's scores for them, e.g. ``model.score_new_users(...)`` (``kind == "scores"``).

        Returns
        -------
        ndarray of int32, shape (n,)
            Nearest segment centre in the clustering space when this kind of representation is
            given (scores, embeddings, or a non-empty history for the interaction profile),
            else the segment with the nearest average profile; ``-1`` when neither can be
            computed.
        """
        n = next((len(a) if not sp.issparse(a) else a.shape[0] for a in (static, history, embeddings, scores)
                  if a is not None), 0)
        out = np.full(n, -1, dtype=np.int32)
        if n == 0 or self.k == 0:
            return out
        vectors = None
        usable = np.zeros(n, dtype=bool)
        if self.kind == "scores" and scores is not None:
            vectors = self.score_coordinates(scores)
            usable = np.isfinite(vectors).all(axis=1)
        elif self.kind == "embeddings" and embeddings is not None:
            vectors = np.asarray(embeddings, dtype=np.float64)
            usable = np.isfinite(vectors).all(axis=1)
        elif self.kind == "interactions" and history is not None:
            history = sp.csr_matrix(history)
            vectors = np.asarray(_unit_rows(_binary(history)) @ self.svd_components.T, dtype=np.float64)
            usable = np.diff(history.indptr) > 0
        if vectors is not None and usable.any():
            vectors = _unit_rows(vectors)            # as in training: direction only
            z = (vectors[usable] - self.embedding_mean) / self.embedding_scale
            if self.include_profile:
                if static is None:
                    raise ValueError("these segments include the profile: give static (encoded profiles) too")
                profile = (np.asarray(static, dtype=np.float64)[usable] - self.profile_mean) / self.profile_scale
                z = np.hstack([z, profile * self.profile_weight_factor])
            out[usable] = np.argmin(_squared_distances(z, self.centers.astype(np.float64)), axis=1)
        rest = out < 0
        if rest.any() and static is not None and self.profile_centers is not None \
                and self.profile_centers.shape[1]:
            profile = (np.asarray(static, dtype=np.float64)[rest] - self.profile_mean) / self.profile_scale
            out[rest] = np.argmin(_squared_distances(profile, self.profile_centers), axis=1)
        return out

    def score_coordinates(self, scores: np.ndarray) -> np.ndarray:
        """PCA coordinates of model scores, as the training users' were computed ("scores" segments).

        Parameters
        ----------
        scores : ndarray of float, shape (n, n_items)
            Scores over the whole catalogue (``score_users`` / ``score_new_users``).

        Returns
        -------
        ndarray of float64, shape (n, n_components)
        """
        if self.score_components is None:
            raise ValueError("these segments were not built from model scores")
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 2 or scores.shape[1] != self.dataset.n_items:
            raise ValueError(f"scores must have shape (n, {self.dataset.n_items}) (got {scores.shape})")
        return (_row_standardised(scores[:, self.score_items]) - self.score_mean) @ self.score_components.T


# ---------------------------------------------------------------------- clustering
def _model_embeddings(model_or_embeddings, dataset: Dataset) -> tuple[np.ndarray | None, str]:
    if model_or_embeddings is None:
        return None, "no model given"
    if not hasattr(model_or_embeddings, "user_embeddings"):
        return np.asarray(model_or_embeddings, dtype=np.float64), "the given embeddings"
    name = getattr(model_or_embeddings, "name", type(model_or_embeddings).__name__)
    try:
        embeddings = model_or_embeddings.user_embeddings()
    except NotImplementedError:
        embeddings = None
    if embeddings is None:
        return None, f"the {name} model has no user embeddings"
    return np.asarray(embeddings), f"{name} model user embeddings"


def _check_embeddings(embeddings: np.ndarray, dataset: Dataset) -> np.ndarray:
    if embeddings.ndim != 2 or embeddings.shape[0] != dataset.n_users:
        raise DataError(f"user embeddings have shape {embeddings.shape}, expected ({dataset.n_users}, d): one row "
                        "per user of the data. Was the model trained on another data set?")
    embeddings = embeddings.astype(np.float64)
    bad = ~np.isfinite(embeddings).all(axis=1)
    if bad.any():
        raise DataError(f"{bad.sum():,} user embedding(s) contain NaN or infinite values; retrain the model.")
    return embeddings


def _interaction_profile(dataset: Dataset, fit_users: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded truncated SVD of the L2-normalised binary user rows, fitted on ``fit_users``.

    Returns the coordinates of every user, float64 (n_users, c), and the components (c, n_items).
    """
    from sklearn.decomposition import TruncatedSVD

    unit = _unit_rows(_binary(dataset.matrix)).astype(np.float32).tocsr()
    n_components = min(SVD_COMPONENTS, dataset.n_items - 1, len(fit_users) - 1)
    if n_components < 2:
        return unit.toarray().astype(np.float64), np.eye(dataset.n_items)
    svd = TruncatedSVD(n_components=n_components, random_state=seed, n_iter=5)
    with _single_threaded():
        svd.fit(unit[fit_users])
        vectors = svd.transform(unit)
    return np.asarray(vectors, dtype=np.float64), svd.components_


def _row_standardised(scores: np.ndarray) -> np.ndarray:
    """Each row to mean 0, sd 1 (a constant row to zeros): only the ranking of the items counts."""
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    centred = scores - scores.mean(axis=1, keepdims=True)
    spread = centred.std(axis=1, keepdims=True)
    return np.divide(centred, spread, out=np.zeros_like(centred), where=spread > 1e-12)


def _score_profile(model, dataset: Dataset, fit_users: np.ndarray, seed: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """PCA of the row-standardised model scores (fitted on a sample of ``fit_users``), for every user.

    Returns ``(coordinates float64 (n_users, c), items int64 (m,), mean (m,), components (c, m))``,
    or ``None`` when the model scores everyone alike (nothing to cluster).
    """
    from sklearn.decomposition import PCA

    n_items = dataset.n_items
    if n_items <= SCORE_ITEMS:
        items = np.arange(n_items, dtype=np.int64)
    else:   # the most popular items: where the model's choices differ most between people
        counts = np.bincount(dataset.item_index, minlength=n_items)
        items = np.sort(np.argsort(-counts, kind="stable")[:SCORE_ITEMS]).astype(np.int64)
    rng = np.random.default_rng(seed)
    sample = fit_users if len(fit_users) <= SELECTION_USERS else np.sort(
        rng.choice(fit_users, size=SELECTION_USERS, replace=False))
    rows = np.vstack([_row_standardised(np.asarray(model.score_users(sample[start:start + SCORE_BATCH]),
                                                   dtype=np.float32)[:, items]).astype(np.float32)
                      for start in range(0, len(sample), SCORE_BATCH)])
    n_components = min(SCORE_COMPONENTS, len(items) - 1, len(sample) - 1)
    if n_components < 1 or float(rows.std(axis=0).max(initial=0.0)) < 1e-6:
        return None
    with _single_threaded():
        pca = PCA(n_components=n_components, svd_solver="randomized", random_state=seed).fit(rows)
    coordinates = np.empty((dataset.n_users, n_components), dtype=np.float64)
    coordinates[sample] = (rows - pca.mean_) @ pca.components_.T       # scored once already
    rest = np.setdiff1d(np.arange(dataset.n_users), sample)
    for start in range(0, len(rest), SCORE_BATCH):
        batch = rest[start:start + SCORE_BATCH]
        scores = np.asarray(model.score_users(batch), dtype=np.float32)[:, items]
        coordinates[batch] = (_row_standardised(scores) - pca.mean_) @ pca.components_.T
    return coordinates, items, pca.mean_.astype(np.float64), pca.components_.astype(np.float64)


def _kmeans(k: int, seed: int, n_init: int):
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=n_init, random_state=seed)


def _single_threaded():
    """k-means and the silhouette run BLAS inside OpenMP threads: nested pools oversubscribe a
    small machine badly (30x slower measured on 2 busy cores), one thread each is fastest here."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def segment_users(model_or_embeddings, dataset: Dataset, k: int | None = None,
                  k_range: tuple[int, int] = DEFAULT_K_RANGE, include_profile: bool = False,
                  profile_weight: float = DEFAULT_PROFILE_WEIGHT, seed: int = 0, max_fit_users: int = 20000,
                  cold_users: str = "profile", n_init: int = 4, k_min: int = K_MIN_DEFAULT,
                  representation: str = "auto") -> SegmentResult:
    """Cluster users into segments (k-means on standardised representations).

    Parameters
    ----------
    model_or_embeddings : Recommender, ndarray of float (n_users, d), or None
        A fitted model, user vectors, or ``None`` (the interaction profile; see module docstring).
    dataset : Dataset
        The data the model was trained on (rows of the embeddings = its users).
    k : int, optional
        Number of segments; chosen by silhouette over ``k_range`` when omitted.
    k_range : (int, int)
        Smallest and largest k tried (inclusive); at least 2.
    include_profile : bool
        Append the standardised static profile (``dataset.user_features``).
    profile_weight : float
        Total variance of the profile block relative to the embedding block (1: equal say;
        default 0.5: the profile shapes the segments without outvoting taste).
    seed : int
        Seeds the samples, the SVD and k-means: same seed, same segments.
    max_fit_users : int
        The final k-means is fitted on a seeded sample of at most this many users and predicts
        the rest.
    cold_users : {"profile", "exclude", "embedding"}
        What happens to users without interactions (see module docstring).
    n_init : int
        k-means restarts.
    k_min : int
        Segments below this many people are not named or exported.
    representation : {"auto", "scores", "embeddings", "interactions"}
        How a model describes a person: its scores (``"auto"`` for a model), its user vectors,
        or what people interacted with. A model that scores everyone alike (popularity), or has
        no user vectors when ``"embeddings"`` is asked for, falls back to the interaction
        profile with a notice. Ignored for arrays and ``None``.

    Returns
    -------
    SegmentResult

    Raises
    ------
    DataError
        Embeddings of the wrong shape or with NaN, or no user to cluster.
    ValueError
        Invalid arguments.
    """
    k_min = check_k_min(k_min)
    if cold_users not in COLD_USER_POLICIES:
        raise ValueError(f"cold_users must be one of {COLD_USER_POLICIES} (got {cold_users!r})")
    if k is not None and (isinstance(k, bool) or int(k) < 1):
        raise ValueError(f"k must be a whole number of at least 1 (got {k!r})")
    low, high = (int(k_range[0]), int(k_range[1]))
    if k is None and not 2 <= low <= high:
        raise ValueError(f"k_range must be (low, high) with 2 <= low <= high (got {k_range!r})")
    if not profile_weight >= 0:
        raise ValueError(f"profile_weight must be at least 0 (got {profile_weight!r})")
    if representation not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {REPRESENTATIONS} (got {representation!r})")
    rng = np.random.default_rng(seed)
    notices: list[str] = []

    is_model = model_or_embeddings is not None and hasattr(model_or_embeddings, "score_users")
    kind = "embeddings"
    if model_or_embeddings is None or (is_model and representation == "interactions"):
        embeddings, source = None, ""
    elif is_model and representation in ("auto", "scores"):
        embeddings, source, kind = None, "", "scores"
    else:
        embeddings, source = _model_embeddings(model_or_embeddings, dataset)
        if embeddings is None and model_or_embeddings is not None:
            notices.append(f"{source}; segments use what people interacted with instead.")
    use_interactions = embeddings is None and kind != "scores"

    active = np.diff(dataset.matrix.indptr) > 0
    if cold_users == "embedding" and use_interactions:
        cold_users = "profile"   # an empty interaction row says nothing: place such people by profile
    if cold_users == "embedding":
        clustered = np.ones(dataset.n_users, dtype=bool)
    else:
        clustered = active
    candidates = np.flatnonzero(clustered)
    if len(candidates) == 0:
        raise DataError("no user has an interaction to build segments from.")
    fit_users = candidates
    if len(fit_users) > max_fit_users:
        fit_users = np.sort(rng.choice(fit_users, size=int(max_fit_users), replace=False))
        notices.append(f"segments were fitted on a random sample of {len(fit_users):,} of "
                       f"{len(candidates):,} users, then every user was assigned.")

    svd_components = score_parts = None
    name = getattr(model_or_embeddings, "name", type(model_or_embeddings).__name__)
    if kind == "scores":
        score_parts = _score_profile(model_or_embeddings, dataset, fit_users, seed)
        if score_parts is None:
            notices.append(f"the {name} model scores everyone alike; segments use what people interacted "
                           "with instead.")
            use_interactions = True
            if cold_users == "embedding":   # an empty interaction row says nothing: place such people by profile
                cold_users, clustered = "profile", active
                fit_users = np.intersect1d(fit_users, np.flatnonzero(active))
        else:
            embeddings = score_parts[0]
            source = f"{name} model scores (what it would recommend to each person)"
    if use_interactions:
        embeddings, svd_components = _interaction_profile(dataset, fit_users, seed)
        source = "interaction profile (SVD of what each user interacted with)"
        kind = "interactions"
    embeddings = _check_embeddings(embeddings, dataset)

    # Direction is taste; the length of a user vector mostly says how active the user is.
    embeddings = _unit_rows(embeddings)
    mean = embeddings[fit_users].mean(axis=0)
    scale = embeddings[fit_users].std(axis=0)
    if kind in ("interactions", "scores"):
        # SVD / PCA coordinates are ordered by importance: scaling each to sd 1 would let the trailing,
        # noisy components count as much as the leading ones. One common scale keeps the geometry.
        scale = np.full_like(scale, np.sqrt(np.mean(scale ** 2)))
    scale = np.where(scale > 1e-12, scale, 1.0)
    representation = (embeddings - mean) / scale

    static = dataset.user_features.astype(np.float64)
    profile_mean = static.mean(axis=0)
    profile_scale = static.std(axis=0)
    profile_scale = np.where(profile_scale > 1e-12, profile_scale, 1.0)
    profile_z = (static - profile_mean) / profile_scale
    factor = 0.0
    if include_profile and static.shape[1]:
        embedding_variance = float(representation[fit_users].var(axis=0).sum())
        profile_variance = float(profile_z.var(axis=0).sum())
        factor = float(np.sqrt(profile_weight * embedding_variance / profile_variance)) if profile_variance > 0 else 0.0
        representation = np.hstack([representation, profile_z * factor])
    elif include_profile:
        notices.append("the data has no profile columns; segments use the embeddings only.")
    representation = representation.astype(np.float32)

    X_fit = representation[fit_users]
    n_distinct = len(np.unique(X_fit.round(6), axis=0)) if len(X_fit) <= 50_000 else len(X_fit)
    silhouette: dict[int, float] = {}
    chosen_model = None
    if k is not None:
        k = min(int(k), n_distinct)
        candidates_k = [k]
    else:
        candidates_k = list(range(low, min(high, n_distinct - 1) + 1))
    if not candidates_k:
        candidates_k = [1]
        notices.append("too few distinct users to form several segments.")
    if candidates_k == [1]:
        k = 1
    else:
        from sklearn.metrics import silhouette_score

        selection = fit_users if len(fit_users) <= SELECTION_USERS else np.sort(
            rng.choice(fit_users, size=SELECTION_USERS, replace=False))
        score_users = selection if len(selection) <= SILHOUETTE_USERS else np.sort(
            rng.choice(selection, size=SILHOUETTE_USERS, replace=False))
        models = {}
        with _single_threaded():
            for candidate in candidates_k:
                km = _kmeans(candidate, seed, n_init).fit(representation[selection])
                predicted = km.predict(representation[score_users])
                if len(np.unique(predicted)) > 1:
                    silhouette[candidate] = float(silhouette_score(representation[score_users], predicted,
                                                                   random_state=seed))
                else:
                    silhouette[candidate] = float("nan")
                models[candidate] = km
        if k is None:
            finite = {c: s for c, s in silhouette.items() if np.isfinite(s)}
            k = max(finite, key=lambda c: (finite[c], -c)) if finite else candidates_k[0]
        if len(selection) == len(fit_users):
            chosen_model = models[k]
    if k == 1:
        centers = X_fit.mean(axis=0, keepdims=True)
        raw_labels = np.zeros(dataset.n_users, dtype=np.int64)
    else:
        with _single_threaded():
            if chosen_model is None:
                chosen_model = _kmeans(k, seed, n_init).fit(X_fit)
            raw_labels = chosen_model.predict(representation)
        centers = chosen_model.cluster_centers_

    # Number segments by size (0 = largest), ties by the raw label: stable for a seed.
    raw_labels = np.where(clustered, raw_labels, -1)
    raw_sizes = np.bincount(raw_labels[raw_labels >= 0], minlength=k)
    order = np.lexsort((np.arange(k), -raw_sizes))
    relabel = np.empty(k, dtype=np.int64)
    relabel[order] = np.arange(k)
    labels = np.where(raw_labels >= 0, relabel[np.maximum(raw_labels, 0)], -1).astype(np.int32)
    centers = np.asarray(centers, dtype=np.float32)[order]

    profile_centers = None
    if static.shape[1]:
        membership = _membership(labels, k)
        counts = np.maximum(np.asarray(membership.sum(axis=1)).ravel(), 1.0)
        profile_centers = np.asarray(membership @ profile_z) / counts[:, None]
    cold = ~clustered
    if cold.any():
        if cold_users == "profile" and profile_centers is not None:
            labels[cold] = np.argmin(_squared_distances(profile_z[cold], profile_centers), axis=1)
            notices.append(f"{cold.sum():,} user(s) without interactions were placed by their profile alone.")
        else:
            notices.append(f"{cold.sum():,} user(s) without interactions are not in any segment.")
    sizes = np.bincount(labels[labels >= 0], minlength=k).astype(np.int64)

    result = SegmentResult(
        labels=labels, k=int(k), silhouette=silhouette, centers=centers, names=[], sizes=sizes,
        representation=representation, source=source, dataset=dataset, include_profile=bool(factor > 0),
        cold_users=cold_users, k_min=k_min, embedding_mean=mean, embedding_scale=scale,
        profile_mean=profile_mean, profile_scale=profile_scale, profile_weight_factor=factor,
        profile_centers=profile_centers, svd_components=svd_components, kind=kind,
        score_items=score_parts[1] if score_parts is not None else None,
        score_mean=score_parts[2] if score_parts is not None else None,
        score_components=score_parts[3] if score_parts is not None else None,
        model=model_or_embeddings if is_model and kind != "interactions" else None)
    result.names = result._make_names()
    n_small = int(result.suppressed.sum())
    if n_small:
        notices.append(f"{n_small} segment(s) have fewer than {k_min} people; their details are hidden.")
    result.notice = " ".join(notices)
    logger.info("segments: k=%d from %s (silhouette %s)", k, source,
                {c: round(s, 3) for c, s in silhouette.items()})
    return result


# ---------------------------------------------------------------------- display helpers
def projection_2d(embeddings: np.ndarray, method: str = "pca", max_points: int = 3000, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, str]:
    """Two-dimensional map of user (or item) vectors for a scatter plot.

    Parameters
    ----------
    embeddings : ndarray of float, shape (n, d)
    method : {"pca", "tsne"}
        PCA (fast, linear) or t-SNE (scikit-learn; shows local groups, but 3,000 points take
        10-20 s on one core).
    max_points : int
        Above this many rows a seeded random sample is projected (and ``notice`` says so).
    seed : int

    Returns
    -------
    coords : ndarray of float32, shape (m, 2)
    sampled_index : ndarray of int64, shape (m,)
        Rows of ``embeddings`` the coordinates belong to (sorted).
    notice : str
        "" unless sampled.
    """
    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne' (got {method!r})")
    values = np.asarray(embeddings, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (got shape {values.shape})")
    n = values.shape[0]
    index = np.arange(n, dtype=np.int64)
    notice = ""
    if n > max_points:
        index = np.sort(np.random.default_rng(seed).choice(n, size=int(max_points), replace=False))
        notice = f"showing a random sample of {len(index):,} of {n:,} points."
    values = np.nan_to_num(values[index])
    if len(index) == 0:
        return np.zeros((0, 2), dtype=np.float32), index, notice
    if values.shape[1] < 2 or len(index) < 3:
        coords = np.zeros((len(index), 2))
        coords[:, : min(values.shape[1], 2)] = values[:, :2] - values[:, :2].mean(axis=0)
        return coords.astype(np.float32), index, notice
    with _single_threaded():
        if method == "pca":
            from sklearn.decomposition import PCA

            coords = PCA(n_components=2, random_state=seed).fit_transform(values)
        else:
            from sklearn.manifold import TSNE

            perplexity = float(min(30.0, max(2.0, (len(index) - 1) / 3)))
            # 500 iterations (sklearn's default is 1000) settle a 2-D map of a few thousand points
            # and halve the wait on a small machine.
            coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=500,
                          n_jobs=1).fit_transform(values)
    return np.asarray(coords, dtype=np.float32), index, notice


def _segment_position(result: SegmentResult, segment) -> int:
    if isinstance(segment, (int, np.integer)) and not isinstance(segment, bool):
        if 0 <= int(segment) < result.k:
            return int(segment)
        raise KeyError(f"segment {segment} does not exist (segments 0 to {result.k - 1}).")
    if segment in result.names:
        return result.names.index(segment)
    raise KeyError(f"no segment named {segment!r}.")


def compare_segments(result: SegmentResult, a, b) -> pd.DataFrame:
    """Two segments side by side: share of each profile value and category, and its lift.

    Parameters
    ----------
    result : SegmentResult
    a, b : int or str
        Segment numbers or names.

    Returns
    -------
    pandas.DataFrame
        ``kind`` ("profile" or "category"), ``attribute``, ``value``, ``overall`` (share in the
        whole population), ``share_a``, ``share_b``, ``lift_a``, ``lift_b``, ``difference``
        (``share_a - share_b``), sorted by the size of the difference. A segment below
        ``k_min`` people has its columns masked (``attrs["notice"]`` says so). Category shares
        are shares of the segment's interactions; profile shares, of its people.
    """
    first, second = _segment_position(result, a), _segment_position(result, b)
    stats = result._stats
    attributes = result._attributes
    parts = [pd.DataFrame({
        "kind": "profile", "attribute": attributes.columns, "value": attributes.values,
        "overall": stats["attribute_overall"],
        "share_a": stats["attribute_share"][first], "share_b": stats["attribute_share"][second],
        "lift_a": stats["attribute_lift"][first], "lift_b": stats["attribute_lift"][second]})]
    names = result.dataset.category_names
    if names:
        parts.append(pd.DataFrame({
            "kind": "category", "attribute": result.dataset.category_column or "category", "value": names,
            "overall": stats["overall_share"],
            "share_a": stats["category_share"][first], "share_b": stats["category_share"][second],
            "lift_a": stats["category_lift"][first], "lift_b": stats["category_lift"][second]}))
    frame = pd.concat(parts, ignore_index=True)
    frame = frame[frame["overall"] > 0].copy()
    notes = []
    for position, suffix in ((first, "a"), (second, "b")):
        if result.suppressed[position]:
            frame[[f"share_{suffix}", f"lift_{suffix}"]] = np.nan
            notes.append(f"segment {position} has fewer than {result.k_min} people; its details are hidden.")
    frame["difference"] = frame["share_a"] - frame["share_b"]
    frame = frame.iloc[np.argsort(-frame["difference"].abs().fillna(0).to_numpy(), kind="stable")]
    frame = frame.reset_index(drop=True)
    frame.attrs["a"], frame.attrs["b"] = result.names[first], result.names[second]
    frame.attrs["notice"] = " ".join(notes)
    return frame


def segment_assignments(result: SegmentResult, dataset: Dataset | None = None, k_min: int | None = None
                        ) -> pd.DataFrame:
    """Who is in which segment, for export.

    Users of segments below ``k_min`` people and unassigned users are left out
    (``attrs["notice"]`` counts them). Pass the frame through
    :func:`recommender.analysis.privacy.safe_csv` to write it.

    Returns
    -------
    pandas.DataFrame
        ``user_id``, ``segment`` (int), ``segment_name``.
    """
    dataset = result.dataset if dataset is None else dataset
    if dataset.n_users != len(result.labels):
        raise DataError(f"the segments cover {len(result.labels):,} users but the data has {dataset.n_users:,}.")
    k_min = check_k_min(result.k_min if k_min is None else k_min)
    small = small_group_mask(result.sizes, k_min)
    labels = result.labels
    keep = (labels >= 0) & ~small[np.maximum(labels, 0)]
    names = np.asarray(result.names, dtype=object)
    frame = pd.DataFrame({"user_id": dataset.user_ids[keep], "segment": labels[keep].astype(np.int64),
                          "segment_name": names[labels[keep]]})
    dropped_small = int(((labels >= 0) & ~keep).sum())
    notes = []
    if dropped_small:
        notes.append(f"{dropped_small:,} user(s) in segments of fewer than {k_min} people are not exported "
                     f"({suppressed_label(k_min)}).")
    if (labels < 0).any():
        notes.append(f"{int((labels < 0).sum()):,} user(s) without a segment are not exported.")
    frame.attrs["notice"] = " ".join(notes)
    return frame


def groupable_columns(dataset: Dataset) -> list[str]:
    """Profile columns that split people into groups (not multi-label or free text)."""
    columns = []
    for column in dataset.profile_encoder.columns:
        try:
            profile_groups(dataset, column)
        except (KeyError, ValueError):
            continue
        columns.append(column)
    return columns
