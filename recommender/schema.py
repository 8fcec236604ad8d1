"""Guessing what each column of an input table means.

Two kinds of guesses, both shown to the user and both overridable:

* the *mapping* of an interactions table: which column is the user id, the item id,
  the rating or weight, and the timestamp (:func:`guess_interaction_columns`);
* the *role* of every attribute column of a profile or item table
  (:func:`infer_column_roles`): categorical, multi-label, numeric, age, free text,
  a display label (unique per row, like a title), a direct identifier (PII, excluded
  from modelling by default) or ignored.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

USER_ALIASES = ["user_id", "userid", "user", "uid", "customer_id", "customerid", "customer", "client_id",
                "clientid", "member_id", "memberid", "visitor_id", "account_id", "person_id", "reviewer_id",
                "reviewerid", "user_idx", "users"]
ITEM_ALIASES = ["item_id", "itemid", "item", "iid", "product_id", "productid", "product", "movie_id", "movieid",
                "movie", "sku", "article_id", "articleid", "track_id", "book_id", "bookid", "isbn", "asin",
                "content_id", "video_id", "song_id", "offer_id", "items"]
RATING_ALIASES = ["rating", "ratings", "score", "stars", "star", "weight", "value", "preference", "count",
                  "quantity", "qty", "clicks", "plays", "playcount", "play_count", "views", "purchases",
                  "implicit", "label", "feedback"]
TIME_ALIASES = ["timestamp", "ts", "time", "date", "datetime", "event_time", "eventtime", "created_at",
                "createdat", "time_stamp", "unix_time", "unixtime", "event_date", "order_date", "date_time",
                "occurred_at", "when"]

ROLES = ("categorical", "multilabel", "numeric", "age", "text", "label", "pii", "ignore")
#: Roles that become model features.
FEATURE_ROLES = ("categorical", "multilabel", "numeric", "age", "text")

_PII_NAME = re.compile(
    r"(^|_)(name|first_?name|last_?name|full_?name|surname|given_?name|e_?mail|email_?address|phone|"
    r"phone_?number|mobile|telephone|tel|address|street|street_?address|ssn|social_?security|passport|"
    r"credit_?card|iban|ip_?address|username|user_?name|login)($|_)")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^\+?[\d\s().-]{7,}$")
_STREET = re.compile(r"^\d+\s+\w+.*\b(street|st|road|rd|avenue|ave|lane|ln|drive|dr|blvd|way|court|ct)\b\.?",
                     re.IGNORECASE)
_ZIP_NAME = re.compile(r"(zip|postal|postcode|post_code|zipcode)")
_AGE_NAME = re.compile(r"(^|_)age($|_|_years)")
_LABEL_NAME = re.compile(r"(^|_)(title|name|label|display_name|product_name|movie_title)($|_)")
_CATEGORY_NAME = re.compile(r"(categor|genre|type|department|class|section|topic|tag)")
_MULTI_SEPARATORS = ["|", ";"]


def normalise_name(column: str) -> str:
    """``"User ID"`` -> ``"user_id"``; ``"userId"`` -> ``"user_id"``."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(column).strip())
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")


def _compact(column: str) -> str:
    return normalise_name(column).replace("_", "")


def _find(columns: Iterable[str], aliases: list[str], taken: set[str]) -> str | None:
    columns = [c for c in columns if c not in taken]
    compact_aliases = [a.replace("_", "") for a in aliases]
    for alias in compact_aliases:  # aliases are ordered by preference
        for column in columns:
            if _compact(column) == alias:
                return column
    return None


@dataclass(frozen=True)
class ColumnMapping:
    """Which column of an interactions table plays which role. ``None`` means absent."""

    user: str | None = None
    item: str | None = None
    rating: str | None = None
    timestamp: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def guess_interaction_columns(columns: Iterable[str]) -> ColumnMapping:
    """Guess the user, item, rating and timestamp columns from their names."""
    columns = list(columns)
    taken: set[str] = set()
    found = {}
    for role, aliases in (("user", USER_ALIASES), ("item", ITEM_ALIASES), ("rating", RATING_ALIASES),
                          ("timestamp", TIME_ALIASES)):
        column = _find(columns, aliases, taken)
        if column is not None:
            taken.add(column)
        found[role] = column
    return ColumnMapping(**found)


