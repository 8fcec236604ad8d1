"""Background jobs for the dashboard: train models, or run an evaluation, without blocking the page.

A Streamlit page reruns its script on every click, so a fit that runs inside the script would
freeze the page, and a click would abort it. :class:`TrainingJob` instead runs
``model.fit(dataset, callback)`` for one or several models in a :class:`threading.Thread`.
The thread writes progress into the job under a lock; the page (or a test, or the CLI) reads
a consistent, immutable :class:`JobSnapshot` whenever it likes::

    job = TrainingJob(dataset, {"fused": FusedRecommender(max_epochs=20)}).start()
    while job.running:
        snap = job.snapshot()          # status, epoch, n_epochs, history, progress, elapsed
        time.sleep(0.5)
    model = job.snapshot().fitted["fused"]

:meth:`BackgroundJob.cancel` sets an event; the epoch callback returns ``False`` at the next
epoch end, so a model stops within one epoch and keeps the best weights so far (models
without epochs finish their single step; models still queued are skipped). A
:class:`~recommender.errors.ModelFitError` (a NaN loss) or any other exception ends the model
in status ``"failed"`` with a plain message; the traceback goes to the log, never to the page.

:class:`EvaluationJob` does the same for :func:`recommender.evaluation.compare_models`, which
is mostly training (every model is refitted on the training part of each split); it runs one
or several protocols and stops at the next progress report when cancelled.

Nothing here imports Streamlit.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .dataset import Dataset
from .errors import DataError, ModelFitError
from .evaluation.compare import ComparisonResult, compare_models
from .evaluation.protocols import PROTOCOL_DESCRIPTIONS, PROTOCOLS
from .models import REGISTRY, Recommender
from .models import fused as _fused  # noqa: F401  (registers the "fused" model)
from .models.device import resolve_device

logger = logging.getLogger(__name__)

#: Job states. ``pending`` until :meth:`BackgroundJob.start`; the other three are final.
PENDING, RUNNING, DONE, CANCELLED, FAILED = "pending", "running", "done", "cancelled", "failed"
FINAL_STATES = (DONE, CANCELLED, FAILED)

#: Models in the order the pages offer them (any other registered model follows).
MODEL_ORDER = ("fused", "popularity", "segment_popularity", "profile_knn", "content_knn", "ease", "als")

#: One plain sentence per model, for people who do not build recommenders.
MODEL_DESCRIPTIONS = {
    "fused": "RecoLens' neural model: combines who the person is (profile), what they did (history) and what the "
             "items are (content), and learns for each person how much to trust each signal, so it also "
             "serves brand-new users.",
    "popularity": "Recommends the most popular items to everyone: the baseline every model has to beat.",
    "segment_popularity": "Recommends what is most popular among people with the same profile (for example the "
                          "same age band and region), falling back to broader groups when a group is small.",
    "profile_knn": "Finds the people most similar by profile and taste and recommends what they liked.",
    "content_knn": "Recommends items whose description (category, brand, tags, price) resembles what the person "
                   "liked; it can recommend items nobody has bought yet.",
    "ease": "Learns which items go together from who interacted with what (item-to-item); strong for people with "
            "a history, blind to profiles.",
    "als": "Classic matrix factorisation: learns a taste vector for every user and item from interactions alone.",
}


#: Display names of the models (the session and the tables use the short registry names).
MODEL_LABELS = {"fused": "Fused (profile + history + content)", "popularity": "Popularity",
                "segment_popularity": "Segment popularity", "profile_knn": "Profile kNN",
                "content_knn": "Content kNN", "ease": "EASE", "als": "ALS"}


def model_label(name: str) -> str:
    """Display name of a model (``"profile_knn"`` -> ``"Profile kNN"``)."""
    return MODEL_LABELS.get(name, name.replace("_", " ").capitalize())


def model_names() -> list[str]:
    """Registered model names, in :data:`MODEL_ORDER` first."""
    known = [name for name in MODEL_ORDER if name in REGISTRY]
    return known + sorted(name for name in REGISTRY if name not in known)


def describe_model(name: str) -> str:
    """One plain sentence about the model ``name`` (its docstring's first line if it has no description)."""
    if name in MODEL_DESCRIPTIONS:
        return MODEL_DESCRIPTIONS[name]
    cls = REGISTRY.get(name)
    doc = (cls.__doc__ or "").strip().splitlines() if cls is not None else []
    return doc[0] if doc else name


def make_model(name: str, **params: Any) -> Recommender:
    """An unfitted model of the registered ``name`` with the given hyperparameters.

    Raises
    ------
    KeyError
        Unknown model name (the message lists the known ones).
    """
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(model_names())}")
    return REGISTRY[name](**params)


