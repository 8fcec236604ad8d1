"""Similarity heatmaps: items x items, users x users, and groups x item categories.

Every function returns a :class:`SimilarityMatrix` small enough to draw (at most
:data:`MAX_ITEMS` rows/columns): large inputs are capped, sampled or aggregated first, never
materialised in full, and ``notice`` says what was done. Rows and columns are ordered by
hierarchical clustering (average linkage on ``1 - similarity``) so that blocks of similar
items or people sit next to each other.

Item-item similarity comes from one of three sources:

* ``"model"``: the model's own notion (``model.item_similarity``: the fused model's item
  vectors, ALS factors, ...);
* ``"cooccurrence"``: cosine of the items' columns of the user x item matrix (who interacted
  with both, relative to each item's audience);
* ``"content"``: cosine of the items' feature vectors (category, brand, tags, price ...).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..dataset import Dataset
from ..errors import DataError
from .privacy import K_MIN_DEFAULT, check_k_min, small_group_mask, suppress_matrix, suppression_notice
from .segments import SegmentResult, _binary, _membership, _unit_rows

logger = logging.getLogger(__name__)

#: Largest heatmap drawn (rows and columns).
MAX_ITEMS = 60
#: Largest number of groups in an affinity heatmap (the biggest groups are kept).
MAX_GROUPS = 40
SOURCES = ("model", "cooccurrence", "content")


@dataclass
class SimilarityMatrix:
    """A labelled, clustered matrix ready for a heatmap.

    Attributes
    ----------
    values : ndarray of float64, shape (n_rows, n_columns)
        Similarities (or lifts); NaN where suppressed.
    row_labels, column_labels : list of str
        Display labels, unique.
    row_index, column_index : ndarray of int64
        What each row/column is: item indices, user indices, or positions in the group /
        category lists.
    kind : str
        ``"item"``, ``"user"``, ``"segment"`` or ``"affinity"``.
    source : str
        Where the values come from.
    counts : ndarray of float64, optional
        People behind each cell (affinity heatmaps).
    notice : str
        What was capped, sampled, aggregated or suppressed ("" when nothing was).
    n_suppressed : int
        Cells hidden for privacy.
    """

    values: np.ndarray
    row_labels: list[str]
    column_labels: list[str]
    row_index: np.ndarray
    column_index: np.ndarray
    kind: str
    source: str
    counts: np.ndarray | None = None
    notice: str = ""
    n_suppressed: int = 0
    extra: dict = field(default_factory=dict, repr=False)

    def to_frame(self) -> pd.DataFrame:
        """The values with labelled rows and columns."""
        return pd.DataFrame(self.values, index=self.row_labels, columns=self.column_labels)

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape


# ---------------------------------------------------------------------- helpers
def unique_labels(labels: Sequence[str], ids: Sequence[str] | None = None) -> list[str]:
    """Labels made unique: a repeated label gets its id (or a counter) appended."""
    labels = [str(label) for label in labels]
    counts = pd.Series(labels).value_counts()
    out, used = [], set()
    for position, label in enumerate(labels):
        if counts[label] > 1:
            label = f"{label} [{ids[position]}]" if ids is not None else f"{label} ({position + 1})"
        while label in used:
            label = f"{label}'"
        used.add(label)
        out.append(label)
    return out


def cluster_order(similarity: np.ndarray) -> np.ndarray:
    """Leaf order of average-linkage clustering on ``1 - similarity`` (a square, symmetric matrix).

    NaN similarities count as 0. Returns int64 positions (identity for fewer than 3 rows).
    """
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    n = similarity.shape[0]
    if n < 3:
        return np.arange(n, dtype=np.int64)
    values = np.nan_to_num(np.asarray(similarity, dtype=np.float64), nan=0.0)
    values = (values + values.T) / 2.0
    distance = np.clip(1.0 - values, 0.0, None)
    np.fill_diagonal(distance, 0.0)
    return leaves_list(linkage(squareform(distance, checks=False), method="average")).astype(np.int64)


def _vector_order(vectors: np.ndarray) -> np.ndarray:
    """Leaf order of average-linkage clustering of the rows of ``vectors`` (Euclidean)."""
    from scipy.cluster.hierarchy import leaves_list, linkage

    if vectors.shape[0] < 3:
        return np.arange(vectors.shape[0], dtype=np.int64)
    return leaves_list(linkage(np.nan_to_num(vectors), method="average")).astype(np.int64)


def _cosine_columns(binary: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
    columns = binary[:, items].tocsc()
    gram = np.asarray((columns.T @ columns).todense(), dtype=np.float64)
    norms = np.sqrt(np.diag(gram))
    return np.divide(gram, np.outer(norms, norms), out=np.zeros_like(gram), where=np.outer(norms, norms) > 0)


def _cosine_rows(vectors: np.ndarray) -> np.ndarray:
    unit = _unit_rows(np.asarray(vectors, dtype=np.float64))
    return unit @ unit.T


def item_popularity(dataset: Dataset) -> np.ndarray:
    """Number of users who interacted with each item, int64 (n_items,)."""
    return np.bincount(dataset.item_index, minlength=dataset.n_items).astype(np.int64)


def _select_items(dataset: Dataset, items, top_n: int, category: str | None) -> tuple[np.ndarray, list[str]]:
    notes = []
    limit = int(top_n)
    if limit < 2:
        raise ValueError(f"top_n must be at least 2 (got {top_n!r})")
    if limit > MAX_ITEMS:
        notes.append(f"capped at the {MAX_ITEMS} most popular of the {limit} items asked for.")
        limit = MAX_ITEMS
    popularity = item_popularity(dataset)
    if items is not None:
        index = np.asarray(dataset.item_indices(list(items)), dtype=np.int64)
        index = index[np.sort(np.unique(index, return_index=True)[1])]
        if len(index) > limit:
            keep = np.sort(np.argsort(-popularity[index], kind="stable")[:limit])
            notes = [f"showing the {limit} most popular of the {len(index)} items chosen."]
            index = index[keep]
        return index, notes
    candidates = np.arange(dataset.n_items)
    if category is not None:
        names = dataset.category_names
        if category not in names:
            raise KeyError(f"category {category!r} not in the data (categories: {', '.join(names[:20]) or 'none'}).")
        column = dataset.item_categories[:, names.index(category)]
        candidates = np.flatnonzero(np.asarray(column.todense()).ravel() > 0)
    order = candidates[np.argsort(-popularity[candidates], kind="stable")]
    return order[:limit], notes


def _item_source_values(source: str, dataset: Dataset, model, index: np.ndarray) -> np.ndarray:
    if source == "model":
        if model is None:
            raise ValueError("source='model' needs a fitted model; or choose 'cooccurrence' or 'content'.")
        try:
            values = np.asarray(model.item_similarity(index), dtype=np.float64)
        except NotImplementedError:
            name = getattr(model, "name", type(model).__name__)
            raise ValueError(f"the {name} model has no notion of item similarity; choose 'cooccurrence' or "
                             "'content'.") from None
        return values[:, index]
    if source == "cooccurrence":
        return _cosine_columns(_binary(dataset.matrix), index)
    if source == "content":
        if dataset.item_features.shape[1] == 0:
            raise ValueError("the data has no item features (no item table with attributes); choose "
                             "'cooccurrence' or 'model'.")
        return _cosine_rows(dataset.item_features[index])
    raise ValueError(f"source must be one of {SOURCES} (got {source!r})")


# ---------------------------------------------------------------------- items x items
def item_similarity_matrix(source: str, dataset: Dataset, model=None, items: Sequence[str] | None = None,
                           top_n: int = 30, category: str | None = None) -> SimilarityMatrix:
    """Item x item similarity of a small set of items, clustered into visible blocks.

    Parameters
    ----------
    source : {"model", "cooccurrence", "content"}
    dataset : Dataset
    model : Recommender, optional
        Needed for ``source="model"``.
    items : sequence of str, optional
        Item ids to show; by default the ``top_n`` most popular (within ``category`` if given).
    top_n : int
        How many items (at most :data:`MAX_ITEMS`; larger requests are capped with a notice).
    category : str, optional
        One of ``dataset.category_names``.

    Returns
    -------
    SimilarityMatrix
        Square, symmetric-ish (model similarities need not be symmetric), rows and columns in
        the same clustered order, labelled by title.

    Raises
    ------
    ValueError
        Unknown source, model missing or without item similarity, no item features.
    KeyError
        Unknown item id or category.
    """
    index, notes = _select_items(dataset, items, top_n, category)
    if len(index) == 0:
        return SimilarityMatrix(np.zeros((0, 0)), [], [], index, index, "item", source,
                                notice="no item to show" + (f" in category {category!r}." if category else "."))
    values = _item_source_values(source, dataset, model, index)
    values = np.where(np.isfinite(values), values, np.nan)
    order = cluster_order(values)
    index, values = index[order], values[np.ix_(order, order)]
    labels = unique_labels(dataset.item_labels(index), dataset.item_ids[index])
    return SimilarityMatrix(values, labels, list(labels), index, index.copy(), "item", source,
                            notice=" ".join(notes))


# ---------------------------------------------------------------------- users x users
def _user_vectors(dataset: Dataset, model) -> tuple[np.ndarray | sp.csr_matrix, str]:
    if model is not None:
        try:
            embeddings = model.user_embeddings()
        except NotImplementedError:
            embeddings = None
        if embeddings is not None:
            embeddings = np.asarray(embeddings, dtype=np.float64)
            if embeddings.shape[0] == dataset.n_users:
                return embeddings, f"{getattr(model, 'name', 'model')} user embeddings (cosine)"
    return _binary(dataset.matrix), "shared items (cosine of interaction rows)"


def user_similarity_matrix(dataset: Dataset, model=None, sample: int = 40, by_segment=None, seed: int = 0,
                           k_min: int = K_MIN_DEFAULT) -> SimilarityMatrix:
    """Similarity between a seeded sample of users, or between segments.

    Parameters
    ----------
    dataset : Dataset
    model : Recommender, optional
        Its user embeddings are compared when it has them; otherwise the users' interaction rows.
    sample : int
        Users drawn (at most :data:`MAX_ITEMS`), among users with interactions.
    by_segment : SegmentResult or array of labels (n_users,), optional
        Compare segment averages instead of people: the mean of each segment's unit-length
        vectors; segments below ``k_min`` people are left out.
    seed : int
    k_min : int

    Returns
    -------
    SimilarityMatrix
        Users (labelled by id) or segments (labelled by name), clustered.
    """
    k_min = check_k_min(k_min)
    vectors, source = _user_vectors(dataset, model)
    notes = []
    if by_segment is not None:
        if isinstance(by_segment, SegmentResult):
            labels = by_segment.labels
            names = list(by_segment.names)
        else:
            labels, names = _encode_groups(by_segment, dataset.n_users)
        membership = _membership(labels, len(names))
        sizes = np.asarray(membership.sum(axis=1)).ravel()
        keep = np.flatnonzero(~small_group_mask(sizes, k_min) & (sizes > 0))
        if len(keep) < len(names):
            notes.append(suppression_notice(len(names) - len(keep), k_min, "segment"))
        if len(keep) > MAX_ITEMS:
            keep = np.sort(keep[np.argsort(-sizes[keep], kind="stable")[:MAX_ITEMS]])
            notes.append(f"showing the {MAX_ITEMS} largest groups.")
        unit = _unit_rows(vectors)
        sums = membership[keep] @ unit
        means = np.asarray(sums.todense() if sp.issparse(sums) else sums, dtype=np.float64)
        means = means / np.maximum(sizes[keep], 1)[:, None]
        values = _cosine_rows(means)
        order = cluster_order(values)
        keep, values = keep[order], values[np.ix_(order, order)]
        row_labels = unique_labels([names[g] for g in keep])
        notes.append("each cell compares the average member of two segments.")
        return SimilarityMatrix(values, row_labels, list(row_labels), keep.astype(np.int64),
                                keep.astype(np.int64), "segment", source, counts=None,
                                notice=" ".join(n for n in notes if n), extra={"sizes": sizes[keep]})
    sample = int(sample)
    if sample < 2:
        raise ValueError(f"sample must be at least 2 (got {sample})")
    if sample > MAX_ITEMS:
        notes.append(f"capped at {MAX_ITEMS} users.")
        sample = MAX_ITEMS
    candidates = np.flatnonzero(np.diff(dataset.matrix.indptr) > 0)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(candidates, size=min(sample, len(candidates)), replace=False))
    notes.append(f"a random sample of {len(chosen)} of {len(candidates):,} users with interactions.")
    rows = vectors[chosen]
    if sp.issparse(rows):
        unit = _unit_rows(rows)
        values = np.asarray((unit @ unit.T).todense(), dtype=np.float64)
    else:
        values = _cosine_rows(rows)
    order = cluster_order(values)
    chosen, values = chosen[order], values[np.ix_(order, order)]
    labels = unique_labels(dataset.user_ids[chosen])
    return SimilarityMatrix(values, labels, list(labels), chosen.astype(np.int64), chosen.astype(np.int64),
                            "user", source, notice=" ".join(notes))


# ---------------------------------------------------------------------- groups x categories
def _encode_groups(groups, n_users: int) -> tuple[np.ndarray, list[str]]:
    """Integer codes (n_users,) and names of per-user group labels; missing -> "(unknown)"."""
    values = pd.Series(np.asarray(groups, dtype=object) if not isinstance(groups, pd.Series) else groups.to_numpy(
        dtype=object))
    if len(values) != n_users:
        raise DataError(f"groups has {len(values):,} labels but the data has {n_users:,} users: give one label "
                        "per user, in the data's user order.")
    text = values.astype("string").fillna("(unknown)").to_numpy(dtype=object)
    names, codes = np.unique(text.astype(str), return_inverse=True)
    return codes.astype(np.int64), [str(n) for n in names]


def affinity_matrix(dataset: Dataset, groups, k_min: int = K_MIN_DEFAULT) -> SimilarityMatrix:
    """Which groups of people lean to which item categories (lift), with small cells hidden.

    For group ``g`` and category ``c``::

        share(g, c) = interactions of g's members with items of c / all interactions of g's members
        overall(c)  = interactions with items of c / all interactions
        lift(g, c)  = share(g, c) / overall(c)

    (an item in several categories counts as a fraction in each). A lift of 2 means the group
    puts twice the average share of its interactions into that category.

    Parameters
    ----------
    dataset : Dataset
    groups : SegmentResult, or array-like of labels, shape (n_users,)
        Segment names, or a profile attribute's values
        (:func:`recommender.analysis.segments.profile_groups`).
    k_min : int
        A cell is shown only when at least ``k_min`` people of the group interacted with the
        category (and the group has at least ``k_min`` people).

    Returns
    -------
    SimilarityMatrix
        Rows: groups (at most :data:`MAX_GROUPS`, the largest), columns: categories, both
        ordered by clustering of their lift profiles; ``values`` = lift (NaN when hidden),
        ``counts`` = people behind each cell, ``extra["share"]`` = ``share(g, c)``,
        ``extra["overall"]`` = ``overall(c)``, ``extra["group_sizes"]``.

    Raises
    ------
    DataError
        The data has no item categories, or ``groups`` has the wrong length.
    """
    k_min = check_k_min(k_min)
    if isinstance(groups, SegmentResult):
        codes, names = groups.labels.astype(np.int64), list(groups.names)
    else:
        codes, names = _encode_groups(groups, dataset.n_users)
    categories = dataset.item_categories
    if categories.shape[1] == 0:
        raise DataError("the data has no item category column, so there is nothing to compare groups on.")
    notes = []
    membership = _membership(codes, len(names))
    sizes = np.asarray(membership.sum(axis=1)).ravel()
    keep = np.flatnonzero(sizes > 0)
    if len(keep) > MAX_GROUPS:
        keep = np.sort(keep[np.argsort(-sizes[keep], kind="stable")[:MAX_GROUPS]])
        notes.append(f"showing the {MAX_GROUPS} largest of {int((sizes > 0).sum())} groups.")
    membership = membership[keep]
    binary = _binary(dataset.matrix)
    user_mass = (binary @ categories).tocsr()                      # (n_users, C): interactions per category
    mass = np.asarray((membership @ user_mass).todense(), dtype=np.float64)
    reached = user_mass.copy()
    reached.data = (reached.data > 0).astype(np.float32)
    people = np.asarray((membership @ reached).todense(), dtype=np.float64)
    totals = mass.sum(axis=1, keepdims=True)
    share = np.divide(mass, totals, out=np.zeros_like(mass), where=totals > 0)
    overall_mass = np.asarray(user_mass.sum(axis=0), dtype=np.float64).ravel()
    overall = overall_mass / max(overall_mass.sum(), 1e-12)
    lift = np.divide(share, overall[None, :], out=np.full_like(share, np.nan), where=overall[None, :] > 0)
    cell_people = np.where(small_group_mask(sizes[keep], k_min)[:, None], 0.0, people)
    values, n_suppressed = suppress_matrix(lift, cell_people, k_min)
    if n_suppressed:
        notes.append(suppression_notice(n_suppressed, k_min, "cell"))
    log_lift = np.log2(np.where(np.isfinite(values) & (values > 0), values, 1.0))
    row_order = _vector_order(log_lift)
    column_order = _vector_order(log_lift.T)
    keep = keep[row_order]
    values = values[np.ix_(row_order, column_order)]
    counts = people[np.ix_(row_order, column_order)]
    counts = np.where(np.isnan(values), np.nan, counts)
    return SimilarityMatrix(
        values, unique_labels([names[g] for g in keep]), [dataset.category_names[c] for c in column_order],
        keep.astype(np.int64), column_order.astype(np.int64), "affinity", "category lift",
        counts=counts, notice=" ".join(notes), n_suppressed=n_suppressed,
        extra={"share": np.where(np.isnan(values), np.nan, share[np.ix_(row_order, column_order)]),
               "overall": overall[column_order], "group_sizes": sizes[keep]})


# ---------------------------------------------------------------------- one pair
def explain_pair(dataset: Dataset, model, item_a: str, item_b: str, k_min: int = K_MIN_DEFAULT) -> dict:
    """Why two items are (or are not) similar.

    Parameters
    ----------
    dataset : Dataset
    model : Recommender or None
    item_a, item_b : str
        Item ids.
    k_min : int
        Audience counts below this are hidden (``None``).

    Returns
    -------
    dict
        ``items``: DataFrame with one row per item (``item_id``, ``title`` and the item
        attributes the models use); ``audience``: ``{"a": n, "b": n, "both": n, "jaccard": float}`` (people who
        interacted with each / both; ``None`` when below ``k_min``); ``similarity``:
        ``{"model": float or None, "cooccurrence": float, "content": float or None}``;
        ``shared_attributes``: list of ``"column: value"`` both items have; ``notice``.

    Raises
    ------
    KeyError
        Unknown item id.
    """
    k_min = check_k_min(k_min)
    index = dataset.item_indices([item_a, item_b]).astype(np.int64)
    items = dataset.items.iloc[index].reset_index(drop=True)
    titles = dataset.item_labels(index)
    # Only the columns the models use: never identifier-like columns flagged as personal data.
    shown = [c for c in dataset.item_encoder.columns if c in items.columns]
    table = pd.concat([pd.DataFrame({"item_id": dataset.item_ids[index], "title": titles}), items[shown]], axis=1)
    binary = _binary(dataset.matrix)
    columns = binary[:, index].tocsc()
    n_a, n_b = (int(n) for n in np.diff(columns.indptr))
    both = int(np.asarray(columns[:, 0].multiply(columns[:, 1]).sum()))
    union = n_a + n_b - both
    notes = []

    def visible(count: int):
        return count if count >= k_min else None

    audience = {"a": visible(n_a), "b": visible(n_b), "both": visible(both),
                "jaccard": (both / union) if union and both >= k_min else None}
    if any(v is None for k, v in audience.items() if k != "jaccard"):
        notes.append(f"audiences of fewer than {k_min} people are hidden.")
    similarity: dict[str, float | None] = {"model": None,
                                           "cooccurrence": float(_cosine_columns(binary, index)[0, 1])}
    if model is not None:
        try:
            similarity["model"] = float(np.asarray(model.item_similarity(index[:1]))[0, index[1]])
        except NotImplementedError:
            notes.append(f"the {getattr(model, 'name', 'model')} model has no item similarity.")
    similarity["content"] = (float(_cosine_rows(dataset.item_features[index])[0, 1])
                             if dataset.item_features.shape[1] else None)
    shared = []
    for column in dataset.item_encoder.columns:
        role = dataset.item_roles.get(column)
        if role not in ("categorical", "multilabel") or column not in items.columns:
            continue
        values = [set() if pd.isna(v) else set(str(v).split("|")) if role == "multilabel" else {str(v)}
                  for v in items[column]]
        for value in sorted(values[0] & values[1]):
            shared.append(f"{column}: {value.strip()}")
    return {"items": table, "audience": audience, "similarity": similarity, "shared_attributes": shared,
            "notice": " ".join(notes)}
