"""Cold start, interactively: what would the model show a person described by a form?

* :func:`profile_form_schema` describes the form (one field per profile column the models use,
  with the values seen in training); :func:`item_form_schema` does the same for a new item;
* :func:`simulate` answers one filled-in form (plus optionally a few liked items): the model's
  top-k with titles and item attributes, the same for comparison models, per-item
  contributions when the model can explain itself, and the segment the person lands in;
* :func:`change_one_thing` shows what changing a single attribute does to the list;
* :func:`new_item_audience` asks the reverse question for a new *item*: which segments or
  profile groups would the model show it to?

Everything here is encoded exactly like training data (``dataset.encode_new_users``,
``dataset.item_encoder``), so a value never seen in training lands in the "(unknown)" bucket
just as it would in production. Answering one profile takes a few milliseconds besides the
model's own scoring.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..dataset import Dataset
from ..errors import DataError
from ..features import (OTHER, UNKNOWN, AGE_BAND_NAMES, AgeEncoder, CategoricalEncoder, MultiLabelEncoder,
                        NumericEncoder, TextEncoder, to_float)
from ..models.base import top_k
from .privacy import K_MIN_DEFAULT, check_k_min, suppress_small
from .segments import SegmentResult, _binary, profile_groups

logger = logging.getLogger(__name__)

#: Label of the new person in encoded frames.
PERSON = "new person"
#: Options offered per select field at most (the frequent values first).
MAX_OPTIONS = 200
#: Plain names of explanation columns.
CONTRIBUTION_LABELS = {"profile": "profile", "history": "liked items", "item_item": "liked items (item-to-item)",
                       "content_similarity": "similar content", "similar_people": "similar people",
                       "popularity": "popularity", "content": "content", "collaborative": "collaborative"}
#: Additive decompositions a model's ``explain`` may return, tried after the gated sources (see
#: :func:`_choose_decomposition`); the first that adds up to ``total`` is shown.
DECOMPOSITIONS = (("profile", "history", "item_item", "popularity"), ("profile", "history", "popularity"),
                  ("profile", "history", "content", "popularity"))
PART_DECOMPOSITION = ("collaborative", "content", "popularity")


# ---------------------------------------------------------------------- the form
@dataclass
class FieldSpec:
    """One field of the cold-start form.

    Attributes
    ----------
    name : str
        Profile column.
    kind : {"select", "number", "multiselect", "text"}
    role : str
        The column's role (categorical, age, numeric, multilabel, text).
    options : list of str
        Values seen in training (select, multiselect), most frequent first.
    default
        Most frequent value (select), median (number), ``[]`` (multiselect), ``""`` (text).
    min_value, max_value, median : float or None
        Range of the training values (number), for a slider.
    step : float or None
        1 for ages and whole-number columns.
    help : str
    """

    name: str
    kind: str
    role: str
    options: list[str] = field(default_factory=list)
    default: Any = None
    min_value: float | None = None
    max_value: float | None = None
    median: float | None = None
    step: float | None = None
    help: str = ""


#: Roles never offered as form fields (names, titles, identifying or ignored columns).
_NOT_A_FIELD = ("label", "pii", "ignore")


def _form_schema(encoder, table: pd.DataFrame, roles: Mapping[str, str], skip: Sequence[str] = ()
                 ) -> list[FieldSpec]:
    """One field per column of a fitted ``TableEncoder`` (profile or item encoder)."""
    fields = []
    for column, column_encoder in encoder.encoders.items():
        role = roles.get(column, "")
        if role in _NOT_A_FIELD or column in skip:
            continue
        values = table[column] if column in table.columns else pd.Series(dtype="string")
        if isinstance(column_encoder, CategoricalEncoder):
            counts = values.astype("string").str.strip().value_counts()
            known = set(column_encoder.categories) | set(column_encoder.rare)
            seen = [str(v) for v in counts.index if str(v) in known]
            seen += [c for c in column_encoder.categories if c not in seen]
            if column_encoder.prefix:  # zip codes are bucketed on their first characters
                seen = list(column_encoder.categories)
            options = seen[:MAX_OPTIONS]
            fields.append(FieldSpec(column, "select", role, options=options,
                                    default=options[0] if options else None,
                                    help=f"{len(column_encoder.categories)} common value(s) seen in training; "
                                         f"others count as '{OTHER}' (seen rarely) or '{UNKNOWN}'."))
        elif isinstance(column_encoder, (AgeEncoder, NumericEncoder)):
            numbers = to_float(values)
            finite = numbers[np.isfinite(numbers)]
            whole = bool(len(finite)) and bool(np.all(np.mod(finite, 1) == 0))
            low = float(finite.min()) if len(finite) else 0.0
            high = float(finite.max()) if len(finite) else 100.0
            median = float(np.median(finite)) if len(finite) else (low + high) / 2
            default = int(round(median)) if whole or role == "age" else median
            fields.append(FieldSpec(column, "number", role, default=default, min_value=low, max_value=high,
                                    median=median, step=1.0 if whole or role == "age" else None,
                                    help=f"training values range from {low:g} to {high:g}."))
        elif isinstance(column_encoder, MultiLabelEncoder):
            fields.append(FieldSpec(column, "multiselect", role,
                                    options=list(column_encoder.labels_)[:MAX_OPTIONS],
                                    default=[], help="any number of values."))
        elif isinstance(column_encoder, TextEncoder):
            fields.append(FieldSpec(column, "text", role, default="", help="free text (matched on its words)."))
    return fields


def profile_form_schema(dataset: Dataset) -> list[FieldSpec]:
    """The fields of a cold-start form, one per profile column the models use.

    Returns
    -------
    list of FieldSpec
        In the profile encoder's column order. A value left empty (or not among the
        options) is encoded as "(unknown)", like a missing value in training.
    """
    return _form_schema(dataset.profile_encoder, dataset.users, dataset.user_roles)


def item_form_schema(dataset: Dataset) -> list[FieldSpec]:
    """The fields of the new-item form, one per item attribute the models use.

    Categorical attributes (category, brand, ...) are dropdowns of the values seen, most
    frequent first; multi-label attributes (tags, genres) are multiselects; numbers
    (price, year) are sliders over the training range; free-text attributes (a description)
    are text boxes matched on their words. Titles and ids are not features and never
    appear (nor do columns marked ``label``, ``pii`` or ``ignore``).

    Returns
    -------
    list of FieldSpec
        In the item encoder's column order; empty when the items have no usable attributes.
        Feed the answers (column -> value, lists for multiselects) to :func:`new_item_audience`.
    """
    skip = [c for c in (dataset.item_label_column,) if c]
    return _form_schema(dataset.item_encoder, dataset.items, dataset.item_roles, skip=skip)


def _given(value) -> bool:
    """Whether a form answer holds a value (not None, blank text or an empty selection)."""
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return len(value) > 0
    return not (isinstance(value, float) and np.isnan(value))


def profile_frame(dataset: Dataset, profiles: Sequence[Mapping[str, Any]] | Mapping[str, Any],
                  labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Form answers as a profile table for :meth:`Dataset.encode_new_users`.

    Lists (multiselect answers) are joined with ``|``; ``None`` and ``""`` are missing;
    columns the models do not use are ignored.
    """
    if isinstance(profiles, Mapping):
        profiles = [profiles]
    columns = dataset.profile_encoder.columns
    unknown = sorted({key for profile in profiles for key in profile} - set(columns) - {"user_id"})
    if unknown:
        logger.info("ignoring form fields the models do not use: %s", unknown)
    rows = []
    for position, profile in enumerate(profiles):
        row = {"user_id": labels[position] if labels is not None else f"{PERSON} {position + 1}"}
        for column in columns:
            value = profile.get(column)
            if isinstance(value, (list, tuple, set, np.ndarray)):
                value = "|".join(str(v) for v in value) or None
            if isinstance(value, str) and not value.strip():
                value = None
            row[column] = value
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["user_id", *columns])
    return frame.astype(object)