def expected_epochs(model: Recommender) -> int | None:
    """How many epochs (progress steps) a fit of ``model`` takes at most; None for one-step models.

    Models report an epoch through their callback; the fused model's ``max_epochs`` is an upper
    bound (early stopping usually ends sooner), ALS reports one step per ``iterations``.
    """
    for attribute in ("max_epochs", "iterations"):
        value = getattr(model, attribute, None)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
            return int(value)
    return None


def describe_device(name: str = "auto") -> tuple[str, str]:
    """Where a PyTorch model would run, as ``(kind, sentence)``.

    ``kind`` is ``"cpu"``, ``"cuda"`` or ``"mps"``; the sentence says it in plain words (with
    the GPU's name where known). A device that is not available gives kind ``"unavailable"``
    and the reason.
    """
    try:
        device = resolve_device(name)
    except ValueError as error:
        return "unavailable", str(error)
    if device.type == "cuda":
        import torch

        try:
            gpu = torch.cuda.get_device_name(device)
        except (RuntimeError, AssertionError):  # a driver hiccup must not break a page
            gpu = "an NVIDIA GPU"
        return "cuda", (f"Neural models train on the GPU ({gpu}), which is much faster than the processor. "
                        "The baselines always run on the processor.")
    if device.type == "mps":
        return "mps", ("Neural models train on this Mac's GPU (Apple MPS). The baselines always run on the "
                       "processor.")
    return "cpu", ("Neural models train on the processor (CPU): no GPU was found. That is fine for data of this "
                   "size; expect seconds to a few minutes depending on the data and the number of epochs.")


# ---------------------------------------------------------------------- the job machinery
class _Cancelled(Exception):
    """Raised from a progress callback to unwind a job that was cancelled."""


class BackgroundJob:
    """A task run once in a daemon thread, with a lock-protected state, cancel and elapsed time.

    Subclasses implement :meth:`_run` (in the worker thread; call :meth:`_check_cancel` at
    safe points, update their state only while holding ``self._lock``) and
    :meth:`snapshot`. The final status is decided by :meth:`_finish`.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._cancel_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = PENDING
        self._message = ""
        self._started: float | None = None
        self._finished: float | None = None

    # ------------------------------------------------------------------ control
    def start(self) -> "BackgroundJob":
        """Start the worker thread (once); returns ``self``.

        Raises
        ------
        RuntimeError
            The job was started before (a job runs once; make a new one).
        """
        with self._lock:
            if self._status != PENDING:
                raise RuntimeError("this job was already started; create a new job to run again.")
            self._status = RUNNING
            self._started = time.perf_counter()
            self._thread = threading.Thread(target=self._main, name=f"recolens-{type(self).__name__}",
                                            daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the job to stop at its next safe point (the end of the current epoch)."""
        with self._lock:
            if self._status in (PENDING, RUNNING):
                self._cancel_event.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_event.is_set()

    @property
    def running(self) -> bool:
        """Started and not finished."""
        with self._lock:
            return self._status == RUNNING

    @property
    def status(self) -> str:
        with self._lock:
            return self._status

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (or ``timeout`` seconds); True when it has finished."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._lock:
            return self._status in FINAL_STATES

    def elapsed(self) -> float:
        """Seconds since :meth:`start` (frozen once the job has finished); 0 before."""
        with self._lock:
            if self._started is None:
                return 0.0
            end = self._finished if self._finished is not None else time.perf_counter()
            return end - self._started

    # ------------------------------------------------------------------ worker side
    def _check_cancel(self) -> None:
        if self._cancel_event.is_set():
            raise _Cancelled()

    def _main(self) -> None:
        try:
            self._run()
        except _Cancelled:
            logger.info("%s cancelled", type(self).__name__)
        except Exception as error:  # anything else: a plain message for the page, the traceback for the log
            logger.exception("%s failed", type(self).__name__)
            with self._lock:
                self._message = plain_error(error)
                self._status = FAILED
        finally:
            with self._lock:
                self._finished = time.perf_counter()
                if self._status == RUNNING:
                    self._status, message = self._finish()
                    self._message = self._message or message

    def _run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _finish(self) -> tuple[str, str]:
        """Final ``(status, message)`` once :meth:`_run` has returned or was cancelled (lock held)."""
        return (CANCELLED, "Cancelled.") if self._cancel_event.is_set() else (DONE, "Done.")


