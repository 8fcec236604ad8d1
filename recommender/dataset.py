"""The validated :class:`Dataset` that everything downstream uses.

A dataset holds interactions as compact int32 user and item indices (with weights and
optional timestamps), id maps both ways, a CSR user x item matrix, the profile and item
tables aligned to those indices, and the fitted encoders that turn profiles, behaviour and
item content into feature matrices. External ids are text and are translated only at the
edges (:meth:`Dataset.user_indices`, :meth:`Dataset.item_indices`).

Building one validates everything at once and raises a single :class:`DataError` listing
all the problems; rows that had to be dropped are counted in :attr:`Dataset.report`.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import DataError, Problem, Report
from .features import BehaviourEncoder, TableEncoder, category_matrix, clean_text, to_float
from .io import Source, read_table, source_name, suggest_delimiter, delimiter_name
from .schema import (ColumnMapping, category_column, guess_id_column, guess_interaction_columns,
                     infer_column_roles, numeric_share)

logger = logging.getLogger(__name__)

_MAX_LISTED = 10


def _row_label(frame: pd.DataFrame) -> str:
    return frame.attrs.get("row_label", "row")


def _rows_of(frame: pd.DataFrame, mask: np.ndarray) -> tuple[int, ...]:
    """Line/row numbers (as the user sees them) of the first rows where ``mask`` holds."""
    positions = np.flatnonzero(mask)[:_MAX_LISTED]
    if frame.attrs.get("row_label"):
        return tuple(int(i) for i in frame.index[positions])
    return tuple(int(i) + 1 for i in positions)  # an in-memory table: 1-based row numbers


def _ids(values: pd.Series) -> pd.Series:
    """Ids as text, exactly as spelled (``"00123"`` != ``"123"``, ``"NA"`` is an id); blank -> missing."""
    if pd.api.types.is_float_dtype(values):
        # Typed frames (Parquet, pandas): 123.0 -> "123" so ids round-trip.
        numbers = values.to_numpy(dtype=float, na_value=np.nan)
        integral = np.isfinite(numbers) & (np.mod(numbers, 1) == 0)
        text = values.astype("string")
        text[integral] = pd.Series(numbers[integral].astype(np.int64)).astype("string").to_numpy()
        return clean_text(text)
    return clean_text(values)


def parse_timestamps(values: pd.Series) -> np.ndarray:
    """Unix seconds (float64, NaN where unparsable) from epoch numbers or date strings.

    Epoch values larger than 1e11 are taken to be milliseconds.
    """
    text = clean_text(values)
    present = text.dropna()
    if numeric_share(present if len(present) <= 20_000 else present.sample(20_000, random_state=0)) > 0.95:
        numbers = to_float(text)
        finite = numbers[np.isfinite(numbers)]
        if len(finite) and np.nanmedian(finite) > 1e11:
            numbers = numbers / 1000.0
        return numbers
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    if parsed.isna().mean() > 0.5 * text.isna().mean() + 0.01 and parsed.isna().sum() > text.isna().sum():
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
    # Subtracting the epoch is independent of the datetime unit (pandas 3 may store microseconds).
    elapsed = parsed - pd.Timestamp("1970-01-01", tz="UTC")
    seconds = np.array(elapsed.dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan), copy=True)
    return seconds


@dataclass
class Dataset:
    """Interactions, profiles and item features, validated and indexed.

    Build with :meth:`from_frames`, :meth:`from_files` or :meth:`from_movielens`, not directly.

    Attributes
    ----------
    user_ids, item_ids : ndarray of object, shape (n_users,), (n_items,)
        External ids (text) by index.
    user_index, item_index : ndarray of int32, shape (n_interactions,)
        The interactions as indices.
    weights : ndarray of float32, shape (n_interactions,)
        Ratings (explicit data) or 1.0 / event weights (implicit data).
    timestamps : ndarray of float64, shape (n_interactions,), or None
        Unix seconds.
    users, items : pandas.DataFrame
        Profile and item tables aligned to the indices (row ``i`` describes user ``i``);
        attribute values are text as read; absent profiles are missing values.
    user_roles, item_roles : dict
        Role of each attribute column (see :mod:`recommender.schema`).
    profile_encoder, item_encoder : TableEncoder
    report : Report
        Warnings collected while building (dropped rows, missing profiles, ...).
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_index: np.ndarray
    item_index: np.ndarray
    weights: np.ndarray
    timestamps: np.ndarray | None
    users: pd.DataFrame
    items: pd.DataFrame
    user_roles: dict[str, str]
    item_roles: dict[str, str]
    profile_encoder: TableEncoder
    item_encoder: TableEncoder
    has_ratings: bool = False
    item_label_column: str | None = None
    category_column: str | None = None
    report: Report = field(default_factory=Report)
    name: str = "dataset"

    # ------------------------------------------------------------------ building
    @classmethod
    def from_frames(cls, interactions: pd.DataFrame, users: pd.DataFrame | None = None,
                    items: pd.DataFrame | None = None, *, columns: ColumnMapping | Mapping | None = None,
                    user_id_column: str | None = None, item_id_column: str | None = None,
                    user_roles: Mapping[str, str] | None = None, item_roles: Mapping[str, str] | None = None,
                    bucket_ages: bool = True, name: str = "dataset") -> "Dataset":
        """Validate and index interactions plus optional profile and item tables.

        Parameters
        ----------
        interactions : pandas.DataFrame
            One row per event: user id, item id, optional rating/weight, optional timestamp.
        users : pandas.DataFrame, optional
            One row per user: the user id plus any attribute columns.
        items : pandas.DataFrame, optional
            One row per item: the item id plus categorical, multi-label, numeric or text columns.
        columns : ColumnMapping or dict, optional
            Which interactions columns are ``user``, ``item``, ``rating``, ``timestamp``;
            guessed from the column names for the roles not given.
        user_id_column, item_id_column : str, optional
            Id columns of the profile and item tables (guessed when omitted).
        user_roles, item_roles : dict, optional
            Overrides for the inferred role of attribute columns.
        bucket_ages : bool
            Encode ages as bands as well as numbers.

        Raises
        ------
        DataError
            Listing every problem found (missing columns, unusable rows, ...).
        """
        report = Report()
        mapping = _resolve_mapping(interactions, columns, report)
        users, user_id_column = _check_side_table(users, user_id_column, "user", mapping.user, report)
        items, item_id_column = _check_side_table(items, item_id_column, "item", mapping.item, report)
        report.raise_if_errors()

        source = interactions.attrs.get("source", "interactions")
        label = _row_label(interactions)
        user_text = _ids(interactions[mapping.user])
        item_text = _ids(interactions[mapping.item])
        keep = np.ones(len(interactions), dtype=bool)
        for column, values in ((mapping.user, user_text), (mapping.item, item_text)):
            missing = values.isna().to_numpy()
            if missing.any():
                report.warn(f"{missing.sum():,} row(s) have an empty id and were dropped.", file=source,
                            column=column, rows=_rows_of(interactions, missing), n_rows=int(missing.sum()),
                            row_label=label, fix="Fill in the id, or remove those rows.")
                keep &= ~missing

        has_ratings = mapping.rating is not None
        if has_ratings:
            ratings = to_float(clean_text(interactions[mapping.rating]))
            empty = clean_text(interactions[mapping.rating]).isna().to_numpy()
            bad = ~np.isfinite(ratings) | (np.abs(np.nan_to_num(ratings)) > 1e30)  # must fit float32
            for what, mask in (("empty", bad & empty), ("not a finite number", bad & ~empty)):
                if mask.any():
                    report.warn(f"{mask.sum():,} rating(s) are {what}; those rows were dropped.",
                                file=source, column=mapping.rating, rows=_rows_of(interactions, mask),
                                n_rows=int(mask.sum()), row_label=label,
                                fix="Use plain numbers such as 4 or 3.5 (no text, no 'inf').")
            keep &= ~bad
        else:
            ratings = np.ones(len(interactions), dtype=np.float64)

        timestamps = None
        if mapping.timestamp is not None:
            timestamps = parse_timestamps(interactions[mapping.timestamp])
            bad = np.isnan(timestamps)
            if bad.all():
                report.add("no value could be read as a date or a Unix time.", file=source,
                           column=mapping.timestamp,
                           fix="Use ISO dates such as 2024-03-05 14:02 or Unix seconds, or map no timestamp column.")
            elif bad.any():
                report.warn(f"{bad.sum():,} timestamp(s) could not be read; those rows were dropped.",
                            file=source, column=mapping.timestamp, rows=_rows_of(interactions, bad),
                            n_rows=int(bad.sum()), row_label=label,
                            fix="Use ISO dates such as 2024-03-05 14:02 or Unix seconds.")
                keep &= ~bad
        if not keep.any():
            report.add("no usable interaction rows remain after dropping the rows listed above.", file=source,
                       fix="Fix the file, or check the column mapping.")
        report.raise_if_errors()

        return cls._build(user_text[keep].to_numpy(dtype=object), item_text[keep].to_numpy(dtype=object),
                          ratings[keep], None if timestamps is None else timestamps[keep], has_ratings,
                          users, user_id_column, items, item_id_column, user_roles, item_roles,
                          bucket_ages, report, name)

    @classmethod
    def _build(cls, user_text, item_text, ratings, timestamps, has_ratings, users, user_id_column,
               items, item_id_column, user_roles, item_roles, bucket_ages, report, name) -> "Dataset":
        # One hashing pass over the interactions per side; the rest works on the distinct ids.
        user_codes, seen_users = pd.factorize(user_text)
        item_codes, seen_items = pd.factorize(item_text)
        users_table, user_ids = _align_side_table(users, user_id_column, seen_users, "user", report)
        items_table, item_ids = _align_side_table(items, item_id_column, seen_items, "item", report)
        user_index = pd.Index(user_ids, dtype=object).get_indexer(seen_users).astype(np.int32)[user_codes]
        item_index = pd.Index(item_ids, dtype=object).get_indexer(seen_items).astype(np.int32)[item_codes]

        user_index, item_index, weights, timestamps = _deduplicate(
            user_index, item_index, ratings, timestamps, has_ratings, len(item_ids), report)

        user_roles = infer_column_roles(users_table, None, "user", user_roles)
        item_roles = infer_column_roles(items_table, None, "item", item_roles)
        for kind, roles in (("profile", user_roles), ("item", item_roles)):
            pii = [c for c, r in roles.items() if r == "pii"]
            if pii:
                report.warn(f"column(s) {', '.join(repr(c) for c in pii)} look like personal identifiers "
                            "(names, e-mails, phone numbers, addresses or values unique per person) and are "
                            "excluded from modelling.", file=f"{kind} table",
                            fix="Remove them from the file, or set their role explicitly if this is wrong.")
        profile_encoder = TableEncoder(user_roles, bucket_ages=bucket_ages).fit(users_table)
        item_encoder = TableEncoder(item_roles).fit(items_table)
        labels = [c for c, r in item_roles.items() if r == "label"]
        dataset = cls(
            user_ids=np.asarray(user_ids, dtype=object), item_ids=np.asarray(item_ids, dtype=object),
            user_index=user_index, item_index=item_index, weights=weights.astype(np.float32),
            timestamps=timestamps, users=users_table, items=items_table, user_roles=user_roles,
            item_roles=item_roles, profile_encoder=profile_encoder, item_encoder=item_encoder,
            has_ratings=has_ratings, item_label_column=labels[0] if labels else None,
            category_column=category_column(item_roles, items_table), report=report, name=name)
        dataset._check_degenerate()
        return dataset

    @classmethod
    def from_files(cls, interactions: Source, users: Source | None = None, items: Source | None = None,
                   *, encoding: str | None = None, sep: str | None = None, **kwargs) -> "Dataset":
        """Read CSV/TSV/Parquet files (paths or uploaded file objects) and build a dataset.

        All three files are read before anything is reported, so one :class:`DataError`
        lists the problems of every file.
        """
        problems: list[Problem] = []
        frames = {}
        for role, source in (("interactions", interactions), ("users", users), ("items", items)):
            if source is None:
                frames[role] = None
                continue
            try:
                frames[role] = read_table(source, encoding=encoding, sep=sep if role == "interactions" else None)
            except DataError as error:
                problems.extend(error.problems)
        if problems:
            raise DataError(problems)
        name = kwargs.pop("name", source_name(interactions))
        return cls.from_frames(frames["interactions"], frames["users"], frames["items"], name=name, **kwargs)

    @classmethod
    def from_movielens(cls, folder: str | Path, **kwargs) -> "Dataset":
        """Import a MovieLens folder as distributed (ML-100K ``u.data``... or ML-1M ``ratings.dat``...)."""
        from .movielens import read_movielens

        frames = read_movielens(folder)
        kwargs.setdefault("name", frames.name)
        kwargs.setdefault("item_roles", frames.item_roles)
        return cls.from_frames(frames.interactions, frames.users, frames.items, **kwargs)

    def with_interactions(self, selection: np.ndarray, name: str | None = None) -> "Dataset":
        """The same users, items and encoders with only some interactions (train/test splits).

        Parameters
        ----------
        selection : ndarray of bool, shape (n_interactions,), or of int (positions)
        """
        clone = Dataset(
            user_ids=self.user_ids, item_ids=self.item_ids, user_index=self.user_index[selection],
            item_index=self.item_index[selection], weights=self.weights[selection],
            timestamps=None if self.timestamps is None else self.timestamps[selection],
            users=self.users, items=self.items, user_roles=self.user_roles, item_roles=self.item_roles,
            profile_encoder=self.profile_encoder, item_encoder=self.item_encoder,
            has_ratings=self.has_ratings, item_label_column=self.item_label_column,
            category_column=self.category_column, report=self.report, name=name or self.name)
        return clone

    # ------------------------------------------------------------------ sizes and maps
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.user_index)

    @property
    def density(self) -> float:
        return self.n_interactions / max(self.n_users * self.n_items, 1)

    @cached_property
    def _user_lookup(self) -> pd.Index:
        return pd.Index(self.user_ids, dtype=object)

    @cached_property
    def _item_lookup(self) -> pd.Index:
        return pd.Index(self.item_ids, dtype=object)

    def user_indices(self, ids: Iterable) -> np.ndarray:
        """Indices (int32) of external user ids; ``KeyError`` names any unknown id."""
        return self._indices(ids, self._user_lookup, "user")

    def item_indices(self, ids: Iterable) -> np.ndarray:
        """Indices (int32) of external item ids; ``KeyError`` names any unknown id."""
        return self._indices(ids, self._item_lookup, "item")

    @staticmethod
    def _indices(ids, lookup: pd.Index, kind: str) -> np.ndarray:
        ids = [str(i) for i in ([ids] if isinstance(ids, str) else ids)]
        found = lookup.get_indexer(ids)
        if (found < 0).any():
            unknown = [i for i, f in zip(ids, found) if f < 0]
            raise KeyError(f"{kind} id(s) not in the dataset: {', '.join(map(repr, unknown[:10]))}"
                           f"{' ...' if len(unknown) > 10 else ''}. Check the spelling (ids are text: "
                           f"'00123' and '123' differ).")
        return found.astype(np.int32)

    def item_labels(self, indices: np.ndarray | None = None) -> np.ndarray:
        """Display names (titles where the item table has them, else ids)."""
        indices = np.arange(self.n_items) if indices is None else np.asarray(indices)
        if self.item_label_column:
            labels = self.items[self.item_label_column].astype("string").to_numpy(dtype=object)[indices]
            ids = self.item_ids[indices]
            return np.where(pd.isna(labels), ids, labels)
        return self.item_ids[indices]

    # ------------------------------------------------------------------ matrices
    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """Users x items CSR matrix of weights (float32, int32 indices, one entry per pair)."""
        matrix = sp.csr_matrix((self.weights, (self.user_index, self.item_index)),
                               shape=(self.n_users, self.n_items), dtype=np.float32)
        matrix.sum_duplicates()
        matrix.indices = matrix.indices.astype(np.int32, copy=False)
        matrix.indptr = matrix.indptr.astype(np.int32 if matrix.nnz < 2**31 else np.int64, copy=False)
        return matrix

    @cached_property
    def user_features(self) -> np.ndarray:
        """Static profile features, float32, shape (n_users, profile_encoder.n_features)."""
        return self.profile_encoder.transform(self.users)

    @cached_property
    def item_features(self) -> np.ndarray:
        """Item content features, float32, shape (n_items, item_encoder.n_features)."""
        return self.item_encoder.transform(self.items)

    @cached_property
    def _category(self) -> tuple[sp.csr_matrix, list[str]]:
        role = self.item_roles.get(self.category_column) if self.category_column else None
        return category_matrix(self.items, self.category_column, role)

    @property
    def item_categories(self) -> sp.csr_matrix:
        """Items x categories matrix, float32 (rows sum to 1 for categorised items)."""
        return self._category[0]

    @property
    def category_names(self) -> list[str]:
        return self._category[1]

    @cached_property
    def last_interaction_time(self) -> np.ndarray | None:
        """Unix time of each user's latest interaction (NaN for users without one)."""
        if self.timestamps is None:
            return None
        last = np.full(self.n_users, -np.inf)
        np.maximum.at(last, self.user_index, self.timestamps)
        last[~np.isfinite(last)] = np.nan
        return last

    @cached_property
    def behaviour_encoder(self) -> BehaviourEncoder:
        reference = None if self.timestamps is None else float(np.nanmax(self.timestamps))
        return BehaviourEncoder().fit(self.matrix, self.last_interaction_time, self.category_names, reference)

    @cached_property
    def behaviour_features(self) -> np.ndarray:
        """Dynamic profile features, float32, shape (n_users, behaviour_encoder.n_features)."""
        return self.behaviour_encoder.transform(self.matrix, self.last_interaction_time, self.item_categories)

    # ------------------------------------------------------------------ new people
    def encode_new_users(self, profiles: pd.DataFrame, histories: Mapping[str, Sequence] | None = None,
                         ) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
        """Encode people who are not in the data, exactly as training users are encoded.

        Parameters
        ----------
        profiles : pandas.DataFrame
            A ``user_id`` column (any labels) plus profile columns; missing columns and
            unseen values fall into the "unknown" buckets.
        histories : dict, optional
            Label -> item ids that person already interacted with.

        Returns
        -------
        static : ndarray of float32, shape (n, profile_encoder.n_features)
        behaviour : ndarray of float32, shape (n, behaviour_encoder.n_features)
        history : scipy.sparse.csr_matrix, shape (n, n_items)
            Binary matrix of the given histories.

        Raises
        ------
        KeyError
            An item id in ``histories`` is not in the dataset.
        """
        labels = new_user_labels(profiles)
        histories = histories or {}
        rows, columns = [], []
        for position, label in enumerate(labels):
            items = histories.get(label, ())
            if len(items):
                index = self.item_indices(items)
                rows.append(np.full(len(index), position, dtype=np.int32))
                columns.append(index)
        if rows:
            rows, columns = np.concatenate(rows), np.concatenate(columns)
        else:
            rows = columns = np.zeros(0, dtype=np.int32)
        history = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, columns)),
                                shape=(len(labels), self.n_items))
        history.data[:] = 1.0
        history.sum_duplicates()
        history.data[:] = 1.0
        static = self.profile_encoder.transform(profiles.reset_index(drop=True))
        last = None if self.behaviour_encoder.has_recency is False else np.where(
            np.diff(history.indptr) > 0, self.behaviour_encoder.reference_time, np.nan)
        behaviour = self.behaviour_encoder.transform(history, last, self.item_categories)
        return static, behaviour, history

    @property
    def profile_columns(self) -> list[str]:
        """Profile columns used as features (what a cold-start form asks for)."""
        return self.profile_encoder.columns

    # ------------------------------------------------------------------ checks and display
    def _check_degenerate(self) -> None:
        if self.n_users < 2 or self.n_items < 2:
            self.report.warn(f"only {self.n_users} user(s) and {self.n_items} item(s): too little to train "
                             "or evaluate a recommender; results will be trivial.",
                             fix="Load more data.")
        self._check_invariants()

    def _check_invariants(self) -> None:
        if len(self.users) != self.n_users or len(self.items) != self.n_items:
            raise RuntimeError("internal error: side tables not aligned to the id maps")
        if self.n_interactions and (self.user_index.min() < 0 or self.item_index.min() < 0):
            raise RuntimeError("internal error: an interaction has no index")

    @cached_property
    def fingerprint(self) -> str:
        """A short hash of the id maps and feature layout (to match a model bundle to its data)."""
        digest = hashlib.sha256()
        for values in (self.user_ids, self.item_ids, self.profile_encoder.feature_names,
                       self.item_encoder.feature_names):
            digest.update("\x1f".join(map(str, values)).encode("utf-8"))
            digest.update(b"\x1e")
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        ratings = "ratings" if self.has_ratings else "implicit"
        if self.has_ratings and self.n_interactions:
            ratings += f" {self.weights.min():g}-{self.weights.max():g}"
        parts = [f"{self.n_users:,} users", f"{self.n_items:,} items", f"{self.n_interactions:,} interactions",
                 f"density {self.density:.3%}", ratings]
        if self.timestamps is not None:
            parts.append("with timestamps")
        profile = ", ".join(f"{c} ({r})" for c, r in self.user_roles.items()) or "none"
        content = ", ".join(f"{c} ({r})" for c, r in self.item_roles.items()) or "none"
        return (f"Dataset({self.name!r}: {', '.join(parts)};\n  profile: {profile};\n"
                f"  item features: {content})")