def interpreted_profile(dataset: Dataset, static: np.ndarray) -> dict[str, str]:
    """What the model sees of one encoded profile: the bucket of each column ("(unknown)" for unseen)."""
    out = {}
    row = np.asarray(static)[0]
    for column, block in dataset.profile_encoder.column_slices().items():
        encoder = dataset.profile_encoder.encoders[column]
        values = row[block]
        if isinstance(encoder, CategoricalEncoder):
            out[column] = encoder.names[int(np.argmax(values))].split("=", 1)[1]
        elif isinstance(encoder, AgeEncoder):
            if values[1] > 0:
                out[column] = UNKNOWN
            else:
                age = values[0] * encoder.numeric.std + encoder.numeric.mean
                band = int(np.argmax(values[2:])) if encoder.bucket and values[2:].max() > 0 else None
                out[column] = f"{age:.0f}" + (f" ({AGE_BAND_NAMES[band]})" if band is not None else "")
        elif isinstance(encoder, NumericEncoder):
            if values[1] > 0:
                out[column] = UNKNOWN
            else:
                number = values[0] * encoder.std + encoder.mean
                out[column] = f"{np.expm1(number) if encoder.log else number:.4g}"
        elif isinstance(encoder, MultiLabelEncoder):
            labels = [name.split(":", 1)[1] for name, v in zip(encoder.names, values) if v > 0]
            out[column] = "|".join(labels) or UNKNOWN
        else:
            out[column] = "(text)" if np.any(values > 0) else UNKNOWN
    return out