def plain_error(error: BaseException) -> str:
    """A one-line message for a person (no traceback): the error's own text, or its type."""
    if isinstance(error, DataError) and error.problems:
        text = "; ".join(problem.message for problem in error.problems[:3])
    else:
        text = str(error).strip()
    if isinstance(error, KeyError) and text.startswith(("'", '"')):
        text = text[1:-1]  # KeyError quotes its message
    if not text:
        text = type(error).__name__
    return " ".join(text.split())[:600]


# ---------------------------------------------------------------------- training
@dataclass(frozen=True)
class EpochRecord:
    """What a model reported at the end of one epoch (or its single step)."""

    epoch: int                     # 1-based count of the model's reports
    losses: Mapping[str, float]    # e.g. {"train": 4.21}
    metrics: Mapping[str, float]   # e.g. {"val_ndcg@10": 0.31}
    seconds: float                 # since the model started training


@dataclass(frozen=True)
class ModelProgress:
    """One model of a :class:`TrainingJob`.

    ``status`` is ``"queued"``, ``"running"``, ``"done"``, ``"cancelled"`` (stopped early by
    :meth:`BackgroundJob.cancel`; the model so far is kept), ``"failed"`` or ``"skipped"``
    (cancelled before it started). ``usable`` says whether a fitted model came out of it.
    """

    name: str
    status: str
    epoch: int
    n_epochs: int | None
    history: tuple[EpochRecord, ...]
    message: str
    seconds: float
    usable: bool

    @property
    def fraction(self) -> float:
        """Share of this model's work done, 0..1 (an upper bound on epochs makes it conservative)."""
        if self.status in ("done", "cancelled", "failed", "skipped"):
            return 1.0
        if self.status == "running" and self.n_epochs:
            return min(self.epoch / self.n_epochs, 0.99)
        return 0.0


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a :class:`TrainingJob`'s state at one moment (safe to keep and read).

    Attributes
    ----------
    status : {"pending", "running", "done", "cancelled", "failed"}
        ``failed`` when any model failed (the others' models are still in :attr:`fitted`);
        ``cancelled`` when :meth:`~BackgroundJob.cancel` stopped it.
    message : str
        What happened, in one or two sentences.
    elapsed : float
        Seconds since the start.
    models : tuple of ModelProgress
        Every model of the job, in training order.
    current : str or None
        The model training now.
    fitted : dict
        Name -> fitted, usable model (finished models; a cancelled model's best weights so far).
    """

    status: str
    message: str
    elapsed: float
    models: tuple[ModelProgress, ...]
    current: str | None
    fitted: Mapping[str, Recommender] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATES

    @property
    def progress(self) -> float:
        """Overall share of the work done, 0..1 (1 only when the job has finished)."""
        if self.finished:
            return 1.0
        if not self.models:
            return 0.0
        return min(sum(model.fraction for model in self.models) / len(self.models), 0.99)

    def _focus(self) -> ModelProgress | None:
        """The model training now, else the last one that did anything."""
        for model in self.models:
            if model.name == self.current:
                return model
        started = [model for model in self.models if model.status not in ("queued", "skipped")]
        return started[-1] if started else None

    @property
    def epoch(self) -> int:
        """Epochs finished by the current (or last) model."""
        focus = self._focus()
        return focus.epoch if focus else 0

    @property
    def n_epochs(self) -> int | None:
        """Most epochs the current (or last) model may take (None: one step, or unknown)."""
        focus = self._focus()
        return focus.n_epochs if focus else None

    @property
    def history(self) -> tuple[EpochRecord, ...]:
        """Per-epoch losses and validation metrics of the current (or last) model."""
        focus = self._focus()
        return focus.history if focus else ()

    def history_frame(self) -> pd.DataFrame:
        """Every model's history as a long frame: ``model``, ``epoch``, ``seconds``, loss and metric columns."""
        rows = [{"model": model.name, "epoch": record.epoch, "seconds": record.seconds, **record.losses,
                 **record.metrics} for model in self.models for record in model.history]
        return pd.DataFrame(rows, columns=None if rows else ["model", "epoch", "seconds"])


class _ModelState:
    """Mutable per-model state inside the job (only touched with the job's lock held)."""

    def __init__(self, name: str, model: Recommender) -> None:
        self.name = name
        self.model = model
        self.status = "queued"
        self.epoch = 0
        self.n_epochs = expected_epochs(model)
        self.history: list[EpochRecord] = []
        self.message = ""
        self.started: float | None = None
        self.seconds = 0.0
        self.usable = False
        self.stopped = False    # the callback asked the model to stop (cancel)

    def freeze(self, now: float) -> ModelProgress:
        seconds = self.seconds if self.status != "running" or self.started is None else now - self.started
        return ModelProgress(name=self.name, status=self.status, epoch=self.epoch, n_epochs=self.n_epochs,
                             history=tuple(self.history), message=self.message, seconds=seconds,
                             usable=self.usable)


class TrainingJob(BackgroundJob):
    """Fit one or several models on a dataset in a background thread, one after the other.

    Parameters
    ----------
    dataset : Dataset
        What every model is fitted on (kept on the job, so a page can tell whether the
        session's data changed while it ran).
    models : dict or sequence of (name, model)
        Unfitted models by display name; trained in this order.

    Examples
    --------
    >>> job = TrainingJob(dataset, {"popularity": make_model("popularity")}).start()
    >>> job.wait()
    True
    >>> job.snapshot().fitted["popularity"].recommend(["U1"], k=5)
    """

    def __init__(self, dataset: Dataset, models: Mapping[str, Recommender] | Sequence[tuple[str, Recommender]]
                 ) -> None:
        super().__init__()
        if not isinstance(dataset, Dataset):
            raise TypeError(f"TrainingJob needs a Dataset, got {type(dataset).__name__}")
        pairs = list(models.items()) if isinstance(models, Mapping) else list(models)
        if not pairs:
            raise ValueError("no models to train: choose at least one.")
        names = [str(name) for name, _ in pairs]
        if len(set(names)) < len(names):
            raise ValueError(f"model names must be unique, got {names}")
        for name, model in pairs:
            if not isinstance(model, Recommender):
                raise TypeError(f"{name!r} is a {type(model).__name__}, not a Recommender")
        self.dataset = dataset
        self._models = [_ModelState(str(name), model) for name, model in pairs]
        self._current: str | None = None

    @property
    def names(self) -> list[str]:
        """Model names in training order."""
        return [state.name for state in self._models]

    def cancel(self) -> int:
        """Stop after the current epoch; returns the number of epochs the current model had finished.

        The epoch callback checks for a cancel under the same lock, so the model stops at the
        end of epoch ``returned + 1`` at the latest (models without epochs finish their step).
        """
        with self._lock:
            super().cancel()
            current = next((state for state in self._models if state.name == self._current), None)
            return current.epoch if current is not None else 0

    def snapshot(self) -> JobSnapshot:
        """A consistent, immutable copy of the progress (cheap: no model is copied)."""
        with self._lock:
            now = time.perf_counter()
            elapsed = self.elapsed()
            models = tuple(state.freeze(now) for state in self._models)
            fitted = {state.name: state.model for state in self._models if state.usable}
            return JobSnapshot(status=self._status, message=self._message, elapsed=elapsed, models=models,
                               current=self._current if self._status == RUNNING else None, fitted=fitted)

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        for state in self._models:
            with self._lock:
                if self._cancel_event.is_set():
                    state.status, state.message = "skipped", "Not trained: training was cancelled before it started."
                    continue
                state.status, state.started, self._current = "running", time.perf_counter(), state.name
            self._fit_one(state)
        with self._lock:
            self._current = None

    def _fit_one(self, state: _ModelState) -> None:
        def callback(epoch: int, losses: Mapping[str, float] | None = None,
                     metrics: Mapping[str, float] | None = None) -> bool | None:
            with self._lock:
                state.epoch += 1
                state.history.append(EpochRecord(
                    epoch=state.epoch, losses={str(k): float(v) for k, v in (losses or {}).items()},
                    metrics={str(k): float(v) for k, v in (metrics or {}).items()},
                    seconds=time.perf_counter() - state.started))
                if state.n_epochs is not None and state.epoch > state.n_epochs:
                    state.n_epochs = state.epoch
                if self._cancel_event.is_set():
                    state.stopped = True
                    return False
            return None

        logger.info("training %s on %s", state.name, self.dataset.name)
        try:
            state.model.fit(self.dataset, callback)
        except ModelFitError as error:
            logger.warning("training %s failed: %s", state.name, error)
            usable = _still_usable(state.model)
            message = plain_error(error)
            if not usable and "is kept" in message:
                message += " Its weights do not give usable scores either, so no model was kept."
            self._end_model(state, "failed", message, usable)
            return
        except Exception as error:  # the page shows a sentence; the log keeps the traceback
            logger.exception("training %s failed", state.name)
            self._end_model(state, "failed", f"{model_label(state.name)} could not be trained: {plain_error(error)}",
                            False)
            return
        with self._lock:
            if state.stopped:
                message = (f"Cancelled after epoch {state.epoch}; the best model so far is kept."
                           if state.epoch else "Cancelled; the model was kept.")
                status = "cancelled"
            else:
                status = "done"
                message = f"Trained in {time.perf_counter() - state.started:.1f} s" + (
                    f" ({state.epoch} epochs)." if state.n_epochs is not None else ".")
        self._end_model(state, status, message, True)

    def _end_model(self, state: _ModelState, status: str, message: str, usable: bool) -> None:
        with self._lock:
            if not state.history and status != "failed":  # one-step models report one step, callback or not
                state.epoch = 1
                state.history.append(EpochRecord(epoch=1, losses={}, metrics={},
                                                 seconds=time.perf_counter() - state.started))
            state.status, state.message, state.usable = status, message, usable
            state.seconds = time.perf_counter() - state.started

    def _finish(self) -> tuple[str, str]:
        # Messages for people: models by their display names ("Fused (profile + history + content)").
        failed = [state for state in self._models if state.status == "failed"]
        usable = [state.name for state in self._models if state.usable]
        if failed:
            text = " ".join(f"{model_label(state.name)}: {state.message}"
                            if not state.message.startswith(model_label(state.name)) else state.message
                            for state in failed)
            return FAILED, text
        if self._cancel_event.is_set():
            kept = f" Kept: {', '.join(map(model_label, usable))}." if usable else " No model was kept."
            return CANCELLED, "Training was cancelled." + kept
        order = model_names()
        usable.sort(key=lambda name: order.index(name) if name in order else len(order))
        return DONE, f"Trained {', '.join(map(model_label, usable))} in {self.elapsed():.1f} s."


def _still_usable(model: Recommender) -> bool:
    """Whether a model that raised during fit still holds usable state (e.g. its last good epoch).

    Scores one user: cheap, and it fails for a model whose state was never built.
    """
    dataset = getattr(model, "dataset", None)
    if dataset is None or dataset.n_users == 0:
        return False
    try:
        scores = np.asarray(model.score_users(np.zeros(1, dtype=np.int32)))
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False
    return scores.shape == (1, dataset.n_items) and bool(np.isfinite(scores).any())


# ---------------------------------------------------------------------- evaluation
def available_protocols(dataset: Dataset) -> list[str]:
    """Protocols the data supports (``temporal`` needs timestamps; ``cold_item`` item features)."""
    names = []
    for protocol in PROTOCOLS:
        if protocol == "temporal" and dataset.timestamps is None:
            continue
        if protocol == "cold_item" and dataset.item_features.shape[1] == 0:
            continue
        names.append(protocol)
    return names


def evaluation_factories(names: Sequence[str], params: Mapping[str, Mapping[str, Any]] | None = None
                         ) -> dict[str, Callable[[], Recommender]]:
    """Factories for :func:`compare_models`: a fresh, unfitted model per name, with ``params[name]``.

    Evaluation must fit models on the training part of the split, so fitted models are never
    reused; only their hyperparameters are (``params``, e.g. from ``model.get_params()``).
    """
    params = params or {}
    factories = {}
    for name in names:
        if name not in REGISTRY:
            raise KeyError(f"unknown model {name!r}; available: {', '.join(model_names())}")
        settings = dict(params.get(name, {}))
        factories[name] = (lambda _name=name, _settings=settings: make_model(_name, **_settings))
    return factories


@dataclass(frozen=True)
class EvaluationSnapshot:
    """A consistent copy of an :class:`EvaluationJob`'s state."""

    status: str
    message: str
    elapsed: float
    step_message: str
    progress: float
    results: Mapping[str, ComparisonResult]
    errors: Mapping[str, str]
    protocols: tuple[str, ...]

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATES


class EvaluationJob(BackgroundJob):
    """Run :func:`compare_models` for one or several protocols in a background thread.

    Parameters
    ----------
    dataset : Dataset
    factories : dict
        Name -> callable returning an unfitted model (see :func:`evaluation_factories`).
    protocols : sequence of str
        Protocols to run, in order. A protocol the data cannot support (a ``DataError``,
        e.g. nobody left to test) is reported in ``errors`` and the others still run.
    k : int
        List length.
    seed : int
        Seed of the splits.
    """

    def __init__(self, dataset: Dataset, factories: Mapping[str, Callable[[], Recommender]],
                 protocols: Sequence[str], k: int = 10, seed: int = 0) -> None:
        super().__init__()
        if not factories:
            raise ValueError("no models to evaluate: choose at least one.")
        protocols = list(dict.fromkeys(protocols))
        unknown = [p for p in protocols if p not in PROTOCOLS]
        if unknown or not protocols:
            raise ValueError(f"unknown protocol(s) {unknown}; choose from {', '.join(PROTOCOLS)}")
        if int(k) < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        self.dataset = dataset
        self.factories = dict(factories)
        self.protocols = tuple(protocols)
        self.k = int(k)
        self.seed = int(seed)
        self._results: dict[str, ComparisonResult] = {}
        self._errors: dict[str, str] = {}
        self._step_message = "waiting to start"
        self._progress = 0.0

    def snapshot(self) -> EvaluationSnapshot:
        with self._lock:
            finished = self._status in FINAL_STATES
            return EvaluationSnapshot(status=self._status, message=self._message, elapsed=self.elapsed(),
                                      step_message=self._step_message,
                                      progress=1.0 if finished else min(self._progress, 0.99),
                                      results=dict(self._results), errors=dict(self._errors),
                                      protocols=self.protocols)

    def _run(self) -> None:
        n_protocols = len(self.protocols)
        for position, protocol in enumerate(self.protocols):
            self._check_cancel()

            def report(message: str, step: int, n_steps: int, _position=position, _protocol=protocol) -> None:
                with self._lock:
                    self._step_message = f"{_protocol}: {message}" if n_protocols > 1 else message
                    self._progress = (_position + step / max(n_steps, 1)) / n_protocols
                self._check_cancel()  # unwinds compare_models (and a fit, from its epoch report)

            try:
                result = compare_models(self.dataset, self.factories, protocol=protocol, k=self.k, seed=self.seed,
                                        callback=report)
            except (DataError, ValueError) as error:
                logger.warning("evaluation %s failed: %s", protocol, error)
                with self._lock:
                    self._errors[protocol] = plain_error(error)
                continue
            with self._lock:
                self._results[protocol] = result

    def _finish(self) -> tuple[str, str]:
        done = ", ".join(self._results)
        if self._cancel_event.is_set():
            return CANCELLED, "Evaluation was cancelled." + (f" Finished: {done}." if done else "")
        if not self._results:
            return FAILED, " ".join(f"{protocol}: {message}" for protocol, message in self._errors.items())
        return DONE, f"Evaluated {done} in {self.elapsed():.1f} s."


def protocol_table(results: Mapping[str, ComparisonResult]) -> pd.DataFrame:
    """The tables of several protocols stacked, with ``protocol`` and ``model`` as the first columns.

    Parameters
    ----------
    results : dict
        Protocol -> :class:`ComparisonResult` (same ``k``).

    Returns
    -------
    pandas.DataFrame
        One row per (protocol, model), protocols in the given order and models best first
        within a protocol; then ``test_users``, the metric columns and ``fit_seconds``.
    """
    frames = []
    for protocol, result in results.items():
        table = result.table.reset_index()
        table.insert(0, "protocol", protocol)
        table.insert(2, "test_users", result.split.n_test_users)
        table["fit_seconds"] = [result.fit_seconds.get(name, math.nan) for name in table["model"]]
        frames.append(table)
    if not frames:
        return pd.DataFrame(columns=["protocol", "model", "test_users"])
    return pd.concat(frames, ignore_index=True)


def protocol_description(protocol: str) -> str:
    """Plain description of a protocol (``"warm"`` -> ``"known users, a random 20% ..."``)."""
    return PROTOCOL_DESCRIPTIONS.get(protocol, protocol)


#: Short names of the protocols for menus (the descriptions say more).
PROTOCOL_LABELS = {"warm": "Known users (warm)", "temporal": "Known users, latest interactions (temporal)",
                   "cold_user": "New users, profile only (cold start)",
                   "few_shot": "New users with a few interactions (few-shot)", "cold_item": "New items (cold item)"}
#: Table columns where a lower value is better (everything else: higher is better).
LOWER_IS_BETTER = ("avg_popularity", "gini")
#: Columns of a results table that are not metrics.
_NOT_METRICS = ("protocol", "model", "test_users", "fit_seconds")


def protocol_label(protocol: str) -> str:
    """Menu name of a protocol (``"cold_user"`` -> ``"New users, profile only (cold start)"``)."""
    return PROTOCOL_LABELS.get(protocol, protocol)


def best_cells(table: pd.DataFrame, group: str | None = None) -> pd.DataFrame:
    """Which cells hold the best value of their metric column (ties all count as best).

    Parameters
    ----------
    table : pandas.DataFrame
        A results table (``ComparisonResult.table`` or :func:`protocol_table`).
    group : str, optional
        Compare within the groups of this column (``"protocol"``: best per protocol).

    Returns
    -------
    pandas.DataFrame of bool
        Same shape, index and columns as ``table``; ``False`` for non-metric columns and NaN.
    """
    mask = pd.DataFrame(False, index=table.index, columns=table.columns)
    metrics = [c for c in table.columns if c not in _NOT_METRICS and c != group
               and pd.api.types.is_numeric_dtype(table[c])]
    groups = [table.index] if group is None else [rows.index for _, rows in table.groupby(group, sort=False)]
    for rows in groups:
        part = table.loc[rows, metrics].astype(float)
        best = pd.Series({c: (part[c].min() if c.split("@")[0] in LOWER_IS_BETTER else part[c].max())
                          for c in metrics}, dtype=float)
        mask.loc[rows, metrics] = part.eq(best, axis=1) & part.notna()
    return mask
