"""The per-session state of the dashboard: loaded dataset, trained models, evaluation.

Everything a person loads or trains lives in ``st.session_state``, which Streamlit keeps
per browser session, so two sessions never see each other's data or models. Nothing here is
stored in ``st.cache_resource`` or ``st.cache_data`` (those are shared by every session).

Pages use only the accessors below, never the raw keys:

* :func:`get_dataset` / :func:`set_dataset` (which also forgets the models and evaluation
  of the previous dataset) / :func:`get_description` / :func:`dataset_version`;
* :func:`get_models` / :func:`set_model` / :func:`remove_model` / :func:`clear_models`;
* :func:`get_evaluation` / :func:`set_evaluation` / :func:`clear_evaluation`;
* :func:`get_load_problems` / :func:`set_load_problems` for the last failed load;
* :func:`flash` / :func:`pop_flash` for a message shown once after a rerun;
* :func:`memo` for per-session, per-dataset results that are slow to recompute (at most
  :data:`MEMO_MAX_ENTRIES` per session, least recently used dropped first);
* :func:`get_training_job` / :func:`set_training_job` / :func:`harvest_training` for the
  background training job started on the Train page: any page harvests its finished models.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Callable, Iterable, MutableMapping

import streamlit as st

from recommender.dataset import Dataset
from recommender.errors import Problem
from recommender.training import model_label

logger = logging.getLogger(__name__)

# Keys in st.session_state (tests may set them directly; pages should use the accessors).
DATASET_KEY = "recolens_dataset"
DESCRIPTION_KEY = "recolens_dataset_description"
VERSION_KEY = "recolens_dataset_version"
MODELS_KEY = "recolens_models"
EVALUATION_KEY = "recolens_evaluation"
LOAD_PROBLEMS_KEY = "recolens_load_problems"
FLASH_KEY = "recolens_flash"
MEMO_KEY = "recolens_memo"
SAMPLE_FAILED_KEY = "recolens_sample_failed"
#: The session's background training job and what has been taken from it.
JOB_KEY = "recolens_training_job"
COLLECTED_KEY = "recolens_training_collected"
TAKEN_KEY = "recolens_training_taken"
#: Slow results kept per session (each a small summary table or figure input); older ones are dropped.
MEMO_MAX_ENTRIES = 32


def _state() -> MutableMapping[str, Any]:
    return st.session_state


# ---------------------------------------------------------------------- dataset
def get_dataset() -> Dataset | None:
    """The dataset loaded in this session, or ``None``."""
    return _state().get(DATASET_KEY)


def get_description() -> str:
    """Where the loaded dataset came from ("bundled sample", "uploaded: a.csv, b.csv"...)."""
    return _state().get(DESCRIPTION_KEY, "")


def dataset_version() -> int:
    """A number that changes whenever a new dataset is loaded (use it in widget keys or memo keys)."""
    return int(_state().get(VERSION_KEY, 0))


def set_dataset(dataset: Dataset, description: str) -> None:
    """Make ``dataset`` the session's dataset.

    The models and the evaluation of the previous dataset are forgotten (they would not
    match the new ids), and so is the report of any earlier failed load. Call this only with
    a dataset that was built completely: a failed load must leave the old one in place.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"set_dataset needs a Dataset, got {type(dataset).__name__}")
    state = _state()
    state[DATASET_KEY] = dataset
    state[DESCRIPTION_KEY] = str(description)
    state[VERSION_KEY] = dataset_version() + 1
    clear_models()
    clear_evaluation()
    clear_load_problems()
    state.pop(MEMO_KEY, None)
    logger.info("Loaded dataset %s (%s)", dataset.name, description)


# ---------------------------------------------------------------------- models
def get_models() -> dict[str, Any]:
    """Name -> fitted model for the loaded dataset (a copy: change it with :func:`set_model`)."""
    return dict(_state().get(MODELS_KEY, {}))


def set_model(name: str, model: Any) -> None:
    """Store a fitted model under ``name`` (replacing a model of the same name)."""
    models = dict(_state().get(MODELS_KEY, {}))
    models[str(name)] = model
    _state()[MODELS_KEY] = models


def remove_model(name: str) -> None:
    """Forget one model (nothing happens if there is none of that name)."""
    models = dict(_state().get(MODELS_KEY, {}))
    models.pop(str(name), None)
    _state()[MODELS_KEY] = models


def clear_models() -> None:
    """Forget every model (done by :func:`set_dataset`)."""
    _state()[MODELS_KEY] = {}


# ---------------------------------------------------------------------- evaluation
def get_evaluation() -> Any | None:
    """The latest evaluation result of this session (whatever the Evaluate page stored), or ``None``."""
    return _state().get(EVALUATION_KEY)