# ---------------------------------------------------------------------- simulate
@dataclass
class SimulationResult:
    """What the model (and its comparisons) would show one new person.

    Attributes
    ----------
    recommendations : pandas.DataFrame
        ``rank``, ``item_id``, ``title``, ``score`` and the item attributes.
    comparisons : dict of str -> pandas.DataFrame
        The same for each comparison model.
    explanation : pandas.DataFrame or None
        When the model has ``explain``: ``rank``, ``item_id``, ``title``, one column per
        contribution (plain names: ``profile``, ``liked items``, ``popularity`` ...),
        ``total`` and ``score``.
    explanation_columns : list of str
        The contribution columns of ``explanation`` (they add up to ``total``).
    explanation_by_part : pandas.DataFrame or None
        The same scores split by item part (``collaborative``, ``content``, ``popularity``)
        when the model provides it.
    explanation_exact : bool or None
        Whether the contributions add up to the model's score (within float32 rounding).
    gate : dict or None
        How much the model trusts each signal for this person (fused model).
    segment, segment_name
        Where the person lands (when segments were given).
    segment_basis : str or None
        What placed them: ``"model scores"`` (segments of the model's scores: its scores for
        this person), ``"model vector"`` (segments of its user vectors: its vector for this
        person), ``"liked items"`` (interaction-profile segments) or ``"profile"`` (the segment
        with the nearest average profile).
    interpreted : dict
        What the model sees of the profile (buckets; unseen values -> "(unknown)").
    notice : str
    """

    recommendations: pd.DataFrame
    comparisons: dict[str, pd.DataFrame] = field(default_factory=dict)
    explanation: pd.DataFrame | None = None
    explanation_columns: list[str] = field(default_factory=list)
    explanation_by_part: pd.DataFrame | None = None
    explanation_exact: bool | None = None
    gate: dict[str, float] | None = None
    segment: int | None = None
    segment_name: str | None = None
    segment_basis: str | None = None
    interpreted: dict[str, str] = field(default_factory=dict)
    notice: str = ""

    def to_frame(self, main_name: str = "model") -> pd.DataFrame:
        """Every list as one table for export: ``model``, ``rank``, ``item_id``, ``title``, ``score``,
        the item attributes, and one ``profile: <column>`` column per profile value the models saw."""
        lists = {main_name: self.recommendations, **self.comparisons}
        table = pd.concat([frame.assign(model=name) for name, frame in lists.items()], ignore_index=True)
        table = table[["model", *[c for c in table.columns if c != "model"]]]
        for column, value in self.interpreted.items():
            table[f"profile: {column}"] = str(value)
        return table


