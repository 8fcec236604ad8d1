"""Evaluate models on a split, compare them, and break results down by who the users are.

:func:`evaluate_model` scores one fitted model on a :class:`~.protocols.Split` in batches
(memory bounded by ``batch_size x n_items`` scores) and returns per-user metrics.
:func:`compare_models` fits several models on the same split and returns a
:class:`ComparisonResult`: a table of means, the long per-user frame joined with profile
attributes and activity bands, breakdowns, and a plain-language :meth:`~ComparisonResult.summary`.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..dataset import Dataset
from ..errors import ModelFitError
from ..features import AGE_BAND_NAMES, age_band
from ..models.base import Recommender, top_k
from . import metrics as M
from .protocols import Split, make_split

logger = logging.getLogger(__name__)

#: ``callback(message, step, n_steps)``: progress of :func:`compare_models` (steps are 0..n_steps).
ProgressCallback = Callable[[str, int, int], Any]

#: Smallest group a breakdown or summary reports on (smaller ones are suppressed for privacy).
MIN_GROUP_SIZE = 10
#: Smallest share of the test users a group needs to be named in the summary.
SUMMARY_GROUP_SHARE = 0.05
#: Users scored at once.
EVAL_BATCH = 1024
#: Activity bands: (label, lowest count, highest count) of a user's interactions the model saw.
ACTIVITY_BANDS = (("0", 0, 0), ("1-4", 1, 4), ("5-19", 5, 19), ("20+", 20, None))
#: Column of :attr:`ComparisonResult.per_user` with the activity band.
ACTIVITY = "activity"
#: Per-user beyond-accuracy columns (aggregate-only ones: ``coverage``, ``gini``).
BEYOND_ACCURACY = ("novelty", "diversity", "avg_popularity")
_LABELS = {"precision": "Precision", "recall": "Recall", "ndcg": "NDCG", "map": "MAP", "hit_rate": "HitRate",
           "mrr": "MRR", "novelty": "Novelty", "diversity": "Diversity", "avg_popularity": "AvgPop",
           "coverage": "Coverage", "gini": "Gini"}
_BREAKDOWN_ROLES = ("categorical", "age", "numeric", "multilabel")
_UNKNOWN = "(unknown)"


def metric_names(k: int) -> list[str]:
    """Per-user metric columns for lists of length ``k``: ``precision@10``, ..., ``avg_popularity``."""
    return [f"{name}@{k}" for name in M.RANKING_METRICS] + list(BEYOND_ACCURACY)


def metric_label(metric: str) -> str:
    """Display name: ``"ndcg@10"`` -> ``"NDCG@10"``."""
    base, _, k = metric.partition("@")
    label = _LABELS.get(base, base)
    return f"{label}@{k}" if k else label


@dataclass
class ModelEvaluation:
    """Result of :func:`evaluate_model`.

    Attributes
    ----------
    per_user : pandas.DataFrame
        One row per test user: ``user_index``, ``user_id``, ``n_history`` (interactions the
        model saw for the user), ``n_relevant``, then every column of :func:`metric_names`.
    aggregate : dict
        Mean of each per-user metric, plus ``coverage`` (share of candidate items
        recommended to someone), ``gini`` (concentration of recommendations over candidate
        items) and ``n_users``.
    k : int
        The list length asked for (lists are shorter when there are fewer candidates).
    """

    per_user: pd.DataFrame
    aggregate: dict[str, float]
    k: int


def _check_model(model: Recommender, split: Split) -> None:
    fitted = getattr(model, "dataset", None)
    if fitted is None:
        raise RuntimeError(f"{type(model).__name__} is not fitted: call model.fit(split.train) first.")
    if fitted is split.train:
        return
    if (fitted.n_users, fitted.n_items, fitted.n_interactions) != (
            split.train.n_users, split.train.n_items, split.train.n_interactions):
        raise ValueError(f"{type(model).__name__} was fitted on other data than split.train "
                         f"({fitted.n_interactions:,} vs {split.train.n_interactions:,} interactions); evaluating "
                         "it would leak held-out interactions. Fit it on split.train.")


def _scores(model: Recommender, split: Split, rows: slice, columns: np.ndarray
            ) -> tuple[np.ndarray, sp.csr_matrix | None]:
    """Scores of one batch of test users and what to exclude, both restricted to (and in the order of) ``columns``."""
    users = split.test_users[rows]
    if split.new_users:
        static, behaviour, history = split.new_user_inputs(rows)
        scores, exclude = model.score_new_users(static, behaviour, history), history
    else:
        scores = model.score_users(users)
        exclude = None if split.candidate_items is not None else split.train.matrix[users]
    scores = np.asarray(scores)
    expected = (len(users), split.train.n_items)
    if scores.shape != expected:
        raise ValueError(f"{type(model).__name__} returned scores of shape {scores.shape}, expected {expected}")
    scores = scores[:, columns].astype(np.float32, copy=False)    # indexing copies: the model's array stays
    exclude = None if exclude is None else exclude[:, columns]
    # A NaN score ranks last rather than at an arbitrary place.
    scores[np.isnan(scores)] = -np.inf
    return scores, exclude


def evaluate_model(model: Recommender, split: Split, k: int = 10, batch_size: int = EVAL_BATCH) -> ModelEvaluation:
    """Per-user metrics of a model fitted on ``split.train``.

    Known users (``warm``, ``temporal``) are scored with ``score_users`` and their training
    items are never recommended; new users (``cold_user``, ``few_shot``) with
    ``score_new_users`` from :meth:`Split.new_user_inputs`, their revealed items excluded;
    for ``cold_item`` only the held-out items are ranked. Lists are clipped to the number
    of candidates; excluded slots are empty (``-1``) and count as misses.

    Items with equal scores are ranked in a random order fixed by ``split.seed`` (the same for
    every model), not by their position in the data: a model that cannot tell items apart --
    every interaction-based model on new items, popularity among equally popular items --
    would otherwise be scored on the data's id order, which often follows release date or
    popularity (MovieLens numbers its older, better-known films first).

    Parameters
    ----------
    model : Recommender
        Fitted on ``split.train``.
    split : Split
    k : int
        List length.
    batch_size : int
        Users scored at once (memory ~ ``batch_size * n_items`` float32).

    Returns
    -------
    ModelEvaluation

    Raises
    ------
    RuntimeError
        The model is not fitted.
    ValueError
        The model was fitted on other data, ``k < 1``, or it returns scores of the wrong shape.
    """
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    _check_model(model, split)
    train = split.train
    candidates = split.candidate_items
    n_candidates = train.n_items if candidates is None else len(candidates)
    item_counts = np.bincount(train.item_index, minlength=train.n_items)
    n_active = int((np.bincount(train.user_index, minlength=train.n_users) > 0).sum())
    share = M.popularity_share(item_counts, n_active)
    features = M.unit_rows(train.item_features)
    recommended = np.zeros(n_candidates, dtype=np.int64)
    columns: dict[str, list[np.ndarray]] = {name: [] for name in metric_names(k)}
    # top_k breaks ties by column: shuffled columns break them in this random order.
    order = np.random.default_rng(split.seed).permutation(n_candidates)
    ranked = order if candidates is None else candidates[order]      # the items, in that order
    for start in range(0, split.n_test_users, max(int(batch_size), 1)):
        rows = slice(start, start + max(int(batch_size), 1))
        scores, exclude = _scores(model, split, rows, ranked)
        items, top_scores = top_k(scores, k, exclude)
        items = np.where(top_scores > -np.inf, order[items], -1)  # excluded or unscorable: an empty slot
        recommended += M.recommendation_counts(items, n_candidates)
        if candidates is not None:
            items = np.where(items >= 0, candidates[np.maximum(items, 0)], -1)
        relevant = split.test[rows]
        for name, values in M.ranking_metrics(items, relevant).items():
            columns[f"{name}@{k}"].append(values)
        columns["novelty"].append(M.novelty(items, share))
        columns["diversity"].append(M.intra_list_diversity(items, features, normalised=True))
        columns["avg_popularity"].append(M.mean_popularity(items, share))
    frame = pd.DataFrame({
        "user_index": split.test_users.astype(np.int32),
        "user_id": train.user_ids[split.test_users],
        "n_history": split.history_counts(),
        "n_relevant": M.n_relevant(split.test),
    })
    for name, parts in columns.items():
        frame[name] = np.concatenate(parts) if parts else np.zeros(0)
    aggregate = {name: _nanmean(frame[name]) for name in columns}
    aggregate["coverage"] = float((recommended > 0).sum() / max(n_candidates, 1))
    aggregate["gini"] = M.gini_index(recommended)
    aggregate["n_users"] = float(len(frame))
    return ModelEvaluation(per_user=frame, aggregate=aggregate, k=k)


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


# ---------------------------------------------------------------------- attributes of test users
def activity_band(counts: np.ndarray) -> pd.Categorical:
    """Band (``"0"``, ``"1-4"``, ``"5-19"``, ``"20+"``) of each count, as an ordered categorical."""
    counts = np.asarray(counts)
    labels = [label for label, _, _ in ACTIVITY_BANDS]
    codes = np.zeros(len(counts), dtype=np.int64)
    for code, (_, low, _) in enumerate(ACTIVITY_BANDS):
        codes[counts >= low] = code
    return pd.Categorical.from_codes(codes, categories=labels, ordered=True)


def user_attributes(dataset: Dataset, user_index: np.ndarray) -> pd.DataFrame:
    """Profile attributes of users as groups for breakdowns (one row per given index).

    Categorical and multi-label columns as text (a multi-label value such as ``"a|b"`` is
    one group); ages as the standard bands and other numbers as quartiles (both ordered);
    missing values as ``"(unknown)"``. Columns with a personal-identifier, free-text, label
    or ignored role are left out.
    """
    rows = dataset.users.iloc[np.asarray(user_index)].reset_index(drop=True)
    result = {}
    for column in dataset.users.columns:
        role = dataset.user_roles.get(column)
        if role not in _BREAKDOWN_ROLES:
            continue
        values = rows[column]
        if role == "age":
            bands = age_band(values).fillna(_UNKNOWN).to_numpy(dtype=object)
            result[column] = pd.Categorical(bands, categories=[*AGE_BAND_NAMES, _UNKNOWN], ordered=True)
        elif role == "numeric":
            numbers = pd.to_numeric(values, errors="coerce")
            try:
                bins = pd.qcut(numbers, 4, duplicates="drop")
            except (ValueError, IndexError):  # too few distinct values to cut
                result[column] = values.astype("string").fillna(_UNKNOWN).to_numpy(dtype=object)
                continue
            labels = [str(interval) for interval in bins.cat.categories]
            text = bins.astype("string").fillna(_UNKNOWN).to_numpy(dtype=object)
            result[column] = pd.Categorical(text, categories=[*labels, _UNKNOWN], ordered=True)
        else:
            result[column] = values.astype("string").fillna(_UNKNOWN).to_numpy(dtype=object)
    return pd.DataFrame(result, index=pd.RangeIndex(len(rows)))


# ---------------------------------------------------------------------- comparison
@dataclass
class ComparisonResult:
    """Several models evaluated on one split.

    Attributes
    ----------
    table : pandas.DataFrame
        Models x metrics (means over test users, plus ``coverage``, ``gini``), best first
        by :attr:`primary_metric`.
    per_user : pandas.DataFrame
        Long frame: ``model``, ``user_index``, ``user_id``, ``n_history``, ``n_relevant``,
        the metrics, the user's profile attributes (:func:`user_attributes`) and ``activity``.
    fit_seconds, evaluate_seconds : dict
        Wall time per model.
    errors : dict
        Models that could not be trained: name -> message.
    split : Split
    k : int
    attributes : list of str
        Columns of ``per_user`` that :meth:`breakdown` can group by (``activity`` first).
    min_group_size : int
        Groups with fewer users are suppressed in breakdowns and the summary.
    """

    table: pd.DataFrame
    per_user: pd.DataFrame
    fit_seconds: dict[str, float]
    evaluate_seconds: dict[str, float]
    split: Split
    k: int
    attributes: list[str]
    errors: dict[str, str] = field(default_factory=dict)
    min_group_size: int = MIN_GROUP_SIZE

    @property
    def primary_metric(self) -> str:
        return f"ndcg@{self.k}"

    @property
    def models(self) -> list[str]:
        """Evaluated models, best first."""
        return list(self.table.index)

    def breakdown(self, attribute: str = ACTIVITY, metric: str | None = None,
                  min_group_size: int | None = None) -> pd.DataFrame:
        """Mean ``metric`` per value of ``attribute``, one column per model, plus ``n_users``.

        Parameters
        ----------
        attribute : str
            ``"activity"`` or a profile column (see :attr:`attributes`).
        metric : str, optional
            A per-user metric column (default: NDCG@k).
        min_group_size : int, optional
            Groups with fewer users are left out (default :attr:`min_group_size`); how many
            were left out is in ``result.attrs["suppressed_groups"]``.

        Raises
        ------
        KeyError
            Unknown attribute or metric, naming the valid ones.
        """
        metric = metric or self.primary_metric
        if attribute not in self.attributes:
            raise KeyError(f"no attribute {attribute!r} to break down by; choose one of {self.attributes}")
        valid_metrics = metric_names(self.k)
        if metric not in valid_metrics:
            raise KeyError(f"no per-user metric {metric!r}; choose one of {valid_metrics}")
        limit = self.min_group_size if min_group_size is None else int(min_group_size)
        frame = self.per_user
        means = frame.groupby([attribute, "model"], observed=True, sort=False)[metric].mean().unstack("model")
        sizes = frame.groupby(attribute, observed=True, sort=False)["user_index"].nunique()
        result = means.reindex(columns=[m for m in self.models if m in means.columns])
        result["n_users"] = sizes.reindex(result.index).astype(np.int64)
        if isinstance(frame[attribute].dtype, pd.CategoricalDtype) and frame[attribute].dtype.ordered:
            order = [value for value in frame[attribute].cat.categories if value in result.index]
            result = result.loc[order]
        else:
            result = result.sort_values("n_users", ascending=False, kind="stable")
        small = result["n_users"] < limit
        result = result.loc[~small]
        result.index.name = attribute
        result.columns.name = None
        result.attrs["suppressed_groups"] = int(small.sum())
        result.attrs["metric"] = metric
        return result

    def paired_difference(self, model_a: str, model_b: str, metric: str | None = None) -> tuple[float, float, float]:
        """Mean per-user difference ``a - b`` of ``metric`` with a 95% normal-approximation interval.

        The same users are scored by both models, so the paired difference removes the
        (large) variation between users. Returns ``(mean, low, high)``.
        """
        metric = metric or self.primary_metric
        wide = self.per_user.pivot(index="user_index", columns="model", values=metric)
        difference = (wide[model_a] - wide[model_b]).to_numpy(dtype=np.float64)
        difference = difference[np.isfinite(difference)]
        if len(difference) == 0:
            return float("nan"), float("nan"), float("nan")
        mean = float(difference.mean())
        error = float(difference.std(ddof=1) / math.sqrt(len(difference))) if len(difference) > 1 else float("inf")
        return mean, mean - 1.96 * error, mean + 1.96 * error

    def summary(self, name: Callable[[str], str] = str) -> str:
        """A few sentences reading the result: the best model, by how much, and for whom.

        ``name`` turns a model's name into the name to print (a dashboard's display names, such
        as ``recommender.training.model_label``). A sentence that starts with a name starts with a
        capital.
        """
        return _summarise(self, name)

    def to_dict(self) -> dict:
        """JSON-able summary (table, timings, errors, split description); NaN becomes None."""
        def clean(value):
            return None if isinstance(value, float) and not math.isfinite(value) else value

        return {
            "protocol": self.split.kind,
            "description": self.split.description,
            "k": self.k,
            "n_test_users": self.split.n_test_users,
            "n_train_interactions": self.split.train.n_interactions,
            "relevance_threshold": self.split.relevance_threshold,
            "seed": self.split.seed,
            "table": {model: {metric: clean(float(value)) for metric, value in row.items()}
                      for model, row in self.table.iterrows()},
            "fit_seconds": self.fit_seconds,
            "evaluate_seconds": self.evaluate_seconds,
            "errors": self.errors,
            "summary": self.summary(),
        }


def _instantiate(name: str, factory) -> Recommender:
    if isinstance(factory, str):
        from ..models import REGISTRY

        if factory not in REGISTRY:
            raise KeyError(f"unknown model {factory!r}; available: {', '.join(sorted(REGISTRY))}")
        factory = REGISTRY[factory]
    model = factory()
    if not isinstance(model, Recommender):
        raise TypeError(f"the factory for {name!r} returned {type(model).__name__}, not a Recommender")
    return model


def compare_models(dataset: Dataset, model_factories: Mapping[str, Callable[[], Recommender] | str],
                   protocol: str = "warm", k: int = 10, seed: int = 0, callback: ProgressCallback | None = None,
                   *, split: Split | None = None, min_group_size: int = MIN_GROUP_SIZE,
                   batch_size: int = EVAL_BATCH, **protocol_options) -> ComparisonResult:
    """Fit every model on one split of ``dataset`` and evaluate them on the same test users.

    Parameters
    ----------
    dataset : Dataset
    model_factories : dict
        Display name -> a callable returning an unfitted :class:`Recommender` (a class
        works), or a name from :data:`recommender.models.REGISTRY`.
    protocol : str
        One of :data:`~.protocols.PROTOCOLS` (ignored when ``split`` is given).
    k : int
        List length.
    seed : int
        Seed of the split.
    callback : callable, optional
        ``callback(message, step, n_steps)`` before each stage (and for each training
        epoch a model reports); ``step == n_steps`` at the end.
    split : Split, optional
        Reuse a split instead of making one.
    min_group_size : int
        Privacy floor for breakdowns and the summary.
    **protocol_options
        Passed to :func:`~.protocols.make_split` (``test_fraction``, ``relevance``, ...).

    Returns
    -------
    ComparisonResult
        Models whose training fails with :class:`ModelFitError` are listed in ``errors``
        and left out of the table; other exceptions propagate.
    """
    if not model_factories:
        raise ValueError("no models to compare")
    n_steps = 1 + 2 * len(model_factories)
    step = 0

    def report(message: str) -> None:
        logger.info(message)
        if callback is not None:
            callback(message, step, n_steps)

    if split is None:
        report(f"splitting the data ({protocol})")
        split = make_split(dataset, protocol, seed=seed, **protocol_options)
    step += 1
    evaluations: dict[str, ModelEvaluation] = {}
    fit_seconds: dict[str, float] = {}
    evaluate_seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name, factory in model_factories.items():
        model = _instantiate(name, factory)
        report(f"training {name}")
        fit_step = step

        def on_epoch(epoch, losses=None, metrics=None, _name=name, _step=fit_step):
            if callback is not None:
                callback(f"training {_name}: epoch {epoch}", _step, n_steps)
            return None

        started = time.perf_counter()
        try:
            model.fit(split.train, callback=on_epoch)
        except ModelFitError as error:
            errors[name] = str(error)
            logger.warning("training %s failed: %s", name, error)
            step += 2
            continue
        fit_seconds[name] = time.perf_counter() - started
        step += 1
        report(f"evaluating {name}")
        started = time.perf_counter()
        evaluations[name] = evaluate_model(model, split, k=k, batch_size=batch_size)
        evaluate_seconds[name] = time.perf_counter() - started
        step += 1
    report("done")
    return _assemble(split, evaluations, fit_seconds, evaluate_seconds, errors, int(k), min_group_size)


def _assemble(split, evaluations, fit_seconds, evaluate_seconds, errors, k, min_group_size) -> ComparisonResult:
    names = metric_names(k)
    rows = {name: {**{m: evaluation.aggregate[m] for m in names}, "coverage": evaluation.aggregate["coverage"],
                   "gini": evaluation.aggregate["gini"]} for name, evaluation in evaluations.items()}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=[*names, "coverage", "gini"])
    table.index.name = "model"
    if len(table):
        table = table.sort_values(f"ndcg@{k}", ascending=False, kind="stable", na_position="last")
    attributes = user_attributes(split.dataset, split.test_users)
    attributes.insert(0, ACTIVITY, activity_band(split.history_counts()))
    frames = []
    for name, evaluation in evaluations.items():
        frame = evaluation.per_user.copy()
        frame.insert(0, "model", name)
        frames.append(pd.concat([frame.reset_index(drop=True), attributes], axis=1))
    if frames:
        per_user = pd.concat(frames, ignore_index=True)
    else:
        per_user = pd.DataFrame(columns=["model", "user_index", "user_id", "n_history", "n_relevant", *names,
                                         *attributes.columns])
    per_user[ACTIVITY] = pd.Categorical(per_user[ACTIVITY], categories=[b[0] for b in ACTIVITY_BANDS],
                                        ordered=True)
    for column in attributes.columns:
        if isinstance(attributes[column].dtype, pd.CategoricalDtype):
            per_user[column] = pd.Categorical(per_user[column], categories=attributes[column].cat.categories,
                                              ordered=attributes[column].cat.ordered)
    return ComparisonResult(table=table, per_user=per_user, fit_seconds=fit_seconds,
                            evaluate_seconds=evaluate_seconds, split=split, k=k,
                            attributes=list(attributes.columns), errors=errors, min_group_size=min_group_size)


# ---------------------------------------------------------------------- plain-language summary
def _relative(value: float, reference: float) -> str:
    if not (math.isfinite(value) and math.isfinite(reference)) or reference <= 0:
        return f"vs {reference:.3f}"
    return f"{(value - reference) / reference:+.0%}"


def _group_phrase(attribute: str, value) -> str:
    if attribute == ACTIVITY:
        return f"users with {value} interaction{'' if value == '1' else 's'} known to the model"
    return f"users with {attribute} = {value}"


def _sentence(text: str) -> str:
    """``text`` with its first letter in upper case (a sentence may start with a model's name)."""
    return text[:1].upper() + text[1:]


def _summarise(result: ComparisonResult, name: Callable[[str], str]) -> str:
    metric = result.primary_metric
    label = metric_label(metric)
    split = result.split
    lines = []
    failed = "; ".join(f"{name(model)} ({message})" for model, message in result.errors.items())
    if result.table.empty:
        return "No model could be evaluated." + (f" Training failed for: {failed}." if failed else "")
    table = result.table
    models = result.models
    best = models[0]
    value = float(table.loc[best, metric])
    intro = (f"On the {split.kind} protocol ({split.description}; {split.n_test_users:,} test users, "
             f"top {result.k})")
    if len(models) == 1:
        lines.append(f"{intro}, {name(best)} reaches {label} {value:.3f}.")
    else:
        baseline = "popularity" if "popularity" in models and best != "popularity" else models[-1]
        if best == "popularity":
            lines.append(f"{intro}, no model beats the popularity baseline: {name('popularity')} has the best "
                         f"{label} ({value:.3f}).")
        else:
            reference = float(table.loc[baseline, metric])
            lines.append(f"{intro}, {name(best)} has the best {label} ({value:.3f}, "
                         f"{_relative(value, reference)} over {name(baseline)}).")
        ranking = ", ".join(f"{name(model)} {float(table.loc[model, metric]):.3f}" for model in models)
        lines.append(f"Ranking by {label}: {ranking}.")
        runner_up = models[1]
        mean, low, high = result.paired_difference(best, runner_up)
        if math.isfinite(low) and math.isfinite(high):
            if low > 0:
                lines.append(f"The lead of {name(best)} over {name(runner_up)} ({mean:+.3f}) is larger than the "
                             f"variation between users (95% interval {low:+.3f} to {high:+.3f}).")
            else:
                lines.append(f"The lead of {name(best)} over {name(runner_up)} ({mean:+.3f}) is within the "
                             f"variation between users (95% interval {low:+.3f} to {high:+.3f}): treat them as "
                             "close.")
        if best != baseline:
            lines.extend(_where_it_helps(result, best, baseline, metric, name))
        coverage = table["coverage"]
        if coverage.notna().all():
            lines.append(_sentence(f"{name(best)} recommends {coverage[best]:.0%} of the "
                                   f"{'held-out items' if split.candidate_items is not None else 'catalogue'} "
                                   f"({name(baseline)}: {coverage[baseline]:.0%})."))
    if failed:
        lines.append(f"Training failed for: {failed}.")
    return " ".join(lines)


def _where_it_helps(result: ComparisonResult, best: str, baseline: str, metric: str,
                    name: Callable[[str], str]) -> list[str]:
    """The groups (activity band or profile value) where ``best`` gains most and least over ``baseline``.

    Only groups of at least :data:`SUMMARY_GROUP_SHARE` of the test users (and the privacy
    floor) are compared, so a handful of users cannot produce the headline.
    """
    floor = max(result.min_group_size, math.ceil(SUMMARY_GROUP_SHARE * result.split.n_test_users))
    gains = []
    for attribute in result.attributes:
        table = result.breakdown(attribute, metric, min_group_size=floor)
        if len(table) < 2 or best not in table or baseline not in table:
            continue
        for value, row in table.iterrows():
            if row[baseline] > 0 and np.isfinite(row[best]):
                gains.append(((row[best] - row[baseline]) / row[baseline], attribute, value, int(row["n_users"])))
    if len(gains) < 2:
        return []
    gains.sort(key=lambda gain: gain[0])
    top, bottom = gains[-1], gains[0]
    if top[0] <= 0:
        return [_sentence(f"{name(best)} does not beat {name(baseline)} in any group of at least {floor} users.")]
    text = (f"It helps most for {_group_phrase(top[1], top[2])} ({top[0]:+.0%} over {name(baseline)}, "
            f"{top[3]:,} users)")
    if bottom[0] < top[0]:
        text += f" and least for {_group_phrase(bottom[1], bottom[2])} ({bottom[0]:+.0%}, {bottom[3]:,} users)"
    return [text + "."]