def new_user_labels(profiles: pd.DataFrame) -> list[str]:
    """The labels of new people (the ``user_id`` column, or the row position)."""
    if "user_id" in profiles.columns:
        return [str(v) for v in profiles["user_id"].tolist()]
    return [f"new_{i + 1}" for i in range(len(profiles))]


# ---------------------------------------------------------------------- helpers
def _resolve_mapping(interactions: pd.DataFrame, columns, report: Report) -> ColumnMapping:
    source = interactions.attrs.get("source", "interactions")
    given = columns.to_dict() if isinstance(columns, ColumnMapping) else dict(columns or {})
    unknown_roles = set(given) - {"user", "item", "rating", "timestamp"}
    if unknown_roles:
        raise ValueError(f"unknown column roles {sorted(unknown_roles)}; use user, item, rating, timestamp")
    guessed = guess_interaction_columns(interactions.columns).to_dict()
    mapping = {role: given[role] if role in given else guessed[role] for role in guessed}
    found = ", ".join(f"'{c}'" for c in interactions.columns)
    for role, column in mapping.items():
        if column is not None and column not in interactions.columns:
            report.add(f"the {role} column '{column}' is not in the file (columns found: {found}).",
                       file=source, fix="Pick one of the columns found.")
    missing = [role for role in ("user", "item") if mapping[role] is None]
    if missing:
        hint = ""
        delimiter = suggest_delimiter(list(interactions.columns))
        if delimiter:
            hint = (f" The file was read as a single column; it looks {delimiter_name(delimiter)}-separated: "
                    f"choose '{delimiter_name(delimiter)}' as the delimiter.")
        report.add(f"no {' or '.join(missing)} id column found (columns found: {found}).{hint}",
                   file=source, fix="Name the columns user_id and item_id, or map them by hand." if not hint
                   else "Re-read the file with the right delimiter.")
    if len(interactions) == 0:
        report.add("no data rows in the file.", file=source)
    return ColumnMapping(**mapping)