def _item_attribute_columns(dataset: Dataset) -> list[str]:
    return [c for c, role in dataset.item_roles.items()
            if role in ("categorical", "multilabel", "numeric") and c in dataset.items.columns]


def _listed(items: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (item, score) pairs of one top-k row that can be shown (excluded items score -inf)."""
    valid = np.isfinite(scores)
    return items[valid].astype(np.int64), scores[valid]


def _list_frame(dataset: Dataset, items: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """One recommendation list: rank, id, title, score and the item attributes.

    No array goes into ``attrs``: pandas deep-copies ``attrs`` on every derived frame and
    compares them with ``==`` when frames are concatenated, which fails for arrays.
    """
    items, scores = _listed(items, scores)
    frame = pd.DataFrame({"rank": np.arange(1, len(items) + 1), "item_id": dataset.item_ids[items],
                          "title": dataset.item_labels(items), "score": scores.astype(np.float64)})
    attributes = _item_attribute_columns(dataset)
    if attributes:
        frame = pd.concat([frame, dataset.items[attributes].iloc[items].reset_index(drop=True)], axis=1)
    return frame


def _encode(dataset: Dataset, profiles, liked_lists: Sequence[Sequence[str]]):
    labels = [f"{PERSON} {i + 1}" for i in range(len(liked_lists))]
    frame = profile_frame(dataset, profiles, labels)
    histories = {label: [str(i) for i in liked] for label, liked in zip(labels, liked_lists) if len(liked)}
    return dataset.encode_new_users(frame, histories)


def _model_dataset(model, dataset: Dataset) -> Dataset:
    own = getattr(model, "dataset", None)
    if own is None:
        raise RuntimeError(f"{type(model).__name__} is not fitted yet: call fit(dataset) first.")
    return own


def _scores_for(model, dataset: Dataset, encoded_by_dataset: dict, profiles, liked_lists):
    """Scores from ``model`` for the people, encoding them with the model's own dataset (cached)."""
    own = _model_dataset(model, dataset)
    key = id(own)
    if key not in encoded_by_dataset:
        encoded_by_dataset[key] = _encode(own, profiles, liked_lists)
    static, behaviour, history = encoded_by_dataset[key]
    scores = np.array(model.score_new_users(static, behaviour, history), dtype=np.float32, copy=True)
    return own, scores, history


def _top(model, dataset, encoded, profiles, liked_lists, k) -> list[pd.DataFrame]:
    own, scores, history = _scores_for(model, dataset, encoded, profiles, liked_lists)
    items, values = top_k(scores, k, history)
    return [_list_frame(own, items[row], values[row]) for row in range(items.shape[0])]


def _choose_decomposition(frame: pd.DataFrame, total: np.ndarray) -> tuple[list[str], bool]:
    """The contribution columns of a model's explanation, and whether they add up to ``total``.

    Candidates, in order: the sources the model gates (a column ``X`` with a ``gate_X`` beside
    it: the fused model's profile, liked items, item-to-item, similar content, similar people,
    popularity), then :data:`DECOMPOSITIONS`, then every other numeric column. Of those that add
    up to ``total`` the closest wins (the earlier on ties); if none does, the first candidate is
    returned as approximate.
    Sources contributing exactly nothing to any item (a source the model switched off) are
    left out: they add nothing to the sum and only clutter the chart.
    """
    gated = [str(c)[len("gate_"):] for c in frame.columns
             if str(c).startswith("gate_") and str(c)[len("gate_"):] in frame.columns]
    candidates = ([gated] if gated else []) + [list(c) for c in DECOMPOSITIONS if all(x in frame.columns for x in c)]
    skip = {"item_index", "total", "score", "rank"}
    candidates.append([c for c in frame.columns if c not in skip and not str(c).startswith("gate_")
                       and pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])])
    tolerance = 1e-3 * (1.0 + np.abs(total))
    chosen, adds_up, smallest = candidates[0], False, np.inf
    for columns in candidates:
        if not columns:
            continue
        gap = np.abs(frame[columns].to_numpy(dtype=np.float64).sum(axis=1) - total)
        # the closest sum wins: a small part (a popularity tie-break) can hide inside the tolerance
        if np.all(gap <= tolerance) and gap.max(initial=0.0) < smallest:
            chosen, adds_up, smallest = columns, True, gap.max(initial=0.0)
    useful = [c for c in chosen if np.any(frame[c].to_numpy(dtype=np.float64) != 0)]
    return (useful or chosen[:1]), adds_up


