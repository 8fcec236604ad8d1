"""What the Data page shows about a dataset, computed without a browser.

Every function here takes a :class:`~recommender.dataset.Dataset` (or arrays from one) and
returns small numbers or small tables: the counts, the long tail of activity, the rating
distribution, activity over time, the distribution of each profile attribute, how well the
item table covers each feature and the inferred column roles. Results are aggregated here so
that a chart never receives one point per interaction: every table returned is bounded in
size (a few hundred rows at most) whatever the size of the data.

Distributions that describe people follow the privacy rule of the project: a bar or bin
describing fewer than ``k_min`` people (default 10) is not shown; it is counted in
:attr:`AttributeDistribution.n_suppressed` instead.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .dataset import Dataset
from .errors import Problem, format_rows
from .features import clean_text
from .schema import FEATURE_ROLES

logger = logging.getLogger(__name__)

#: Smallest group of people a chart may describe (RELIABILITY.md, case 17).
K_MIN = 10
#: Label of the bar that pools rare or surplus categories.
OTHER_LABEL = "(other)"
#: Label of the bar counting missing values.
MISSING_LABEL = "(missing)"
#: Separator of multi-label columns (``"Action|Comedy"``), as in the encoders.
MULTILABEL_SEPARATOR = "|"

_SECONDS_PER_DAY = 86_400.0


# ---------------------------------------------------------------------- counts
@dataclass(frozen=True)
class DatasetCounts:
    """Headline numbers of a dataset.

    Attributes
    ----------
    n_users, n_items, n_interactions : int
    density : float
        Share of the user x item cells holding an interaction (``sparsity = 1 - density``).
    n_cold_users, n_cold_items : int
        Users / items without any interaction (known from the profile or item table only).
    median_per_user, median_per_item : float
        Median number of interactions of the users / items that have at least one.
    has_ratings : bool
    rating_min, rating_max, rating_mean : float or None
    has_timestamps : bool
    first_time, last_time : pandas.Timestamp or None
        First and last interaction (UTC).
    n_profile_features, n_item_features : int
        Profile / item columns used as model features.
    """

    n_users: int
    n_items: int
    n_interactions: int
    density: float
    n_cold_users: int
    n_cold_items: int
    median_per_user: float
    median_per_item: float
    has_ratings: bool
    rating_min: float | None
    rating_max: float | None
    rating_mean: float | None
    has_timestamps: bool
    first_time: pd.Timestamp | None
    last_time: pd.Timestamp | None
    n_profile_features: int
    n_item_features: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.density


def interactions_per_user(dataset: Dataset) -> np.ndarray:
    """Number of interactions of each user, int64, shape (n_users,)."""
    return np.bincount(dataset.user_index, minlength=dataset.n_users).astype(np.int64)


def interactions_per_item(dataset: Dataset) -> np.ndarray:
    """Number of interactions of each item, int64, shape (n_items,)."""
    return np.bincount(dataset.item_index, minlength=dataset.n_items).astype(np.int64)


def _median_positive(counts: np.ndarray) -> float:
    positive = counts[counts > 0]
    return float(np.median(positive)) if len(positive) else 0.0


def _feature_columns(roles: dict[str, str]) -> int:
    return sum(1 for role in roles.values() if role in FEATURE_ROLES)


def dataset_counts(dataset: Dataset) -> DatasetCounts:
    """The headline numbers of ``dataset`` (see :class:`DatasetCounts`)."""
    per_user = interactions_per_user(dataset)
    per_item = interactions_per_item(dataset)
    rating_min = rating_max = rating_mean = None
    if dataset.has_ratings and dataset.n_interactions:
        rating_min = float(dataset.weights.min())
        rating_max = float(dataset.weights.max())
        rating_mean = float(dataset.weights.mean(dtype=np.float64))
    first_time = last_time = None
    if dataset.timestamps is not None and dataset.n_interactions:
        finite = dataset.timestamps[np.isfinite(dataset.timestamps)]
        if len(finite):
            first_time = pd.Timestamp(float(finite.min()), unit="s", tz="UTC")
            last_time = pd.Timestamp(float(finite.max()), unit="s", tz="UTC")
    return DatasetCounts(
        n_users=dataset.n_users, n_items=dataset.n_items, n_interactions=dataset.n_interactions,
        density=float(dataset.density), n_cold_users=int((per_user == 0).sum()),
        n_cold_items=int((per_item == 0).sum()), median_per_user=_median_positive(per_user),
        median_per_item=_median_positive(per_item), has_ratings=bool(dataset.has_ratings),
        rating_min=rating_min, rating_max=rating_max, rating_mean=rating_mean,
        has_timestamps=dataset.timestamps is not None, first_time=first_time, last_time=last_time,
        n_profile_features=_feature_columns(dataset.user_roles),
        n_item_features=_feature_columns(dataset.item_roles))


# ---------------------------------------------------------------------- long tail
def long_tail(counts: np.ndarray, max_points: int = 300) -> pd.DataFrame:
    """The long-tail curve (activity by rank) at no more than ``max_points`` ranks.

    Parameters
    ----------
    counts : ndarray of int, shape (n,)
        Interactions per user or per item.
    max_points : int
        Ranks are sampled at log-spaced positions (plus the first and last), which keeps the
        shape of the curve on log axes while bounding the size of the chart.

    Returns
    -------
    pandas.DataFrame
        ``rank`` (int, 1 = most active), ``interactions`` (int) and ``cumulative_share``
        (float, share of all interactions held by ranks 1..rank), sorted by rank. Entities
        with no interaction are left out (a log axis cannot show zero).
    """
    counts = np.asarray(counts, dtype=np.int64)
    ordered = np.sort(counts[counts > 0])[::-1]
    if len(ordered) == 0:
        return pd.DataFrame({"rank": np.zeros(0, dtype=np.int64), "interactions": np.zeros(0, dtype=np.int64),
                             "cumulative_share": np.zeros(0)})
    cumulative = np.cumsum(ordered) / ordered.sum()
    ranks = np.unique(np.geomspace(1, len(ordered), num=min(max_points, len(ordered))).round().astype(np.int64))
    return pd.DataFrame({"rank": ranks, "interactions": ordered[ranks - 1],
                         "cumulative_share": cumulative[ranks - 1]})


def count_histogram(counts: np.ndarray, max_bins: int = 40) -> pd.DataFrame:
    """Histogram of activity counts with log-spaced integer bins.

    Returns
    -------
    pandas.DataFrame
        ``low``, ``high`` (int, inclusive bounds), ``label`` (``"3"`` or ``"10-14"``) and
        ``count`` (how many users / items fall in the bin); empty bins are kept so the axis
        reads as a continuous scale. At most ``max_bins`` rows.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if len(counts) == 0:
        return pd.DataFrame({"low": [], "high": [], "label": [], "count": []})
    top = int(counts.max())
    edges = np.unique(np.geomspace(1, top + 1, num=max_bins).round().astype(np.int64))
    edges = np.unique(np.concatenate(([0, 1], edges, [top + 1])))
    binned = np.searchsorted(edges, counts, side="right") - 1
    sizes = np.bincount(binned, minlength=len(edges) - 1)[: len(edges) - 1]
    low, high = edges[:-1], edges[1:] - 1
    labels = [str(a) if a == b else f"{a}-{b}" for a, b in zip(low, high)]
    return pd.DataFrame({"low": low, "high": high, "label": labels, "count": sizes.astype(np.int64)})