def guess_id_column(columns: Iterable[str], kind: str) -> str | None:
    """The id column of a profile (``kind="user"``) or item (``kind="item"``) table."""
    aliases = USER_ALIASES if kind == "user" else ITEM_ALIASES
    column = _find(columns, aliases, set())
    if column is None:
        generic = _find(columns, ["id", "key", "index"], set())
        column = generic
    return column


def _as_text(values: pd.Series) -> pd.Series:
    text = values.astype("string")
    return text[text.notna() & (text.str.strip() != "")]


def numeric_share(values: pd.Series) -> float:
    """Share of the non-empty values that parse as finite numbers."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return 1.0
    text = _as_text(values)
    if len(text) == 0:
        return 0.0
    from .features import to_float

    return float(np.isfinite(to_float(text)).mean())


def infer_column_role(name: str, values: pd.Series, kind: str = "user") -> str:
    """Guess one attribute column's role (see :data:`ROLES`).

    Parameters
    ----------
    name : str
        Column name.
    values : pandas.Series
        The column (text or typed).
    kind : {"user", "item"}
        Whether the table describes users (names there are personal data) or items
        (a unique name there is a title).
    """
    normalised = normalise_name(name)
    sample = values if len(values) <= 20_000 else values.sample(20_000, random_state=0)
    text = _as_text(sample)
    if len(text) == 0:
        return "ignore"
    n_unique = text.nunique()
    unique_share = n_unique / len(text)

    if kind == "user" and _PII_NAME.search(normalised):
        return "pii"
    if text.str.match(_EMAIL).mean() > 0.5 or text.str.match(_STREET).mean() > 0.5:
        return "pii"
    if (_PHONE.match(str(text.iloc[0])) and text.str.match(_PHONE).mean() > 0.8 and unique_share > 0.9
            and text.str.contains(r"[\s()+-]").mean() > 0.5):
        return "pii"
    if _ZIP_NAME.search(normalised):
        return "categorical"
    share = numeric_share(sample)
    if share > 0.95:
        if _AGE_NAME.search(normalised):
            return "age"
        numbers = pd.to_numeric(text, errors="coerce").dropna()
        integral = bool(np.all(np.mod(numbers.to_numpy(dtype=float), 1) == 0))  # a sample of <= 20k
        # Small integer codes (occupation 0-20, region 1-9) are categories, not quantities.
        if integral and n_unique <= 25 and not re.search(r"(count|num|amount|price|income|size|year|score)",
                                                         normalised):
            return "categorical"
        if unique_share > 0.98 and integral and len(text) > 50:
            return "pii" if kind == "user" else "ignore"  # a numeric code unique per row
        return "numeric"
    for separator in _MULTI_SEPARATORS:
        if text.str.contains(separator, regex=False).mean() > 0.1:
            return "multilabel"
    mean_words = text.str.count(r"\s+").mean() + 1
    if unique_share > 0.9 and len(text) > 20:
        if kind == "user":
            return "pii"  # free-text values unique per person identify that person
        if mean_words >= 8:
            return "text"
        return "label"
    if kind == "item" and _LABEL_NAME.search(normalised) and unique_share > 0.5:
        return "label"
    if mean_words >= 8 and n_unique > 50:
        return "text"
    return "categorical"


def infer_column_roles(frame: pd.DataFrame, id_column: str | None, kind: str = "user",
                       overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Roles of every column except the id column; ``overrides`` win over the guesses."""
    overrides = dict(overrides or {})
    unknown = [r for r in overrides.values() if r not in ROLES]
    if unknown:
        raise ValueError(f"unknown column role(s) {unknown}; choose from {', '.join(ROLES)}")
    roles = {}
    for column in frame.columns:
        if column == id_column:
            continue
        roles[column] = overrides.get(column) or infer_column_role(column, frame[column], kind)
    return roles


def is_zip_column(name: str) -> bool:
    return bool(_ZIP_NAME.search(normalise_name(name)))


def category_column(roles: Mapping[str, str], frame: pd.DataFrame) -> str | None:
    """The item column that best describes an item's category (for dynamic profile features)."""
    candidates = [c for c, r in roles.items() if r in ("categorical", "multilabel")]
    if not candidates:
        return None

    def score(column: str) -> tuple:
        values = frame[column].astype("string")
        if roles[column] == "multilabel":
            values = values.str.split("|").explode()
        n_unique = values.nunique()
        return (bool(_CATEGORY_NAME.search(normalise_name(column))), 2 <= n_unique <= 40, -n_unique)

    best = max(candidates, key=score)
    return best