def _explain(model, static, behaviour, history, ranked: pd.DataFrame, items: np.ndarray, scores: np.ndarray
             ) -> tuple[pd.DataFrame, list[str], pd.DataFrame | None, bool, str]:
    """The model's explanation of the ranked items (``items``: their indices, in ``ranked``'s order)."""
    raw = model.explain(static, behaviour, history, items)
    raw = raw.reset_index(drop=True)
    model_scores = scores[0, items].astype(np.float64)
    total = raw["total"].to_numpy(dtype=np.float64) if "total" in raw.columns else model_scores
    columns, adds_up = _choose_decomposition(raw, total)
    contributions = raw[columns].to_numpy(dtype=np.float64)
    tolerance = 1e-3 * (1.0 + np.abs(model_scores))
    matches = bool(np.all(np.abs(total - model_scores) <= tolerance))
    exact = adds_up and matches
    note = ""
    if not exact:
        gap = float(np.max(np.abs(contributions.sum(axis=1) - model_scores))) if len(items) else 0.0
        note = (f"the contributions are approximate: they differ from the model's scores by up to {gap:.3g}.")
    labels = [CONTRIBUTION_LABELS.get(c, str(c).replace("_", " ")) for c in columns]
    frame = pd.DataFrame({"rank": ranked["rank"].to_numpy(), "item_id": ranked["item_id"].to_numpy(),
                          "title": ranked["title"].to_numpy()})
    for position, label in enumerate(labels):
        frame[label] = contributions[:, position]
    frame["total"] = total
    frame["score"] = model_scores
    by_part = None
    if all(c in raw.columns for c in PART_DECOMPOSITION):
        by_part = frame[["rank", "item_id", "title"]].copy()
        for column in PART_DECOMPOSITION:
            by_part[CONTRIBUTION_LABELS[column]] = raw[column].to_numpy(dtype=np.float64)
        by_part["total"] = total
    return frame, labels, by_part, exact, note


def _place(model, segments: SegmentResult, static, behaviour, history, scores: np.ndarray) -> tuple[int, str]:
    """The person's segment and what placed them, by the rule the segments were built with.

    Segments of this model's scores place the person by the model's scores for them; segments
    of its user vectors by its vector for them (``new_user_embeddings``, or ``fold_in`` for a
    history); interaction-profile segments by the liked items; otherwise (or when the model
    cannot give a vector) by the nearest average profile.
    """
    own_model = segments.model is not None and segments.model is model
    if own_model and segments.kind == "scores":
        return int(segments.assign(static=static, scores=scores[:1])[0]), "model scores"
    embedding = None
    if own_model and segments.kind == "embeddings":
        try:
            if hasattr(model, "new_user_embeddings"):
                embedding = np.asarray(model.new_user_embeddings(static, behaviour, history), dtype=np.float64)
            elif hasattr(model, "fold_in") and history.nnz:
                embedding = np.asarray(model.fold_in(history), dtype=np.float64)
        except (NotImplementedError, ValueError) as error:
            logger.info("no embedding for the new person (%s); placing them by profile", error)
    segment = int(segments.assign(static=static, history=history, embeddings=embedding)[0])
    if embedding is not None:
        return segment, "model vector"
    if segments.kind == "interactions" and history.nnz:
        return segment, "liked items"
    return segment, "profile"