def concentration(counts: np.ndarray, top_shares: Sequence[float] = (0.01, 0.1, 0.2)) -> pd.DataFrame:
    """How much of the activity the most active entities hold ("top 10 % of items get 60 %").

    Returns
    -------
    pandas.DataFrame
        ``top_share`` (float, e.g. 0.1), ``n_entities`` (int, how many that is) and
        ``interaction_share`` (float). Shares are of all entities, including inactive ones.
    """
    counts = np.asarray(counts, dtype=np.int64)
    ordered = np.sort(counts)[::-1]
    total = max(int(ordered.sum()), 1)
    cumulative = np.concatenate(([0], np.cumsum(ordered)))
    rows = []
    for share in top_shares:
        n = int(np.ceil(share * len(ordered))) if len(ordered) else 0
        rows.append({"top_share": float(share), "n_entities": n, "interaction_share": cumulative[n] / total})
    return pd.DataFrame(rows)


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of activity (0 = everyone equally active, 1 = one entity has everything)."""
    counts = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(counts)
    if n == 0 or counts.sum() == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2 * (ranks * counts).sum() / (n * counts.sum())) - (n + 1) / n)


# ---------------------------------------------------------------------- ratings and time
def rating_distribution(dataset: Dataset, max_bins: int = 30) -> pd.DataFrame | None:
    """How often each rating occurs (``None`` for implicit data).

    Returns
    -------
    pandas.DataFrame or None
        ``rating`` (float; the bin centre when ratings are continuous) and ``count`` (int),
        at most ``max_bins`` rows (whole-star or half-star scales get one row per value).
    """
    if not dataset.has_ratings or dataset.n_interactions == 0:
        return None
    values, counts = np.unique(dataset.weights, return_counts=True)
    if len(values) <= max_bins:
        return pd.DataFrame({"rating": values.astype(np.float64), "count": counts.astype(np.int64)})
    sizes, edges = np.histogram(dataset.weights.astype(np.float64), bins=max_bins)
    return pd.DataFrame({"rating": (edges[:-1] + edges[1:]) / 2, "count": sizes.astype(np.int64)})


@dataclass(frozen=True)
class TimeSeries:
    """Interactions per period.

    Attributes
    ----------
    frame : pandas.DataFrame
        ``period_start`` (datetime64, UTC-naive), ``interactions`` (int) and ``active_users``
        (int, distinct users with an interaction in the period). Periods without activity
        are included with zeros.
    period : str
        ``"day"``, ``"week"`` (starting Monday), ``"month"``, ``"year"`` or ``"bin"``
        (equal-width bins when even years would be too many).
    """

    frame: pd.DataFrame
    period: str


def activity_over_time(dataset: Dataset, max_periods: int = 120) -> TimeSeries | None:
    """Interactions and active users per day, week, month or year (``None`` without timestamps).

    The finest period that gives at most ``max_periods`` periods is used.
    """
    if dataset.timestamps is None or dataset.n_interactions == 0:
        return None
    finite = np.isfinite(dataset.timestamps)
    if not finite.any():
        return None
    seconds = dataset.timestamps[finite]
    users = dataset.user_index[finite].astype(np.int64)
    days = np.floor(seconds / _SECONDS_PER_DAY).astype(np.int64)
    period, codes, starts = _periods(days, seconds, max_periods)
    offset = codes.min()
    codes = codes - offset
    n_periods = int(codes.max()) + 1
    interactions = np.bincount(codes, minlength=n_periods)
    # Distinct (period, user) pairs; a sort is much faster than np.unique's hashing here.
    pairs = np.sort(codes * max(dataset.n_users, 1) + users)
    pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))]
    active = np.bincount(pairs // max(dataset.n_users, 1), minlength=n_periods)
    frame = pd.DataFrame({"period_start": starts(np.arange(n_periods) + offset),
                          "interactions": interactions.astype(np.int64), "active_users": active.astype(np.int64)})
    return TimeSeries(frame=frame, period=period)


def _periods(days: np.ndarray, seconds: np.ndarray, max_periods: int):
    """Pick a period and return (name, int64 period codes, code -> start datetime64 function)."""
    day_span = int(days.max() - days.min()) + 1
    if day_span <= max_periods:
        return "day", days, lambda c: c.astype("datetime64[D]").astype("datetime64[ns]")
    # 1970-01-01 was a Thursday: (days + 3) // 7 numbers weeks starting on Monday.
    weeks = (days + 3) // 7
    if int(weeks.max() - weeks.min()) + 1 <= max_periods:
        return "week", weeks, lambda c: (c * 7 - 3).astype("datetime64[D]").astype("datetime64[ns]")
    months = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    if int(months.max() - months.min()) + 1 <= max_periods:
        return "month", months, lambda c: c.astype("datetime64[M]").astype("datetime64[ns]")
    years = days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64)
    if int(years.max() - years.min()) + 1 <= max_periods:
        return "year", years, lambda c: c.astype("datetime64[Y]").astype("datetime64[ns]")
    low, high = float(seconds.min()), float(seconds.max())
    width = (high - low) / max_periods or 1.0
    codes = np.minimum(((seconds - low) / width).astype(np.int64), max_periods - 1)
    return "bin", codes, lambda c: (low + c * width).astype("datetime64[s]").astype("datetime64[ns]")


# ---------------------------------------------------------------------- attributes
@dataclass(frozen=True)
class AttributeDistribution:
    """The distribution of one profile or item column, ready to draw.

    Attributes
    ----------
    column, role : str
    kind : {"bar", "histogram"}
    table : pandas.DataFrame
        For bars: ``value`` (str), ``count`` (int) and ``share`` (float, of the rows with a
        value; for multi-label columns a row can count for several values). For histograms:
        ``low``, ``high`` (float bin bounds), ``label`` (str) and ``count`` (int).
    n_rows : int
        Rows described (users or items).
    n_missing : int
        Rows without a value.
    n_suppressed : int
        Rows left out because their bar or bin described fewer than ``k_min`` people.
    log_scale : bool
        Histogram bins are log-spaced (heavy-tailed positive values such as prices).
    """

    column: str
    role: str
    kind: str
    table: pd.DataFrame
    n_rows: int
    n_missing: int
    n_suppressed: int = 0
    log_scale: bool = False


def _bar_table(counts: pd.Series, n_with_value: int, top: int, k_min: int) -> tuple[pd.DataFrame, int]:
    """Top values, rare values pooled into OTHER_LABEL, groups under ``k_min`` suppressed."""
    counts = counts.sort_values(ascending=False, kind="stable")
    shown = counts.iloc[:top]
    pooled = int(counts.iloc[top:].sum())
    suppressed = 0
    if k_min > 1:
        small = shown < k_min
        pooled += int(shown[small].sum())
        shown = shown[~small]
        if 0 < pooled < k_min:
            suppressed, pooled = pooled, 0
    values = [str(v) for v in shown.index]
    sizes = [int(v) for v in shown.to_numpy()]
    if pooled:
        values.append(OTHER_LABEL)
        sizes.append(pooled)
    sizes_array = np.asarray(sizes, dtype=np.int64)
    table = pd.DataFrame({"value": pd.Series(values, dtype=object), "count": sizes_array,
                          "share": sizes_array / max(n_with_value, 1)})
    return table, suppressed


def _histogram_table(numbers: np.ndarray, role: str, n_bins: int, k_min: int) -> tuple[pd.DataFrame, int, bool]:
    low, high = float(numbers.min()), float(numbers.max())
    integral = bool(np.all(np.mod(numbers, 1) == 0))
    median = float(np.median(numbers))
    log_scale = bool(role != "age" and low > 0 and high > 20 * max(median, 1e-12))
    if role == "age":
        start, stop = 5 * np.floor(low / 5), 5 * np.floor(high / 5) + 5
        edges = np.arange(start, stop + 1, 5, dtype=np.float64)
    elif log_scale:
        edges = np.geomspace(low, high, n_bins + 1)
    elif integral and high - low + 1 <= n_bins:
        edges = np.arange(low - 0.5, high + 1.0, 1.0)
    else:
        edges = np.linspace(low, high if high > low else low + 1, n_bins + 1)
    sizes, edges = np.histogram(numbers, bins=edges)
    suppressed = 0
    if k_min > 1:
        small = (sizes > 0) & (sizes < k_min)
        suppressed = int(sizes[small].sum())
        sizes = np.where(small, 0, sizes)
    lows, highs = edges[:-1], edges[1:]
    if role == "age":
        labels = [f"{a:g}-{b - 1:g}" for a, b in zip(lows, highs)]
    elif integral and not log_scale and high - low + 1 <= n_bins:
        labels = [f"{a + 0.5:g}" for a in lows]
    else:
        labels = [f"{a:.3g}-{b:.3g}" for a, b in zip(lows, highs)]
    table = pd.DataFrame({"low": lows, "high": highs, "label": labels, "count": sizes.astype(np.int64)})
    return table, suppressed, log_scale


def attribute_distribution(values: pd.Series, column: str, role: str, *, k_min: int = 0, top: int = 15,
                           n_bins: int = 30) -> AttributeDistribution | None:
    """The distribution of one column for a chart.

    Parameters
    ----------
    values : pandas.Series
        The column (text or typed), one row per user or item.
    column, role : str
        Column name and its role (see :mod:`recommender.schema`).
    k_min : int
        Smallest group that may be shown (use :data:`K_MIN` for people, 0 for items).
    top : int
        Most categories shown; the rest are pooled into :data:`OTHER_LABEL`.
    n_bins : int
        Histogram bins for numeric columns (ages use 5-year bins).

    Returns
    -------
    AttributeDistribution or None
        ``None`` for roles that are not distributions (personal identifiers, labels, free
        text, ignored columns).
    """
    text = clean_text(values.reset_index(drop=True))
    present = text.notna()
    n_rows, n_missing = len(text), int((~present).sum())
    if role in ("categorical",):
        table, suppressed = _bar_table(text[present].value_counts(), int(present.sum()), top, k_min)
        return AttributeDistribution(column, role, "bar", table, n_rows, n_missing, suppressed)
    if role == "multilabel":
        labels = text[present].str.split(MULTILABEL_SEPARATOR, regex=False).explode().astype("string").str.strip()
        labels = labels[labels.notna() & (labels != "")]
        # Count rows, not mentions: "A|A" counts once.
        labelled = pd.DataFrame({"row": labels.index, "label": labels.to_numpy()}).drop_duplicates()
        table, suppressed = _bar_table(labelled["label"].value_counts(), int(present.sum()), top, k_min)
        return AttributeDistribution(column, role, "bar", table, n_rows, n_missing, suppressed)
    if role in ("numeric", "age"):
        numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        finite = numbers[np.isfinite(numbers)]
        n_missing = n_rows - len(finite)
        if len(finite) == 0:
            empty = pd.DataFrame({"low": [], "high": [], "label": [], "count": []})
            return AttributeDistribution(column, role, "histogram", empty, n_rows, n_missing)
        table, suppressed, log_scale = _histogram_table(finite, role, n_bins, k_min)
        return AttributeDistribution(column, role, "histogram", table, n_rows, n_missing, suppressed, log_scale)
    return None


def profile_distributions(dataset: Dataset, k_min: int = K_MIN) -> list[AttributeDistribution]:
    """One distribution per profile column that can be charted (never personal identifiers).

    Bars and bins describing fewer than ``k_min`` people are suppressed.
    """
    results = []
    for column, role in dataset.user_roles.items():
        if column not in dataset.users.columns:
            continue
        distribution = attribute_distribution(dataset.users[column], column, role, k_min=k_min)
        if distribution is not None:
            results.append(distribution)
    return results


def item_distributions(dataset: Dataset) -> list[AttributeDistribution]:
    """One distribution per item column that can be charted (items are not people: no suppression)."""
    results = []
    for column, role in dataset.item_roles.items():
        if column not in dataset.items.columns:
            continue
        distribution = attribute_distribution(dataset.items[column], column, role, k_min=0)
        if distribution is not None:
            results.append(distribution)
    return results


def _n_distinct(values: pd.Series, role: str) -> int:
    text = clean_text(values)
    text = text[text.notna()]
    if role == "multilabel":
        labels = text.str.split(MULTILABEL_SEPARATOR, regex=False).explode().astype("string").str.strip()
        return int(labels[labels.notna() & (labels != "")].nunique())
    return int(text.nunique())


def item_feature_coverage(dataset: Dataset) -> pd.DataFrame:
    """Share of items with a value in each item column.

    Returns
    -------
    pandas.DataFrame
        One row per item column: ``column``, ``role``, ``used_as_feature`` (bool),
        ``items_with_value`` (int), ``coverage`` (float in [0, 1], of all items, including
        items missing from the item table) and ``distinct_values`` (int; distinct labels for
        multi-label columns). Sorted by coverage, best first.
    """
    rows = []
    for column, role in dataset.item_roles.items():
        if column not in dataset.items.columns:
            continue
        present = int(clean_text(dataset.items[column]).notna().sum())
        rows.append({"column": column, "role": role, "used_as_feature": role in FEATURE_ROLES,
                     "items_with_value": present, "coverage": present / max(dataset.n_items, 1),
                     "distinct_values": _n_distinct(dataset.items[column], role)})
    frame = pd.DataFrame(rows, columns=["column", "role", "used_as_feature", "items_with_value", "coverage",
                                        "distinct_values"])
    return frame.sort_values("coverage", ascending=False, kind="stable").reset_index(drop=True)


_ROLE_DESCRIPTIONS = {
    "categorical": "categories (one-hot)",
    "multilabel": "several labels per row, '|'-separated",
    "numeric": "a number (standardised)",
    "age": "age in years (number and age bands)",
    "text": "free text (word features)",
    "label": "display name, not a feature",
    "pii": "personal identifier, excluded",
    "ignore": "ignored",
}


def column_roles_table(dataset: Dataset, n_examples: int = 3) -> pd.DataFrame:
    """The inferred role of every profile and item column, for display.

    Returns
    -------
    pandas.DataFrame
        ``table`` ("profile" or "item"), ``column``, ``role``, ``meaning`` (the role in words),
        ``used_as_feature`` (bool), ``distinct_values`` (int), ``missing_share`` (float) and
        ``examples`` (str; hidden for personal identifiers).
    """
    rows = []
    for table_name, frame, roles in (("profile", dataset.users, dataset.user_roles),
                                     ("item", dataset.items, dataset.item_roles)):
        for column, role in roles.items():
            if column not in frame.columns:
                continue
            text = clean_text(frame[column])
            present = text[text.notna()]
            if role == "pii":
                examples = "(hidden: personal data)"
            else:
                examples = ", ".join(str(v)[:40] for v in present.drop_duplicates().iloc[:n_examples])
            rows.append({"table": table_name, "column": column, "role": role,
                         "meaning": _ROLE_DESCRIPTIONS.get(role, role), "used_as_feature": role in FEATURE_ROLES,
                         "distinct_values": _n_distinct(frame[column], role),
                         "missing_share": 1.0 - len(present) / max(len(frame), 1), "examples": examples})
    return pd.DataFrame(rows, columns=["table", "column", "role", "meaning", "used_as_feature", "distinct_values",
                                       "missing_share", "examples"])


# ---------------------------------------------------------------------- problems
def problems_table(problems: Iterable[Problem]) -> pd.DataFrame:
    """Problems (errors and warnings) as a table a person can read.

    Returns
    -------
    pandas.DataFrame
        ``severity``, ``file``, ``column``, ``rows`` (e.g. ``"lines 3, 7 and 9"``, with the
        total when only a sample of rows is listed), ``problem`` and ``fix``; all text.
    """
    rows = []
    for problem in problems:
        where = ""
        if problem.rows:
            where = format_rows(list(problem.rows), problem.row_label)
            total = problem.n_rows if problem.n_rows is not None else len(problem.rows)
            if total > len(problem.rows):
                where += f" (of {total:,})"
        rows.append({"severity": problem.severity, "file": problem.file or "", "column": problem.column or "",
                     "rows": where, "problem": problem.message, "fix": problem.fix or ""})
    return pd.DataFrame(rows, columns=["severity", "file", "column", "rows", "problem", "fix"])