def _check_side_table(frame: pd.DataFrame | None, id_column: str | None, kind: str, interaction_column,
                      report: Report) -> tuple[pd.DataFrame | None, str | None]:
    if frame is None:
        return None, None
    source = frame.attrs.get("source", f"{kind}s")
    if len(frame) == 0:
        report.add("no data rows in the file.", file=source)
        return frame, None
    if id_column is None:
        id_column = guess_id_column(frame.columns, kind)
        if id_column is None and interaction_column in frame.columns:
            id_column = interaction_column
    found = ", ".join(f"'{c}'" for c in frame.columns)
    if id_column is None or id_column not in frame.columns:
        hint = ""
        delimiter = suggest_delimiter(list(frame.columns))
        if delimiter:
            hint = f" It was read as one column; it looks {delimiter_name(delimiter)}-separated."
        report.add(f"no {kind} id column found (columns found: {found}).{hint}", file=source,
                   fix=f"Name the id column {kind}_id, or choose it by hand.")
    return frame, id_column


def _align_side_table(frame: pd.DataFrame | None, id_column: str | None, seen_ids: np.ndarray,
                      kind: str, report: Report) -> tuple[pd.DataFrame, np.ndarray]:
    """The id order (table rows first, then ids only seen in interactions) and the aligned table.

    ``seen_ids`` are the distinct ids of the interactions, in order of first appearance.
    """
    seen_ids = np.asarray(seen_ids, dtype=object)
    if frame is None:
        return pd.DataFrame(index=pd.RangeIndex(len(seen_ids))), seen_ids
    source = frame.attrs.get("source", f"{kind}s")
    ids = _ids(frame[id_column])
    missing = ids.isna().to_numpy()
    if missing.any():
        report.warn(f"{missing.sum():,} row(s) without a {kind} id were ignored.", file=source,
                    column=id_column, rows=_rows_of(frame, missing), n_rows=int(missing.sum()),
                    row_label=_row_label(frame))
    duplicated = ids.duplicated().to_numpy() & ~missing
    if duplicated.any():
        report.warn(f"{duplicated.sum():,} {kind} id(s) appear more than once; the first row of each was kept.",
                    file=source, column=id_column, rows=_rows_of(frame, duplicated),
                    n_rows=int(duplicated.sum()), row_label=_row_label(frame))
    keep = ~missing & ~duplicated
    table = frame.loc[keep].drop(columns=[id_column]).reset_index(drop=True)
    table_ids = ids[keep].to_numpy(dtype=object)
    extra = seen_ids[~pd.Index(seen_ids, dtype=object).isin(table_ids)]
    if len(extra):
        report.warn(f"{len(extra):,} {kind}(s) in the interactions have no row in the {kind} table; "
                    f"their attributes count as unknown (e.g. {', '.join(map(repr, extra[:3]))}).",
                    file=source, column=id_column)
    inactive = int((~pd.Index(table_ids, dtype=object).isin(seen_ids)).sum())
    if inactive:
        what = "cold users: no interactions yet" if kind == "user" else "cold items: never interacted with"
        report.warn(f"{inactive:,} {kind}(s) in the {kind} table have no interactions; they are kept ({what}).",
                    file=source, column=id_column)
    all_ids = np.concatenate([table_ids, extra]).astype(object)
    table = pd.concat([table, pd.DataFrame(index=pd.RangeIndex(len(extra)), columns=table.columns)],
                      ignore_index=True) if len(extra) else table
    return table, all_ids


def _deduplicate(user_index, item_index, ratings, timestamps, has_ratings, n_items, report: Report):
    """One entry per (user, item): ratings keep the latest value; implicit events add up."""
    key = user_index.astype(np.int64) * n_items + item_index
    order = np.lexsort((timestamps if timestamps is not None else np.arange(len(key)), key))
    key_sorted = key[order]
    last = np.ones(len(key_sorted), dtype=bool)
    last[:-1] = key_sorted[1:] != key_sorted[:-1]
    n_repeats = int((~last).sum())
    if n_repeats == 0:
        return user_index, item_index, ratings.astype(np.float32), timestamps
    if has_ratings:
        report.warn(f"{n_repeats:,} repeated (user, item) pair(s): the latest rating of each pair was kept.")
        chosen = order[last]
        weights = ratings[chosen]
    else:
        report.warn(f"{n_repeats:,} repeated (user, item) event(s) were added up into counts.")
        chosen = order[last]
        group = np.cumsum(np.concatenate(([True], last[:-1])))
        weights = np.bincount(group - 1, weights=ratings[order])
    return (user_index[chosen], item_index[chosen], weights.astype(np.float32),
            None if timestamps is None else timestamps[chosen])