def simulate(model, dataset: Dataset, profile: Mapping[str, Any], liked: Sequence[str] = (), k: int = 10,
             compare_models: Mapping[str, Any] | None = None,
             segments: SegmentResult | None = None) -> SimulationResult:
    """What ``model`` would recommend to a new person with this profile (and these liked items).

    The lists are those :meth:`Recommender.recommend_new_users` returns (same encoding, same
    top-k with liked items excluded); the person is encoded once per dataset and the encoding
    is shared by the comparison models and the explanation.

    Parameters
    ----------
    model : Recommender
        Fitted on ``dataset``.
    dataset : Dataset
    profile : dict
        Column -> value, as from the form (:func:`profile_form_schema`); missing or unseen values
        are encoded as "(unknown)".
    liked : sequence of str
        Item ids the person already interacted with (used as signal, never recommended).
    k : int
    compare_models : dict of str -> Recommender, optional
        Other fitted models to show side by side (e.g. :func:`baseline_models`).
    segments : SegmentResult, optional
        Segments to place the person in (the rule of :meth:`SegmentResult.assign`).

    Returns
    -------
    SimulationResult

    Raises
    ------
    KeyError
        An id in ``liked`` is not in the data.
    """
    if isinstance(k, bool) or int(k) < 1:
        raise ValueError(f"k must be at least 1 (got {k!r})")
    liked = [str(i) for i in liked]
    encoded: dict = {}
    own, scores, history = _scores_for(model, dataset, encoded, [profile], [liked])
    static, behaviour, _ = encoded[id(own)]
    items, values = top_k(scores.copy(), int(k), history)
    ranked_items, _ = _listed(items[0], values[0])
    ranked = _list_frame(own, items[0], values[0])
    notes = []
    if len(ranked) < int(k):
        notes.append(f"only {len(ranked)} item(s) can be recommended (the catalogue minus liked items).")
    result = SimulationResult(recommendations=ranked, interpreted=interpreted_profile(own, static))
    unknown = [c for c, v in result.interpreted.items() if v == UNKNOWN and _given(profile.get(c))]
    if unknown:
        notes.append(f"value(s) for {', '.join(unknown)} were not seen in training and count as unknown.")
    for name, other in (compare_models or {}).items():
        result.comparisons[name] = _top(other, dataset, encoded, [profile], [liked], int(k))[0]
    if hasattr(model, "explain") and len(ranked):
        try:
            (result.explanation, result.explanation_columns, result.explanation_by_part,
             result.explanation_exact, note) = _explain(model, static, behaviour, history, ranked, ranked_items,
                                                            scores)
            if note:
                notes.append(note)
        except NotImplementedError:
            pass
    if hasattr(model, "gate_weights"):
        try:
            gate = model.gate_weights(static, behaviour, history)
            result.gate = {c: float(gate[c].iloc[0]) for c in gate.columns
                           if c not in ("person", "n_history") and pd.api.types.is_numeric_dtype(gate[c])}
        except NotImplementedError:
            pass
    if segments is not None:
        segment, basis = _place(model, segments, static, behaviour, history, scores)
        if segment >= 0:
            result.segment, result.segment_name, result.segment_basis = segment, segments.names[segment], basis
    result.notice = " ".join(notes)
    return result


def baseline_models(dataset: Dataset) -> dict[str, Any]:
    """Popularity and segment popularity fitted on ``dataset`` (comparisons for :func:`simulate`)."""
    from ..models import PopularityRecommender, SegmentPopularityRecommender

    return {"popularity": PopularityRecommender().fit(dataset),
            "segment popularity": SegmentPopularityRecommender().fit(dataset)}