def set_evaluation(result: Any) -> None:
    """Store the latest evaluation result."""
    _state()[EVALUATION_KEY] = result


def clear_evaluation() -> None:
    _state()[EVALUATION_KEY] = None


# ---------------------------------------------------------------------- failed loads
def get_load_problems() -> list[Problem]:
    """Problems of the last load that failed (empty after a successful load)."""
    return list(_state().get(LOAD_PROBLEMS_KEY, []))


def set_load_problems(problems: Iterable[Problem]) -> None:
    _state()[LOAD_PROBLEMS_KEY] = list(problems)


def clear_load_problems() -> None:
    _state()[LOAD_PROBLEMS_KEY] = []


# ---------------------------------------------------------------------- messages and memo
def flash(message: str, kind: str = "success") -> None:
    """Remember a message to show once, on the next run (e.g. after ``st.rerun()``).

    ``kind`` is ``"success"``, ``"info"``, ``"warning"`` or ``"error"``.
    """
    _state()[FLASH_KEY] = (kind, str(message))


def pop_flash() -> tuple[str, str] | None:
    """The pending (kind, message), removed from the state; ``None`` if there is none."""
    return _state().pop(FLASH_KEY, None)


def memo(name: str, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per session and dataset; later calls return the stored result.

    For results that are slow to recompute on every rerun (summaries of a large dataset).
    Per session, so never shared between users. Bounded: everything is dropped when another
    dataset is loaded, and at most :data:`MEMO_MAX_ENTRIES` results are kept (the least
    recently used goes first), so a long session cannot grow without limit.
    """
    state = _state()
    owner = (dataset_version(), id(get_dataset()))
    store = state.get(MEMO_KEY)
    if not isinstance(store, _Memo) or store.owner != owner:
        store = state[MEMO_KEY] = _Memo(owner)
    if name in store:
        store.move_to_end(name)
        return store[name]
    value = compute()
    store[name] = value
    while len(store) > MEMO_MAX_ENTRIES:
        store.popitem(last=False)
    return value


class _Memo(OrderedDict):
    """The memo of one session for one dataset: ``owner`` is (dataset version, id of the dataset)."""

    def __init__(self, owner: tuple[int, int]) -> None:
        super().__init__()
        self.owner = owner


# ---------------------------------------------------------------------- background training
def get_training_job() -> Any | None:
    """The session's :class:`~recommender.training.TrainingJob` (running or finished), or ``None``."""
    return _state().get(JOB_KEY)


def set_training_job(job: Any) -> None:
    """Make ``job`` (already started) the session's training job; its models arrive via :func:`harvest_training`."""
    _state()[JOB_KEY] = job


def harvest_training() -> bool:
    """Move the models the session's training job has finished into the session.

    Called by :func:`ui.common.page_setup` on every page, so a model trained in the background
    is available on whichever page the person is on (not only after a return to the Train
    page). When the job has ended, its outcome is announced once with :func:`flash`. A job
    started on data that is no longer loaded is cancelled and its models are discarded.

    Returns
    -------
    bool
        True when something changed (a model arrived or the end was announced): the caller
        may rerun so that everything drawn before reflects it.
    """
    job = get_training_job()
    if job is None:
        return False
    state = _state()
    snap = job.snapshot()
    announce = snap.finished and state.get(COLLECTED_KEY) is not job
    if job.dataset is not get_dataset():
        job.cancel()  # its models would not match the data loaded now
        if snap.finished:
            state.pop(JOB_KEY, None)  # nor would its curves
        if announce:
            state[COLLECTED_KEY] = job
            flash("The data changed while training ran, so the models trained on the previous data were "
                  "discarded. Train again on the data loaded now.", "warning")
        return announce
    taken_job, taken = state.get(TAKEN_KEY, (None, frozenset()))
    if taken_job is not job:
        taken = frozenset()
    new = {name: model for name, model in snap.fitted.items() if name not in taken}
    for name, model in new.items():
        set_model(name, model)
    state[TAKEN_KEY] = (job, frozenset(taken | set(new)))
    if announce:
        state[COLLECTED_KEY] = job
        kept = ", ".join(model_label(name) for name in snap.fitted)
        if snap.status == "done":
            flash(f"Training finished: {kept} ready on every page.", "success")
        elif snap.status == "cancelled":
            flash(f"Training was cancelled. {('Kept: ' + kept + '.') if kept else 'No model was kept.'}", "info")
        else:
            flash(f"Training failed. {snap.message}" + (f" Still available: {kept}." if kept else ""), "error")
    return bool(new) or announce