# ---------------------------------------------------------------------- one change
def change_one_thing(model, dataset: Dataset, profile: Mapping[str, Any], attribute: str, new_value,
                     liked: Sequence[str] = (), k: int = 10) -> pd.DataFrame:
    """The top-k before and after changing one profile attribute, side by side.

    Parameters
    ----------
    model : Recommender
    dataset : Dataset
    profile : dict
    attribute : str
        A profile column of the form.
    new_value
        Its new value.
    liked : sequence of str
    k : int

    Returns
    -------
    pandas.DataFrame
        One row per rank: ``rank``, ``before_item_id``, ``before``, ``before_change``
        (``"left"`` when the item is gone after the change, ``"same"``, or ``"moved to #r"``),
        ``after_item_id``, ``after``, ``after_change`` (``"entered"``, ``"same"``, ``"up n"``,
        ``"down n"``). ``attrs["n_changed"]`` counts items that entered.

    Raises
    ------
    KeyError
        ``attribute`` is not a profile column the models use.
    """
    columns = dataset.profile_encoder.columns
    if attribute not in columns:
        raise KeyError(f"'{attribute}' is not a profile column the models use (columns: {', '.join(columns)}).")
    liked = [str(i) for i in liked]
    changed = dict(profile)
    changed[attribute] = new_value
    before, after = _top(model, dataset, {}, [profile, changed], [liked, liked], int(k))
    before_rank = dict(zip(before["item_id"], before["rank"]))
    after_rank = dict(zip(after["item_id"], after["rank"]))
    n = max(len(before), len(after))

    def column(frame, name, position):
        return frame[name].iloc[position] if position < len(frame) else None

    rows = []
    for position in range(n):
        row = {"rank": position + 1}
        item = column(before, "item_id", position)
        row["before_item_id"], row["before"] = item, column(before, "title", position)
        if item is None:
            row["before_change"] = None
        elif item not in after_rank:
            row["before_change"] = "left"
        elif after_rank[item] == position + 1:
            row["before_change"] = "same"
        else:
            row["before_change"] = f"moved to #{after_rank[item]}"
        item = column(after, "item_id", position)
        row["after_item_id"], row["after"] = item, column(after, "title", position)
        if item is None:
            row["after_change"] = None
        elif item not in before_rank:
            row["after_change"] = "entered"
        else:
            shift = before_rank[item] - (position + 1)
            row["after_change"] = "same" if shift == 0 else (f"up {shift}" if shift > 0 else f"down {-shift}")
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["rank", "before_item_id", "before", "before_change", "after_item_id",
                                        "after", "after_change"])
    frame.attrs["n_changed"] = int((frame["after_change"] == "entered").sum())
    frame.attrs["attribute"], frame.attrs["new_value"] = attribute, new_value
    return frame


# ---------------------------------------------------------------------- a new item
def _content_affinity(dataset: Dataset, vector: np.ndarray) -> np.ndarray:
    """Mean cosine similarity of the new item to each user's history items (NaN without history)."""
    features = dataset.item_features.astype(np.float64)
    norms = np.linalg.norm(features, axis=1)
    new = vector.astype(np.float64).ravel()
    new_norm = np.linalg.norm(new)
    if new_norm == 0:
        return np.full(dataset.n_users, np.nan)
    similarity = np.divide(features @ new, norms * new_norm, out=np.zeros(len(features)), where=norms > 0)
    binary = _binary(dataset.matrix)
    counts = np.diff(binary.indptr).astype(np.float64)
    totals = binary @ similarity
    return np.divide(totals, counts, out=np.full(dataset.n_users, np.nan), where=counts > 0)


def _groups(dataset: Dataset, segments, by_attribute: str | None) -> tuple[np.ndarray, list[str], str]:
    if by_attribute is not None:
        labels = profile_groups(dataset, by_attribute)
        names, codes = np.unique(labels.astype(str), return_inverse=True)
        return codes.astype(np.int64), [str(n) for n in names], by_attribute
    if isinstance(segments, SegmentResult):
        return segments.labels.astype(np.int64), list(segments.names), "segment"
    if segments is not None:
        values = np.asarray(segments, dtype=object)
        if len(values) != dataset.n_users:
            raise DataError(f"segments has {len(values):,} labels but the data has {dataset.n_users:,} users.")
        text = pd.Series(values).astype("string").fillna(UNKNOWN).to_numpy(dtype=object).astype(str)
        names, codes = np.unique(text, return_inverse=True)
        return codes.astype(np.int64), [str(n) for n in names], "segment"
    raise ValueError("give segments (a SegmentResult or one label per user) or by_attribute (a profile column).")


def new_item_audience(model, dataset: Dataset, item_features: Mapping[str, Any], segments=None,
                      by_attribute: str | None = None, k_min: int = K_MIN_DEFAULT) -> pd.DataFrame:
    """Which segments (or profile groups) a new, never-seen item would appeal to.

    The item, described by its attributes, is encoded with ``dataset.item_encoder``. When the
    model has ``score_new_items(item_features_matrix) -> (n_users, n_new_items)`` every training
    user is scored by the model; otherwise each user's affinity is the mean content similarity
    of the new item to the items in their history (users without history are left out).

    Parameters
    ----------
    model : Recommender or None
    dataset : Dataset
    item_features : dict
        Item column -> value (lists for multi-label columns); unknown values count as unknown.
    segments : SegmentResult or array of labels (n_users,), optional
    by_attribute : str, optional
        A profile column to group by instead (categorical, age or numeric).
    k_min : int
        Groups with fewer scored people are masked.

    Returns
    -------
    pandas.DataFrame
        One row per group, best first: ``group``, ``n_users`` (people scored), ``mean_affinity``,
        ``vs_average`` (difference from the mean over everyone, in standard deviations),
        ``top_decile_lift`` (the group's share of the 10 % of people with the highest affinity
        divided by its share of everyone scored: 1 = as many as expected, 2 = twice), ``privacy``.
        ``attrs``: ``method`` ("model" or "content similarity"), ``grouped_by``, ``notice``.
    """
    k_min = check_k_min(k_min)
    codes, names, grouped_by = _groups(dataset, segments, by_attribute)
    notes = []
    ignored = sorted(set(item_features) - set(dataset.item_encoder.columns))
    if ignored:
        notes.append(f"ignored attribute(s) the models do not use: {', '.join(map(str, ignored))}.")
    row = {}
    for column in dataset.item_encoder.columns:
        value = item_features.get(column)
        if isinstance(value, (list, tuple, set, np.ndarray)):
            value = "|".join(str(v) for v in value) or None
        row[column] = value
    vector = dataset.item_encoder.transform(pd.DataFrame([row], dtype=object))
    if model is not None and hasattr(model, "score_new_items"):
        affinity = np.asarray(model.score_new_items(vector), dtype=np.float64)[:, 0]
        if len(affinity) != dataset.n_users:
            raise DataError(f"the model scored {len(affinity):,} people but the data has {dataset.n_users:,} users: "
                            "was it trained on another data set?")
        method = "model"
    else:
        affinity = _content_affinity(dataset, vector[0])
        method = "content similarity"
        why = "no model was given" if model is None else "the model cannot score new items"
        notes.append("affinity = average content similarity of the new item to what each person interacted "
                     f"with ({why}); people without history are left out.")
    scored = np.isfinite(affinity) & (codes >= 0)
    n_groups = len(names)
    counts = np.bincount(codes[scored], minlength=n_groups).astype(np.float64)
    sums = np.bincount(codes[scored], weights=affinity[scored], minlength=n_groups)
    means = np.divide(sums, counts, out=np.full(n_groups, np.nan), where=counts > 0)
    overall_mean = float(affinity[scored].mean()) if scored.any() else float("nan")
    overall_std = float(affinity[scored].std()) if scored.any() else float("nan")
    threshold = np.quantile(affinity[scored], 0.9) if scored.any() else np.inf
    top = np.bincount(codes[scored & (affinity >= threshold)], minlength=n_groups).astype(np.float64)
    n_top = max(top.sum(), 1.0)
    n_scored = max(counts.sum(), 1.0)
    expected = counts / n_scored
    frame = pd.DataFrame({
        "group": names, "n_users": counts,
        "mean_affinity": means,
        "vs_average": (means - overall_mean) / overall_std if overall_std > 0 else np.zeros(n_groups),
        "top_decile_lift": np.divide(top / n_top, expected, out=np.full(n_groups, np.nan), where=expected > 0),
    })
    frame = frame[frame["n_users"] > 0].sort_values("mean_affinity", ascending=False, kind="stable")
    frame, n_suppressed = suppress_small(frame.reset_index(drop=True), "n_users", k_min, keep=("group",))
    if n_suppressed:
        notes.append(frame.attrs.get("notice", ""))
        frame = pd.concat([frame[frame["privacy"] == ""], frame[frame["privacy"] != ""]], ignore_index=True)
    frame.attrs.update({"method": method, "grouped_by": grouped_by, "notice": " ".join(n for n in notes if n)})
    return frame
